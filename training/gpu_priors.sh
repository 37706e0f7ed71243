#!/usr/bin/env bash
# Two shapes-64 priors on one GPU within MEASURE_END_S (505 s by default), and their measurements:
#   1. the training data once (training/gpu_prior_data.sh): NUM_TRAIN shapes images (+ mirrors) tokenized on the
#      GPU, 20,000-image parts in parallel processes, in the cache train_prior.py reads;
#   2. "small" (8 x 288, 11.8 M parameters: 23.6 MB in bfloat16, bundleable) and "large" (10 x 512, 44 M)
#      trained concurrently, each inside the same wall-clock budget (time_budget_minutes: the cosine ends there);
#   3. each: temperature sweep (1,000 images per setting) -> sampling defaults, then generation_quality; the
#      small one also stored in bfloat16 (the bundle candidate) and measured as stored.
# Everything small comes back in $OUT/results.tgz, the bfloat16 small prior's weights in 16 MB parts.
#   OUT=/tmp/o bash training/gpu_priors.sh          # env: NUM_TRAIN, TRAIN_END_S, NUM_EVAL, SMALL, LARGE, DEVICE, PY
set -u
OUT=${OUT:-gpu-out}
NUM_TRAIN=${NUM_TRAIN:-120000}
TRAIN_END_S=${TRAIN_END_S:-330}    # seconds after start by which both training loops end
MEASURE_END_S=${MEASURE_END_S:-505}  # ... and by which measuring stops, so the results are packed in any case
NUM_EVAL=${NUM_EVAL:-1000}
PY=${PY:-python}                   # python3 on the device machine
DEVICE=${DEVICE:-cuda}             # where the measurements run (cpu for a dry run)
SMALL=${SMALL:---hidden_size 288 --num_hidden_layers 8 --num_attention_heads 6 --batch_size 128 --lr 0.001}
LARGE=${LARGE:---hidden_size 512 --num_hidden_layers 10 --num_attention_heads 8 --batch_size 256 --lr 0.0006}
COMMON="--config training/configs/shapes64_prior.json --num_train_images $NUM_TRAIN --max_steps 20000
        --warmup_steps 200 --eval_steps 1000 --save_steps 100000 --logging_steps 100 --bf16 true --progress false"
RUNS=runs/gpu-priors
export RUNS NUM_EVAL DEVICE PY
mkdir -p "$OUT" "$RUNS/small/tokens" "$RUNS/large"
START=$(date +%s); export START
left() { echo $(( $1 - $(date +%s) + START )); }  # seconds until $1 after start
log() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$RUNS/timeline.txt"; }

log "data: $NUM_TRAIN images in parts, plus the held-out part"
PY=$PY bash training/gpu_prior_data.sh "$RUNS/small/tokens" "$NUM_TRAIN"
cp -al "$RUNS/small/tokens" "$RUNS/large/tokens"
log "data ready: $(du -sh "$RUNS/small/tokens" | cut -f1)"

budget=$($PY -c "print(max(1.5, ($TRAIN_END_S - $(( $(date +%s) - START ))) / 60))")
log "training both priors, $budget minutes each"
(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 30 > "$RUNS/gpu_use.txt" 2>&1 &)
for name in small large; do
  sizes=$SMALL; [ "$name" = large ] && sizes=$LARGE
  timeout "$($PY -c "print(int($budget * 60 + 150))")" $PY training/train_prior.py $COMMON $sizes --output_dir "$RUNS/$name" --time_budget_minutes "$budget" \
    > "$RUNS/$name/train.log" 2>&1 &
done
wait
log "trained: $(grep -h 'held-out' "$RUNS"/*/train.log | tr '\n' ' ')"

measure() {  # $1: run name
  local final=$RUNS/$1/final results=$RUNS/$1/results
  [ -f "$final/model.safetensors" ] || { log "$1: no final model"; return; }
  $PY benchmarks/sampling_sweep.py --prior "$final" --num "$NUM_EVAL" --device $DEVICE --output-dir "$results" \
    --settings temperature=1.0 temperature=0.9 temperature=0.85 temperature=0.8 --set-defaults "$final"
  $PY benchmarks/generation_quality.py --prior "$final" --num "$NUM_EVAL" --device $DEVICE --output-dir "$results" \
    --update-card "$final"
  if [ "$1" = small ]; then
    $PY training/store_bfloat16.py "$final" "$final-bf16"
    $PY benchmarks/generation_quality.py --prior "$final-bf16" --num "$NUM_EVAL" --device $DEVICE \
      --output-dir "$results-bf16" --update-card "$final-bf16"
  fi
}
for name in small large; do
  (export -f measure log; timeout "$(left "$MEASURE_END_S")" bash -c "measure $name") > "$RUNS/$name/measure.log" 2>&1 &
done
wait
log "measured"

tar czf "$OUT/results.tgz" --exclude='*.safetensors' --exclude='checkpoint-*' --exclude='tokens' --exclude='*.arrow' "$RUNS"
if [ -f "$RUNS/small/final-bf16/model.safetensors" ]; then
  split -b 16000000 "$RUNS/small/final-bf16/model.safetensors" "$OUT/small-bf16.safetensors.part-"
fi
cp "$RUNS/timeline.txt" "$OUT/"
log "done"
