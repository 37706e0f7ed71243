#!/usr/bin/env bash
# The Ray engine with one GPU actor against the local engine's GPU path (DataLoader decoding workers) on 20,000
# shapes PNGs: images/s, CPU-seconds, ids compared (benchmarks/pretokenize.py --engine ray). Needs Ray on the
# device: ray[data]==2.60.0 (its wheel, 79 MB, is more than a device call carries).
source "$(dirname "$0")/common.sh"
$PY -c "import ray.data" 2>/dev/null || { log "Ray is not installed here: pip install 'ray[data]==2.60.0'"; exit 1; }
if smoke; then
  size="--model shapes-64-small --num 8 --repeats 1 --fixed-images 0 --num-proc 1 --gpus-per-actor 0"
else
  size="--num 20000 --repeats 2 --gpus-per-actor 1"
fi
timeout "$(left 5)" $PY benchmarks/pretokenize.py --engine ray --device "$DEVICE" --actors 1 $size \
  --name pretokenize_ray_cuda --output-dir "$RESULTS"
