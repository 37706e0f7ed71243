#!/usr/bin/env bash
# Job a1: the public encode/decode path of the bundled shapes-64 at 64x64 on the GPU, from uint8 tensors, numpy
# and PIL, plus bf16 and compile, with the id agreement of each against fp32 and the CPU, and where the time goes
# (torch.profiler of the public encode). Targets: >= 30,000 images/s from tensors, >= 20,000 from numpy.
source "$(dirname "$0")/common.sh"
if smoke; then size="--batch-size 8 --repeats 1 --variants plain,bf16"; else size="--batch-size 4096 --repeats 5"; fi
timeout "$(left 5)" $PY benchmarks/throughput.py --device "$DEVICE" --model shapes-64 $size --profile \
  --name throughput_cuda --output-dir "$RESULTS"
