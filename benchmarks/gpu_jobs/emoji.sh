#!/usr/bin/env bash
# Job: issue 29's GPU recipe. emoji-64 (training/configs/emoji64.json, 11.8 M parameters, K 8,192) trained on
# the emoji train split, then its tokens of both splits, then emoji-64-prior (emoji64_prior.json, conditioned on
# the Unicode group, classifier-free guidance) fitted into the time left, then both measured on the held-out
# emoji. The data comes rendered in .whl/emoji64 (benchmarks/gpu_wheels.sh): the device has no emoji packages.
# Each stage is skipped when its output exists, and the tokenizer resumes from its checkpoint (every 500 steps),
# so consecutive calls on one warm machine go on where the last stopped (exit 75 until everything is done). The weights
# come back in 16 MB parts under extra/emoji/; bundle them only if the CPU re-measure beats emoji-64-small.
source "$(dirname "$0")/common.sh"
RUNS=$RUNS_ROOT/emoji
DATA=.whl/emoji64
if smoke; then
  DATA=$RUNS/data
  [ -f "$DATA/test/dataset_info.json" ] || $PY benchmarks/emoji_data.py "$DATA" --limit 4 > "$EXTRA/data.log" 2>&1 || exit 1
  size="--steps 4 --batch_size 4 --eval_images 8 --kmeans_init false --log_every 1 --checkpoint_every 2
        --image_every 0 --num_workers 0 --mixed_precision no --model.ch 16 --model.z_channels 8 --model.norm_groups 8"
  prior_size="--max_steps 2 --batch_size 4 --hidden_size 32 --num_hidden_layers 1 --num_attention_heads 2 --sample_images 0
              --eval_steps 1 --bf16 false"
  tokenize="--device cpu"; score_num=8
else
  size=""; prior_size=""; tokenize="--device cuda"; score_num=0
fi
[ -f "$DATA/test/dataset_info.json" ] || { log "no $DATA: run bash benchmarks/gpu_wheels.sh and carry .whl"; exit 1; }
mkdir -p "$RUNS"
if [ ! -f "$RUNS/tokenizer/final/model.safetensors" ]; then
  log "tokenizer: $(cat "$RUNS/tokenizer/checkpoints/latest" 2>/dev/null || echo 'from the start')"
  timeout "$(left 60)" $PY training/train_tokenizer.py --config training/configs/emoji64.json --output_dir "$RUNS/tokenizer" \
    --data "$DATA/train" --eval_data "$DATA/test" --resume --progress false $size >> "$EXTRA/train_tokenizer.log" 2>&1
  status=$?
  [ $status = 0 ] || [ $status = 124 ] || { log "tokenizer training failed (exit $status)"; tail -5 "$EXTRA/train_tokenizer.log"; exit 1; }
  [ -f "$RUNS/tokenizer/final/model.safetensors" ] || { log "tokenizer not finished; call again on the warm machine"; exit 75; }
fi
for split in train test; do
  [ -f "$RUNS/tokens/$split/pretokenize_info.json" ] && continue
  log "tokens: $split"
  timeout "$(left 30)" $PY -m image_tokenizer.cli pretokenize --data "$DATA/$split" --model "$RUNS/tokenizer/final" \
    --output "$RUNS/tokens/$split" --format parquet $tokenize >> "$EXTRA/pretokenize.log" 2>&1 || exit 1
done
if [ ! -f "$RUNS/prior/final/model.safetensors" ]; then
  minutes=$($PY -c "print(max(0.5, ($(left 90)) / 60))")
  log "prior: $minutes minutes"
  timeout "$(left 40)" $PY training/train_prior.py --config training/configs/emoji64_prior.json --output_dir "$RUNS/prior" \
    --tokenizer "$RUNS/tokenizer/final" --data "$RUNS/tokens/train" --eval_data "$RUNS/tokens/test" --progress false \
    --time_budget_minutes "$minutes" --max_steps 100000 $prior_size >> "$EXTRA/train_prior.log" 2>&1 || exit 1
fi
log "measuring"
mkdir -p "$RESULTS/emoji_gpu"
timeout "$(left 10)" $PY benchmarks/emoji_eval.py --models "$RUNS/tokenizer/final" --data "$DATA/test" --num "$score_num" \
  --name emoji_gpu/eval --output-dir "$RESULTS" > "$EXTRA/eval.log" 2>&1 || exit 1
cp "$RUNS/tokenizer/eval.json" "$RESULTS/emoji_gpu/tokenizer_eval.json"
cp "$RUNS/tokenizer/final/README.md" "$RESULTS/emoji_gpu/tokenizer_card.md"
cp "$RUNS/prior/final/README.md" "$RESULTS/emoji_gpu/prior_card.md"
cp "$EXTRA"/*.log "$RESULTS/emoji_gpu/"
for model in tokenizer prior; do
  rm -rf "$EXTRA/$model" && cp -r "$RUNS/$model/final" "$EXTRA/$model"
  split -b 16000000 "$RUNS/$model/final/model.safetensors" "$EXTRA/$model/model.safetensors.part-" && rm "$EXTRA/$model/model.safetensors"
done
log "done"
