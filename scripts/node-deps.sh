#!/usr/bin/env bash
# Node dev tools pinned in package.json / package-lock.json (Khronos glTF-Validator for the
# 3D Tiles tests). Idempotent and quiet: does nothing when node_modules matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
    echo "node-deps: npm not found; install Node.js ≥ 20 (e.g. apt-get install nodejs npm)" >&2
    exit 1
fi
# npm keeps a copy of the resolved tree here; it is rewritten on every successful install
installed=node_modules/.package-lock.json
if [[ -f package-lock.json ]]; then
    if [[ -f $installed && ! package-lock.json -nt $installed && ! package.json -nt $installed ]]; then
        exit 0
    fi
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
else
    npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
