"""Your own image folder, end to end: pre-tokenize it, train a small prior on the ids, generate new images.

    python examples/own_images.py --images my_photos/ --tokenizer shapes-64 --output runs/own --skip-bad
    python examples/own_images.py --images my_photos/ --tokenizer my-converted-llamagen/ --steps 2000 --output runs/own

Each stage is the library's public API (or the training script's function), nothing special to this example:
1. `pretokenize` turns the folder's training images (any layout `image-tokenizer pretokenize` reads: its `train/`
   split when it has split folders; class subfolders become a `label` column) into a dataset of token ids, saved
   with `save_to_disk`; with `--skip-bad`, files that cannot be used (undecodable, truncated, over the pixel
   budget) are skipped and counted instead of stopping the run;
2. `training/train_prior.py`'s `train` fits a transformers causal LM on those ids (class-conditional when the
   folder has class subfolders), holding out `--eval-fraction` of them to report bits per token;
3. `ImagePrior.generate` samples new images, decoded by the same tokenizer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for `training`, when run from a checkout

from image_tokenizer import ImagePrior, ImageTokenizer, ImageTokenizerError
from image_tokenizer.pretokenize import PretokenizeOptions, load_image_dataset, pretokenize
from image_tokenizer.visualize import image_grid
from training.train_prior import PriorTrainConfig, train


def run(images: str, tokenizer: str, output: str, steps: int = 300, hidden_size: int = 128, layers: int = 4,
        eval_fraction: float = 0.1, num_images: int = 16, progress: bool = True, skip_bad: bool = False) -> dict:
    """The three stages; returns where each result went, the images skipped and the held-out bits per token."""
    out = Path(output)
    tok = ImageTokenizer.from_pretrained(tokenizer)
    dataset = load_image_dataset(images)
    tokens, report = pretokenize(dataset, tok, PretokenizeOptions(skip_bad=skip_bad), return_report=True)
    tokens.save_to_disk(str(out / "tokens"))
    label = "label" if "label" in tokens.column_names and len(set(tokens["label"])) > 1 else None
    config = PriorTrainConfig(
        output_dir=str(out / "prior"), model_name="own-prior", tokenizer=tokenizer, data=str(out / "tokens"),
        eval_fraction=eval_fraction, label_column=label, hidden_size=hidden_size, num_hidden_layers=layers,
        num_attention_heads=4, max_steps=steps, batch_size=16, lr=1e-3, warmup_steps=min(50, steps // 10),
        eval_steps=max(steps // 2, 1), save_steps=steps, logging_steps=max(steps // 10, 1), sample_images=0,
        progress=progress,
    )
    result = train(config)
    prior = ImagePrior.from_pretrained(result["final_dir"], tokenizer=tok)
    samples = prior.generate(num_images, seed=0, top_k=100)
    image_grid(samples, columns=min(8, num_images), scale=2).save(out / "generated.png")
    return {"tokens": out / "tokens", "prior": result["final_dir"], "generated": out / "generated.png",
            "bits_per_token": result["bits_per_token"], "conditional": label is not None, "skipped": report["skipped"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="an image folder (class subfolders become labels)")
    parser.add_argument("--tokenizer", default="shapes-64", help="bundled name, saved folder or Hub id")
    parser.add_argument("--output", default="runs/own")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-fraction", type=float, default=0.1)
    parser.add_argument("--skip-bad", action="store_true", help="skip (and count) images that cannot be used")
    args = parser.parse_args()
    try:
        summary = run(args.images, args.tokenizer, args.output, steps=args.steps, eval_fraction=args.eval_fraction,
                      skip_bad=args.skip_bad)
    except ImageTokenizerError as error:  # one line, as the image-tokenizer command prints it
        sys.exit(f"own_images: error: {error}")
    print(f"tokens: {summary['tokens']} ({summary['skipped']} image(s) skipped)\nprior: {summary['prior']} ({summary['bits_per_token']:.2f} held-out bits/token)\n"
          f"generated: {summary['generated']}")


if __name__ == "__main__":
    main()
