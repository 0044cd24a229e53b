#!/usr/bin/env bash
# Build the operator dashboard (web/ → src/citytwin/ui/static) with the Node packages pinned in
# web/package-lock.json (MapLibre GL, deck.gl, esbuild). Idempotent and quiet: installs only when
# web/node_modules does not match the lock file, rebuilds only when a source is newer than the bundle.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
    echo "web: npm not found; install Node.js ≥ 20 (e.g. apt-get install nodejs npm)" >&2
    exit 1
fi
installed=web/node_modules/.package-lock.json
if [[ ! -f $installed || web/package-lock.json -nt $installed || web/package.json -nt $installed ]]; then
    npm ci --prefix web --no-audit --no-fund --loglevel=error >/dev/null
fi
bundle=src/citytwin/ui/static/app.js
if [[ -f $bundle ]] && [[ -z $(find web/src web/index.html web/build.mjs -newer "$bundle" -print -quit) ]]; then
    exit 0
fi
node web/build.mjs
