#!/usr/bin/env bash
# Trains the pack's detection head on frozen towers, evaluates it and exports it into the pack. Runs on CPU
# (one thread); the towers and every other pack file stay as they are.
#   MINUTES     training time budget (default 30)
#   POOL        scenes rendered and cached as tower tokens (default 4000)
#   SCENES      fresh 256 px JPEG-like scenes for the evaluation (default 1000)
#   OUT         the pack directory to write (default models/shapes-world-tiny)
#   TRAIN_ARGS  more `detection.py train` options, e.g. "--batch 64 --dim 128"
#   RUN_DIR     where the token cache, checkpoints, log and eval.json go (default models/train/runs/detect-<time>)
# A run that stops can be restarted with the same RUN_DIR: it reuses the cached tokens and resumes from last.pt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.venv-train"
out=${OUT:-$root/models/shapes-world-tiny}
run=${RUN_DIR:-$here/runs/detect-$(date +%Y%m%d-%H%M%S)}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
cd "$here"
mkdir -p "$run"
"$venv/bin/python" detection.py train --run "$run" --minutes "${MINUTES:-30}" --pool "${POOL:-4000}" \
  --tokenizer "$out/tokenizer.json" ${TRAIN_ARGS:-}
"$venv/bin/python" detection.py evaluate --run "$run" --scenes "${SCENES:-1000}" --crops --tokenizer "$out/tokenizer.json"
"$venv/bin/python" detection.py export --run "$run" --pack "$out" --tokenizer "$out/tokenizer.json"
