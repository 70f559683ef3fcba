# phase_lite tasks. `make run` and `make test` do all set-up on a fresh machine; `make help`
# lists them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Two installs in one venv: what serving needs (make run), and the test tools on top of it
# (make test: pytest, Playwright, schemathesis, psycopg...), so a server's venv holds no test
# tools.
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP := $(VENV)/.installed-test
# Where `make run` writes the Owner's token on the first run (mode 0600; the walkthrough reads it).
TOKEN_FILE ?= owner.token

.PHONY: help run venv test-venv test test-fast clients system-tools browser container-tools oidc-provider bench clean

## List the tasks.
help:
	@awk '/^## /{text = text (text ? " " : "") substr($$0, 4); next} \
		/^[a-z][a-z-]*:/{if (text) printf "  make %-13s %s\n", substr($$1, 1, length($$1) - 1), text} \
		{text = ""}' $(MAKEFILE_LIST)

$(RUNTIME_STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME_STAMP)

$(TEST_STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

## The runtime venv (.venv, with .venv/bin/phase-lite): what serving needs, no test tools.
venv: $(RUNTIME_STAMP)

## The runtime venv plus the test tools (pytest, Playwright, psycopg...).
test-venv: $(TEST_STAMP)

## Initialise the data directory on first run (the Owner token goes to owner.token, mode
## 0600), then serve on PHASE_LITE_LISTEN.
run: $(RUNTIME_STAMP)
	$(VENV)/bin/phase-lite init --token-file $(TOKEN_FILE)
	exec $(VENV)/bin/phase-lite serve

## The official Phase clients, each in its own environment under .clients/.
clients:
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

CHROMIUM ?= /usr/lib/chromium/chromium
## Debian's Chromium for the web console's browser tests (Playwright drives it by path).
browser:
	@test -x $(CHROMIUM) || { \
		echo "chromium is missing: installing Debian's chromium package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## Debian's podman (builds the Containerfile) and mmdebstrap (makes its Debian base when no
## registry is reachable) for tests/test_container.py.
container-tools:
	@command -v podman >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1 || { \
		echo "podman or mmdebstrap is missing: installing Debian's podman and mmdebstrap packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends podman mmdebstrap >/dev/null; }

## The OpenID provider the console's OpenID Connect tests sign in through (oidc-provider, from
## npm, pinned by tests/oidc/package-lock.json).
oidc-provider:
	bash tests/oidc/install.sh

## The whole suite: the real Phase clients, the web console's browser tests, the OpenID
## provider and the container image included.
test: $(TEST_STAMP) clients system-tools browser container-tools oidc-provider
	$(PY) -m pytest

## Everything but the real-client and slow process tests.
test-fast: $(TEST_STAMP) system-tools browser oidc-provider
	$(PY) -m pytest -m "not clients and not slow"

## phase_lite against a bare Flask + waitress baseline, one table of ratios.
bench: $(TEST_STAMP)
	$(PY) bench/run.py

## Remove the venv, the Phase clients and build files (never the data directory).
clean:
	rm -rf $(VENV) .clients build *.egg-info
