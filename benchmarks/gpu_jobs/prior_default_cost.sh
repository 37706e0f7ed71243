#!/usr/bin/env bash
# What `python training/train_prior.py` costs with its defaults on one GPU (prior_default_cost.py): as many of its
# 5,000 steps as fit before the deadline, with seconds per step and the time outside the steps.
source "$(dirname "$0")/common.sh"
if smoke; then
  size="--max-steps 1 --batch-size 4 --num-train-images 8 --eval-images 4 --sample-images 0"
else
  size="--time-budget-minutes $(awk "BEGIN { print $(left 150) / 60 }")"
fi
timeout "$(left 10)" $PY benchmarks/prior_default_cost.py $size --name prior_default_cost_cuda --output-dir "$RESULTS"
