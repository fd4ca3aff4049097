#!/usr/bin/env bash
# build.sh: rebuild the playground's script bundle (../assets/playground.js)
# from src/ with the npm packages pinned in package-lock.json. `make
# playground` runs it. Needs node and npm (20 or later); the result is
# committed, so building the gateway needs neither.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v npm >/dev/null || { echo "playground: npm is not on PATH (node 20 or later needed)" >&2; exit 1; }
# Behind a TLS-intercepting proxy npm needs the system's CA bundle.
if [ -z "${npm_config_cafile:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	export npm_config_cafile=/etc/ssl/certs/ca-certificates.crt
fi
# Exactly the locked versions; esbuild's native binary comes as an optional
# dependency, so its install script is not needed.
npm ci --no-audit --no-fund --ignore-scripts
node build.mjs
