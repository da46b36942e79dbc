#!/usr/bin/env bash
# Checks Loupe as a dependency: packs it (npm pack), installs the tarball into a scratch project outside
# the repository, type-checks test/package/consumer.mjs against the package's declarations and runs it.
# Needs `npm run setup` first (the build in dist/, and the Milvus Lite venv the consumer starts).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cd "$root"
bash scripts/build.sh
tarball="$(npm pack --silent --pack-destination "$scratch" | tail -n 1)"
echo "check-package: packed $tarball ($(du -h "$scratch/$tarball" | cut -f1))"

cd "$scratch"
cp "$root/test/package/consumer.mjs" "$root/test/package/"*.png .
# What a project depending on Loupe sets too: onnxruntime-node's CPU build ships in its package.
printf 'onnxruntime-node-install=skip\nlegacy-peer-deps=true\nfund=false\naudit=false\n' > .npmrc
printf '{ "name": "loupe-consumer", "private": true, "type": "module" }\n' > package.json
ONNXRUNTIME_NODE_INSTALL=skip npm install --prefer-offline --no-audit --no-fund "./$tarball" \
  "typescript@$(node -p "require('$root/node_modules/typescript/package.json').version")" \
  "@types/node@$(node -p "require('$root/node_modules/@types/node/package.json').version")" >/dev/null
npx tsc --noEmit --allowJs --checkJs --strict --skipLibCheck --target es2022 --module nodenext \
  --moduleResolution nodenext --types node consumer.mjs
echo "check-package: consumer.mjs type-checks against the package's declarations"
LOUPE_VENV_DIR="$root/${LOUPE_VENV_DIR:-.venv}" node consumer.mjs
