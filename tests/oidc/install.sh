#!/usr/bin/env bash
# Install the test OpenID provider (oidc-provider, pinned by package-lock.json) under
# tests/oidc/node_modules (idempotent: again only when the lockfile changes).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing: installing Debian's npm package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
stamp="node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf node_modules
  npm ci --silent --no-audit --no-fund >/dev/null
  touch "$stamp"
fi
