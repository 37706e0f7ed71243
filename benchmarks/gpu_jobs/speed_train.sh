#!/usr/bin/env bash
# Job a4: stage-1 training throughput of the shapes64.json recipe with the GAN on (train_throughput.py), bf16:
# baseline, recipe and batch 256, then batch 256 compiled in a second file (a compile past the deadline loses
# only its own figure). Target: >= 4,000 images/s.
source "$(dirname "$0")/common.sh"
if smoke; then
  size="--steps 2 --num-images 8 --batch-size 2 --model-ch 16"; eager=baseline; compiled=recipe
else
  size="--steps 200"; eager=baseline,recipe,fast; compiled=compiled
fi
timeout "$(left 90)" $PY benchmarks/train_throughput.py $size --variants "$eager" --name train_throughput_cuda \
  --output-dir "$RESULTS" || exit 1
timeout "$(left 5)" $PY benchmarks/train_throughput.py $size --variants "$compiled" --name train_throughput_cuda_compiled \
  --output-dir "$RESULTS"
