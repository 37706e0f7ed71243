#!/usr/bin/env bash
# Job: issue 40's 1D distillation at full size. training/configs/emoji64_titok_distil.json (TiTok-S-sized ViTs,
# 512 wide, 8 layers, 8x8 patches; 4,096 codes of 12 dims; 10,000 stage-1 + 3,000 stage-2 steps of batch 64,
# bf16) distilled from the bundled emoji-64-small for N = 16, 32 and 64 by benchmarks/distil_1d.py, each scored
# on the held-out emoji after each stage. The data comes rendered in .whl/emoji64 (benchmarks/gpu_wheels.sh).
# Resumable: the runs stay in runs/distil_1d/ on the device while it is warm and go on from their last checkpoint
# (every 500 steps), so consecutive calls on one warm machine finish it (exit 75 until all three are done).
source "$(dirname "$0")/common.sh"
RUNS=$RUNS_ROOT/distil_1d
DATA=.whl/emoji64
if smoke; then  # a folder of eight random 64x64 images stands for both splits
  DATA=$RUNS/data
  [ -d "$DATA/test" ] || $PY -c "
import numpy as np, os, sys; from PIL import Image
for split in ('train', 'test'):
    os.makedirs(f'$DATA/{split}', exist_ok=True)
    for i, a in enumerate(np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)):
        Image.fromarray(a).save(f'$DATA/{split}/{i}.png')" || exit 1
  tokens="16"; num=4
  size="--stage1_steps 2 --stage2_steps 1 --batch_size 2 --kmeans_batches 1 --log_every 1 --checkpoint_every 1
        --mixed_precision no --vit.encoder_width 16 --vit.encoder_layers 1 --vit.encoder_heads 2 --vit.decoder_width 16
        --vit.decoder_layers 1 --vit.decoder_heads 2 --quantizer.codebook_size 32"
else
  [ -f "$DATA/test/dataset_info.json" ] || { log "no $DATA: run bash benchmarks/gpu_wheels.sh and carry .whl"; exit 1; }
  tokens="16 32 64"; num=0; size=""
fi
mkdir -p "$RUNS"
log "distil_1d: N = $tokens"
timeout "$(left 30)" $PY benchmarks/distil_1d.py --config training/configs/emoji64_titok_distil.json --tokens $tokens \
  --data "$DATA/test" --num $num --runs-dir "$RUNS" --name distil_1d_cuda --output-dir "$RESULTS" \
  -- --data "$DATA/train" $size >> "$EXTRA/distil.log" 2>&1
status=$?
if [ $status = 124 ]; then
  log "not finished: $(ls "$RUNS" | tr '\n' ' '); call again on the warm machine"
  exit 75
fi
[ $status = 0 ] || { log "distil_1d failed (exit $status)"; tail -5 "$EXTRA/distil.log"; exit 1; }
mkdir -p "$RESULTS/distil_1d_cuda"
for n in $tokens; do
  cp "$RUNS/n$n/metrics.jsonl" "$RESULTS/distil_1d_cuda/metrics_n$n.jsonl"
  cp "$RUNS/n$n/final/README.md" "$RESULTS/distil_1d_cuda/card_n$n.md"
done
log "done"
