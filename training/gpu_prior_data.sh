#!/usr/bin/env bash
# The shapes-64 prior's training data, tokenized on the GPU: NUM_TRAIN images (+ mirrors) in 20,000-image parts
# built by parallel processes, and the NUM_HELDOUT-image held-out part (default 1,000), in the cache train_prior.py
# reads (so a run pointed at that folder finds every part ready and tokenizes nothing).
#   PY=python3 bash training/gpu_prior_data.sh TOKENS_FOLDER NUM_TRAIN
set -eu
TOKENS=$1
NUM_TRAIN=$2
PY=${PY:-python}
mkdir -p "$TOKENS"
pids=()
$PY - "$NUM_TRAIN" "${NUM_HELDOUT:-1000}" <<'EOF' > "$TOKENS/../parts.txt"
import sys
from training.prior_data import CACHE_PART_IMAGES
n = int(sys.argv[1])
for start in range(0, n, CACHE_PART_IMAGES):
    print("train", 0, start, min(CACHE_PART_IMAGES, n - start), 1)
print("eval", 1, 0, int(sys.argv[2]), 0)
EOF
while read -r split seed start count flip; do
  $PY - "$TOKENS/$split" "$seed" "$start" "$count" "$flip" <<'EOF' > "$TOKENS/../part-$split-$start.log" 2>&1 &
import sys
from pathlib import Path
import torch
from image_tokenizer import ImageTokenizer
from training.prior_data import shapes_token_part
folder, seed, start, count, flip = Path(sys.argv[1]), *map(int, sys.argv[2:6])
device = "cuda" if torch.cuda.is_available() else None
shapes_token_part(folder, ImageTokenizer.from_pretrained("shapes-64"), seed, start, count, bool(flip), None, device)
EOF
  pids+=($!)
done < "$TOKENS/../parts.txt"
for pid in "${pids[@]}"; do wait "$pid"; done  # a part that failed fails this script (set -e)
