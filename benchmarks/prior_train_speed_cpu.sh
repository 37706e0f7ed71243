#!/bin/bash
# CPU training speed of the bundled prior's architecture (8 x 288 Llama, 11.8 M) with the project's own script:
# two runs from the bundled weights on the same cached tokens, 5 and 25 steps of batch 32, float32; the
# difference of their wall clocks is 20 steps. Results: benchmarks/results/prior_train_speed_cpu.md
set -e
cd "$(dirname "$0")/.."
OUTDIR=${OUTDIR:-/tmp/cpuprior}
mkdir -p "$OUTDIR"
common="--config training/configs/shapes64_prior_gpu.json --num_train_images 1000 --eval_images 64 --batch_size 32 --eval_steps 100000 --save_steps 100000 --logging_steps 5 --progress false --init_from shapes-64-prior --bf16 false --warmup_steps 2 --output_dir $OUTDIR"
python training/train_prior.py $common --max_steps 2 > $OUTDIR.warm.log 2>&1  # encodes and caches the tokens
for steps in 5 25; do
  start=$(date +%s.%N)
  python training/train_prior.py $common --max_steps $steps > $OUTDIR.$steps.log 2>&1
  end=$(date +%s.%N)
  echo "max_steps $steps: $(echo "$end - $start" | bc) s"  # wall clock, loading and saving included
done
