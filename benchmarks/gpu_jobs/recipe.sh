#!/usr/bin/env bash
# Job d: training/configs/shapes64.json verified as ONE run (16,000 steps of batch 64, about 18 minutes on an
# H100 at the measured 955 images/s): more than one call holds, so it runs in segments of one run. Each call
# resumes from the last checkpoint (every 500 steps; bit-identical resume) in runs/recipe/, which stays on the
# device machine only while it is warm: the segments must be consecutive calls on one warm machine. Exit 75 until the
# run is finished; then its evaluation and card land in benchmarks/results/recipe_one_run/ and its weights in
# extra/recipe/ (16 MB parts), to compare with the bundled shapes-64 (four --init_from segments, 32.22 dB).
source "$(dirname "$0")/common.sh"
RUNS=$RUNS_ROOT/recipe
if smoke; then
  size="--steps 2 --batch_size 4 --num_train_images 16 --eval_images 8 --kmeans_init false --log_every 1 --checkpoint_every 1
        --image_every 0 --num_workers 0 --mixed_precision no --model.ch 16 --model.z_channels 8 --model.norm_groups 8"
else
  size="--checkpoint_every 500"
fi
timeout "$(left 60)" $PY training/train_tokenizer.py --config training/configs/shapes64.json --output_dir "$RUNS" \
  --resume --progress false $size >> "$EXTRA/train.log" 2>&1
if [ ! -f "$RUNS/final/model.safetensors" ]; then
  log "not finished: $(cat "$RUNS/checkpoints/latest" 2>/dev/null || echo 'no checkpoint yet'); call again on the warm machine"
  exit 75
fi
mkdir -p "$RESULTS/recipe_one_run"
cp "$RUNS/eval.json" "$RUNS/metrics.jsonl" "$RUNS/final/README.md" "$EXTRA/train.log" "$RESULTS/recipe_one_run/"
rm -rf "$EXTRA/final" && cp -r "$RUNS/final" "$EXTRA/final"
split -b 16000000 "$RUNS/final/model.safetensors" "$EXTRA/model.safetensors.part-" && rm "$EXTRA/final/model.safetensors"
