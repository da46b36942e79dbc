#!/usr/bin/env bash
# Trains the pack's video head and text tower on cached clip features and exports the pack
# (npm run models:train:video). Runs on CPU; the vision tower and the VQA head stay as they are.
#   FEATURE_MINUTES  minutes spent rendering clips and caching their frame features (default 60)
#   MINUTES          training time budget (default 50)
#   INIT             the checkpoint to start from (default checkpoints/shapes-world-tiny.pt)
#   SEED             seed of the cached clips (default 11)
#   OUT              the pack directory to write (default models/shapes-world-tiny)
#   TRAIN_ARGS       more train_video.py options, e.g. "--text-lr 0 --motion-channels 8"
#   RUN_DIR          where the clip cache, checkpoint and log go (default models/train/runs/video-<time>)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.venv-train"
out=${OUT:-$root/models/shapes-world-tiny}
run=${RUN_DIR:-$here/runs/video-$(date +%Y%m%d-%H%M%S)}
init=${INIT:-checkpoints/shapes-world-tiny.pt}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
cd "$here"
mkdir -p "$run"
"$venv/bin/python" clip_features.py --checkpoint "$init" --out "$run/clips" --seed "${SEED:-11}" \
  --minutes "${FEATURE_MINUTES:-60}"
"$venv/bin/python" train_video.py --init "$init" --cache "$run/clips" --tokenizer "$out/tokenizer.json" \
  --out "$run/checkpoint.pt" --minutes "${MINUTES:-50}" ${TRAIN_ARGS:-} | tee "$run/log.txt"
"$venv/bin/python" export.py --checkpoint "$run/checkpoint.pt" --out "$out"
