#!/usr/bin/env bash
# Builds a production-size CLIP pack with random weights, for measuring cost (npm run models:build).
#   npm run models:build -- --arch vit-b-32 --random [--out <dir>] [--seed <n>]
# Makes the throwaway venv .tmp/models-venv on first use (torch CPU build, onnx, tokenizers), fetches the CLIP
# byte-pair vocabulary from the open_clip_torch wheel on PyPI (the file only, no install), writes the pack and
# its manifest. The output is ignored by git and never committed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.tmp/models-venv"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, onnx, tokenizers, regex" 2>/dev/null; then
  echo "models:build: installing torch (CPU), onnx and tokenizers into $venv ..." >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
fi
bpe="$root/.tmp/clip-bpe/bpe_simple_vocab_16e6.txt.gz"
"$venv/bin/python" "$here/fetch_bpe.py" "$bpe"
"$venv/bin/python" "$here/build_pack.py" --bpe "$bpe" --root "$root" "$@"
cd "$root"
out=$("$venv/bin/python" "$here/build_pack.py" --print-out --root "$root" "$@")
node bin/loupe.js models import "$out"
