#!/usr/bin/env bash
# Compiles src/ into dist/ (what bin/loupe.js and the package run) and copies the API reference page's
# script into assets/ (served at /docs; its package is a build-time dependency only), unless both are
# newer than every source: `npm run setup` and `npm test` call it, `npm run build` always rebuilds.
# It also bundles the browser UI (web/src/) into assets/web/ (widget.js, chat.js, chat.html) and prints
# the scripts' sizes, raw and gzipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stamp=dist/.built
if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ -f assets/api-reference.js ] &&
  [ -f assets/web/widget.js ] && [ -z "$(find src web tsconfig.json tsconfig.build.json package.json -newer "$stamp" -print -quit)" ]; then
  echo "build: dist/ is up to date."
  exit 0
fi
rm -rf dist
node_modules/.bin/tsc -p tsconfig.build.json
mkdir -p assets
cp node_modules/@scalar/api-reference/dist/browser/standalone.js assets/api-reference.js
node_modules/.bin/tsx scripts/build-web.ts
touch "$stamp"
echo "build: compiled src/ into dist/; assets/api-reference.js copied."
