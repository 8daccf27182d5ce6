#!/usr/bin/env bash
# Install anvil (Foundry's local Ethereum node, a real JSON-RPC node) from npm into .tools/ if it
# is not there yet, and print its path. The multi-process chain tests, the crash test, the
# benchmark and the demo run against it; unit tests use the in-process py-evm chain instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.7.1
BIN=.tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
if [ ! -x "$BIN" ]; then
  command -v npm >/dev/null || { echo "ERROR: npm is needed to install anvil (apt install npm)" >&2; exit 1; }
  mkdir -p .tools
  (cd .tools && npm install --silent --no-audit --no-fund "@foundry-rs/anvil@$VERSION" >&2)
fi
"$BIN" --version >/dev/null || { echo "ERROR: anvil at $BIN does not run" >&2; exit 1; }
echo "$PWD/$BIN"
