# The CPU emoji prior measured in benchmarks/results/generation_quality_emoji.md (2026-12-02, 2 CPU cores,
# Intel Xeon, torch 2.13.0+cpu). Not bundled: its samples (samples.png) are coloured blobs, not emoji.
# 1. tokens of both emoji splits with the bundled emoji-64-small (392 and 345 images/s)
for split in train test; do
  image-tokenizer pretokenize --data emoji --split $split --model emoji-64-small --output runs/emoji-64-small-tokens/$split
done
# 2. a 4 x 128 Llama (1.3 M parameters) conditioned on the Unicode group, 25-minute budget: 2,156 steps of
#    batch 32 (10.5 passes), held-out 4.93 bits per token (train 3.43)
python training/train_prior.py --config training/configs/emoji64_prior_cpu.json --progress false
# 3. Fréchet distance in the emoji-classifier's features, floor from two held-out halves
python benchmarks/generation_quality.py --data emoji --prior runs/emoji-64-small-prior/final
