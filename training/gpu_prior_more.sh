#!/usr/bin/env bash
# Train the bundled shapes-64 prior further on one GPU within MEASURE_END_S (560 s by default), and measure it
# as it would ship:
#   1. the training data (training/gpu_prior_data.sh), NUM_TRAIN images + mirrors, tokenized on the GPU;
#   2. one run from the bundled prior's weights (--init_from: a fresh optimizer and warmup + cosine), alone on
#      the GPU, its cosine fitted into the time left before TRAIN_END_S (--time_budget_minutes);
#   3. the result stored in bfloat16 (the bundle's form), then, concurrently: a sampling sweep (SETTINGS, NUM_EVAL
#      images each) -> sampling defaults -> generation_quality, and prior_diagnostics; MEASURE_END_S stops them.
# Everything small comes back in $OUT/results.tgz (the run folder's contents), the bfloat16 weights in 16 MB parts.
#   OUT=/tmp/o PY=python3 bash training/gpu_prior_more.sh
#   env: NUM_TRAIN, NUM_HELDOUT, TRAIN_END_S, MEASURE_END_S, NUM_EVAL, RUN, SETTINGS, DEVICE, RUNS (the run folder)
set -u
OUT=${OUT:-gpu-out}
NUM_TRAIN=${NUM_TRAIN:-120000}
TRAIN_END_S=${TRAIN_END_S:-380}
MEASURE_END_S=${MEASURE_END_S:-560}
NUM_EVAL=${NUM_EVAL:-1000}
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
RUN=${RUN:---init_from shapes-64-prior --batch_size 256 --lr 0.0007 --warmup_steps 200}
SETTINGS=${SETTINGS:-temperature=0.8 temperature=0.75 temperature=0.7 temperature=0.9,top_k=50}
RUNS=${RUNS:-runs/gpu-prior-more}
FINAL=$RUNS/final-bf16
mkdir -p "$OUT" "$RUNS"
START=$(date +%s)
log() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$RUNS/timeline.txt"; }
left() { local s=$(( $1 - $(date +%s) + START )); echo $(( s > 10 ? s : 10 )); }  # seconds until $1 after start (at least 10)

log "data: $NUM_TRAIN images in parts, plus the held-out part"
PY=$PY bash training/gpu_prior_data.sh "$RUNS/tokens" "$NUM_TRAIN" || { log "data failed: see $RUNS/part-*.log"; exit 1; }
log "data ready: $(du -sh "$RUNS/tokens" | cut -f1)"

budget=$($PY -c "print(max(0.5, ($TRAIN_END_S - $(( $(date +%s) - START ))) / 60))")
log "training, $budget minutes"
(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 30 > "$RUNS/gpu_use.txt" 2>&1 &)
timeout "$(left $((TRAIN_END_S + 60)))" $PY training/train_prior.py --config training/configs/shapes64_prior_gpu.json \
  --num_train_images "$NUM_TRAIN" --max_steps 100000 --eval_steps 1000 --save_steps 1000000 --progress false \
  $RUN --output_dir "$RUNS" --time_budget_minutes "$budget" > "$RUNS/train.log" 2>&1
log "trained: $(grep -h 'held-out' "$RUNS/train.log")"
[ -f "$RUNS/final/model.safetensors" ] || { log "no final model"; tar czf "$OUT/results.tgz" -C "$RUNS" --exclude=tokens .; exit 1; }

$PY training/store_bfloat16.py "$RUNS/final" "$FINAL"
split -b 16000000 "$FINAL/model.safetensors" "$OUT/final-bf16.safetensors.part-"
log "stored in bfloat16; measuring"
(timeout "$(left "$MEASURE_END_S")" bash -c "
  $PY benchmarks/sampling_sweep.py --prior $FINAL --num $NUM_EVAL --device $DEVICE --output-dir $RUNS/results \
    --settings $SETTINGS --set-defaults $FINAL &&
  $PY benchmarks/generation_quality.py --prior $FINAL --num $NUM_EVAL --device $DEVICE --output-dir $RUNS/results \
    --update-card $FINAL") > "$RUNS/measure.log" 2>&1 &
timeout "$(left "$MEASURE_END_S")" $PY benchmarks/prior_diagnostics.py --prior "$FINAL" --num "$NUM_EVAL" \
  --device "$DEVICE" --output-dir "$RUNS/results" > "$RUNS/diagnostics.log" 2>&1 &
wait
log "measured"
tar czf "$OUT/results.tgz" -C "$RUNS" --exclude='*.safetensors' --exclude='checkpoint-*' --exclude='tokens' --exclude='*.arrow' .
log "done"
