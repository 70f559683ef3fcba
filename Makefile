# phase_lite tasks. `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast clients system-tools browser oidc-provider bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Initialise data/ on first run (prints the Owner token once), then serve on PHASE_LITE_LISTEN.
run: $(STAMP)
	$(VENV)/bin/phase-lite init
	exec $(VENV)/bin/phase-lite serve

## The official Phase clients, each in its own environment under .clients/.
clients: $(STAMP)
	bash tests/clients/install.sh

## Debian tools the tests use, when missing: systemd-analyze (checks deploy/phase-lite.service)
## and PostgreSQL's server binaries (the session starts its own throwaway server for the tests
## that also run on PostgreSQL).
system-tools:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
		echo "systemd-analyze is missing: installing Debian's systemd package"; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		echo "PostgreSQL is missing: installing Debian's postgresql package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends postgresql >/dev/null; }

## Debian's Chromium for the web console's browser tests (Playwright drives it by path).
CHROMIUM ?= /usr/lib/chromium/chromium
browser:
	@test -x $(CHROMIUM) || { \
		echo "chromium is missing: installing Debian's chromium package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## The OpenID provider the console's OpenID Connect tests sign in through (oidc-provider, from
## npm, pinned by tests/oidc/package-lock.json).
oidc-provider:
	bash tests/oidc/install.sh

## The whole suite: the real Phase clients and the web console's browser tests included.
test: $(STAMP) clients system-tools browser oidc-provider
	$(PY) -m pytest

## Everything but the real-client and slow process tests.
test-fast: $(STAMP) system-tools browser oidc-provider
	$(PY) -m pytest -m "not clients and not slow"

## phase_lite against a bare Flask + waitress baseline, one table of ratios.
bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .clients build *.egg-info
