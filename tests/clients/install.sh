#!/usr/bin/env bash
# Install the official Phase clients in their own environments under .clients/ (idempotent).
# phase-cli pins its own dependencies, so it gets a venv of its own; so does the Python SDK.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=.clients
mkdir -p "$root"
python=${PYTHON:-python3}

install_venv() {  # name, requirement
  local dir="$root/$1"
  if [ ! -f "$dir/.installed-$2" ]; then
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    "$dir/bin/python" -m pip install --quiet "$2"
    touch "$dir/.installed-$2"
  fi
}

install_venv phase-cli "phase-cli==1.21.3"
install_venv phase-sdk "phase-dev==2.1.2"

if command -v npm >/dev/null 2>&1; then
  node_dir="$root/node"
  if [ ! -f "$node_dir/.installed-3.1.1" ]; then
    rm -rf "$node_dir" && mkdir -p "$node_dir"
    (cd "$node_dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund @phase.dev/phase-node@3.1.1 >/dev/null)
    touch "$node_dir/.installed-3.1.1"
  fi
else
  echo "npm not found: the Node SDK tests will be skipped" >&2
fi
