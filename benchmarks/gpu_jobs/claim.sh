#!/usr/bin/env bash
# Job b: does the discrete bottleneck keep the holes? Autoencoder, VAE, VQ-VAE and VQGAN (training/configs/seed_*.json) trained at a
# budget where holes can appear (STEPS steps of batch BATCH, default 10,000 x 64: 16x the CPU table's images),
# concurrently on the one GPU; then a prior over each VQ model's tokens (seed_*_prior.json); then all four scored
# on the same 1,000 held-out images by benchmarks/seed_systems.py (PSNR, SSIM, hole recall, bits, s/step, the
# most-holes figure, VAE samples from N(0, I), Frechet distances). A system already trained (final weights in
# runs/claim/) is not trained again, and a VQ run stopped by the deadline resumes from its checkpoint, so a
# second call on a warm machine goes on where the first stopped (exit 75 until everything is done).
source "$(dirname "$0")/common.sh"
RUNS=$RUNS_ROOT/claim
if smoke; then
  STEPS=2; BATCH=4; size="--num_train_images 16 --eval_images 8"; prior_size="--max_steps 1 --num_train_images 16 --eval_images 4 --sample_images 0
              --hidden_size 32 --num_hidden_layers 1 --num_attention_heads 2"
  score="--num 8 --rows 2 --time-steps 2"
else
  STEPS=${STEPS:-10000}; BATCH=${BATCH:-64}; size=""; prior_size=""; score="--num 1000 --time-steps 60"
fi
mkdir -p "$RUNS"
log "training the four systems"
common="--steps $STEPS --batch_size $BATCH --progress false $size"
for system in ae vae; do
  [ -f "$RUNS/$system/model.safetensors" ] && continue
  timeout "$(left 200)" $PY training/baselines/train_baseline.py --config "training/configs/seed_$system.json" \
    --output_dir "$RUNS/$system" $common > "$EXTRA/train_$system.log" 2>&1 &
done
for system in vqvae vqgan; do
  [ -f "$RUNS/$system/final/model.safetensors" ] && continue
  timeout "$(left 200)" $PY training/train_tokenizer.py --config "training/configs/seed_$system.json" --resume \
    --output_dir "$RUNS/$system" --checkpoint_every 1000 --image_every 0 $common > "$EXTRA/train_$system.log" 2>&1 &
done
wait
log "trained: $(ls -d $RUNS/ae/model.safetensors $RUNS/vae/model.safetensors $RUNS/vq*/final 2>/dev/null | tr '\n' ' ')"
for system in vqvae vqgan; do
  [ -f "$RUNS/$system/final/model.safetensors" ] || continue
  [ -f "$RUNS/$system-prior/final/model.safetensors" ] && continue
  timeout "$(left 130)" $PY training/train_prior.py --config "training/configs/seed_${system}_prior.json" \
    --tokenizer "$RUNS/$system/final" --output_dir "$RUNS/$system-prior" --progress false $prior_size \
    > "$EXTRA/train_$system-prior.log" 2>&1 &
done
wait
log "priors trained; scoring"
for file in $RUNS/ae/model.safetensors $RUNS/vae/model.safetensors $RUNS/vqvae/final/model.safetensors \
            $RUNS/vqgan/final/model.safetensors $RUNS/vqvae-prior/final/model.safetensors $RUNS/vqgan-prior/final/model.safetensors; do
  [ -f "$file" ] || { log "not finished: $file; call again on the warm machine"; exit 75; }
done
timeout "$(left 5)" $PY benchmarks/seed_systems.py --ae $RUNS/ae --vae $RUNS/vae --vqvae $RUNS/vqvae --vqgan $RUNS/vqgan \
  --vqvae-prior $RUNS/vqvae-prior/final --vqgan-prior $RUNS/vqgan-prior/final $score --time-batch-size "$BATCH" \
  --name seed_systems_gpu --output-dir "$RESULTS" || exit 1
log "scored"
# The trained models (a few MB) come back for the CPU check, without checkpoints or token caches.
tar czf "$EXTRA/models.tgz" -C "$RUNS_ROOT" --exclude='checkpoint*' --exclude=tokens --exclude='*.arrow' claim
