#!/usr/bin/env bash
# Job a3: pre-tokenization of 20,000 shapes PNGs on the GPU, with DataLoader decoding workers (the default) and
# without, against the naive one-image loop (timed on its first 1,000 files). Target: >= 10,000 images/s.
source "$(dirname "$0")/common.sh"
if smoke; then
  size="--model shapes-64-small --num 4 --naive-num 2 --repeats 1 --ceiling-images 4 --num-proc 1 --matmul-side 256"
else
  size="--num 20000 --naive-num 1000 --repeats 2"
fi
half=$(( ( DEADLINE - $(date +%s) ) / 2 ))
timeout "$half" $PY benchmarks/pretokenize.py --device "$DEVICE" $size --profile --name pretokenize_cuda \
  --output-dir "$RESULTS" || exit 1
timeout "$(left 5)" $PY benchmarks/pretokenize.py --device "$DEVICE" $size --num-workers 0 --profile \
  --name pretokenize_cuda_noworkers --output-dir "$RESULTS"
