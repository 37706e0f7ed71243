#!/usr/bin/env bash
# Job c: the bundled shapes-64-prior trained further as its segment 4 (training/gpu_prior_more.sh): 200,000 images
# and their mirrors tokenized on the GPU, one run from the bundled weights fitted into the call, stored in
# bfloat16, then sampling sweep, generation quality and diagnostics on the GPU. Its figures land in
# benchmarks/results/gpu_prior_segment4/; the bfloat16 weights come back in 16 MB parts under extra/prior-more/
# and are bundled only if the CPU re-measure of the conditional Frechet distance beats the bundled prior's 26.6
# (target 20, floor 1.5).
source "$(dirname "$0")/common.sh"
budget=$(( DEADLINE - $(date +%s) - 20 ))
if smoke; then
  export NUM_TRAIN=16 NUM_HELDOUT=4 NUM_EVAL=4 SETTINGS="temperature=0.8"
  export RUN="--hidden_size 32 --num_hidden_layers 1 --num_attention_heads 2 --batch_size 4 --max_steps 1
              --warmup_steps 1 --eval_images 4 --sample_images 0"  # a fresh toy prior: the same steps, fast
  export TRAIN_END_S=$(( budget / 2 )) MEASURE_END_S=$budget
else
  export NUM_TRAIN=${NUM_TRAIN:-200000}  # more data than the 120,000 images the bundled prior saw about 7 times
  export TRAIN_END_S=$(( budget - 180 )) MEASURE_END_S=$budget  # 3 minutes to measure, as in the bundled prior's last GPU run
fi
OUT=$EXTRA RUNS=$RUNS_ROOT/gpu-prior-more DEVICE=$DEVICE PY=$PY bash training/gpu_prior_more.sh || exit 1
mkdir -p "$RESULTS/gpu_prior_segment4"
tar xzf "$EXTRA/results.tgz" -C "$RESULTS/gpu_prior_segment4" && rm "$EXTRA/results.tgz"
