#!/usr/bin/env bash
# Job a2: a LlamaGen-VQ-16-sized tokenizer at 256x256 (random weights in LlamaGen's layout, converted by our
# converter): encode/decode images/s and peak memory (published_size.py), then the public path in fp32, bf16 and
# bf16 + compile (throughput.py) on the converted model.
source "$(dirname "$0")/common.sh"
if smoke; then
  sizes="--ch 32 --resolution 64 --encode-batch 1 --decode-batch 1 --repeats 1"; throughput="--batch-size 1 --repeats 1 --variants plain"
else
  sizes="--encode-batch 64 --decode-batch 16 --repeats 3"; throughput="--batch-size 256 --repeats 3 --variants plain,bf16,bf16-compiled"
fi
timeout "$(left 120)" $PY benchmarks/published_size.py --device "$DEVICE" $sizes --save "$EXTRA/vq16" \
  --name published_size_cuda --output-dir "$RESULTS" || exit 1
timeout "$(left 5)" $PY benchmarks/throughput.py --device "$DEVICE" --model "$EXTRA/vq16" $throughput --profile \
  --name throughput_cuda_256 --output-dir "$RESULTS"
status=$?
rm -rf "$EXTRA/vq16"  # 288 MB of random weights: nothing to bring back
exit $status
