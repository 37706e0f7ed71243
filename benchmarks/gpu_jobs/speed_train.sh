#!/usr/bin/env bash
# Job a4: stage-1 training throughput of the shapes64.json recipe with the GAN on (train_throughput.py): baseline,
# recipe, batch 256, and batch 256 compiled, bf16. Target: >= 4,000 images/s.
source "$(dirname "$0")/common.sh"
if smoke; then size="--steps 2 --variants baseline --num-images 64 --batch-size 2"; else size="--steps 200"; fi
timeout "$(left 5)" $PY benchmarks/train_throughput.py $size --name train_throughput_cuda --output-dir "$RESULTS"
