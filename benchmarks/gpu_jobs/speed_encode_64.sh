#!/usr/bin/env bash
# Job a1: the public encode/decode path of the bundled shapes-64 at 64x64 on the GPU, from uint8 tensors, numpy
# and PIL, in fp32 and bf16, with the id agreement of each against fp32 and the CPU, and where the time goes
# (torch.profiler of the public encode); then the compiled variants in a second file, so a compile that runs
# past the deadline loses only its own figures. Targets: >= 30,000 images/s from tensors, >= 20,000 from numpy.
source "$(dirname "$0")/common.sh"
if smoke; then
  size="--model shapes-64-small --batch-size 4 --repeats 1"; compiled=plain  # the same steps on the 1 MB model
else
  size="--model shapes-64 --batch-size 4096 --repeats 5"; compiled=compiled,bf16-compiled
fi
timeout "$(left 100)" $PY benchmarks/throughput.py --device "$DEVICE" $size --variants plain,bf16 --profile \
  --name throughput_cuda --output-dir "$RESULTS" || exit 1
timeout "$(left 5)" $PY benchmarks/throughput.py --device "$DEVICE" $size --variants "$compiled" \
  --name throughput_cuda_compiled --output-dir "$RESULTS"
