#!/usr/bin/env bash
# Trains the shapes-world-tiny pack from scratch and exports it (npm run models:train).
#   MINUTES   training time budget (default 7; the committed pack trained in three runs, 20 minutes
#             in all on one GPU: see its model card)
#   DEVICE    cuda or cpu (default: cuda when available)
#   OUT       the pack directory to write (default models/shapes-world-tiny)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.venv-train"
out=${OUT:-$root/models/shapes-world-tiny}
run=${RUN_DIR:-$here/runs/$(date +%Y%m%d-%H%M%S)}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
cd "$here"
if [ ! -f "$out/tokenizer.json" ]; then
  mkdir -p "$out"
  "$venv/bin/python" build_tokenizer.py --out "$out/tokenizer.json"
fi
device_args=()
[ -n "${DEVICE:-}" ] && device_args=(--device "$DEVICE")
"$venv/bin/python" train.py --out "$run" --minutes "${MINUTES:-7}" --tokenizer "$out/tokenizer.json" "${device_args[@]}" ${TRAIN_ARGS:-}
"$venv/bin/python" export.py --checkpoint "$run/checkpoint.pt" --out "$out"
