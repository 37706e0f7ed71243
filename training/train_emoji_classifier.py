"""Train the emoji group classifier whose features measure generation quality on emoji.

    python training/train_emoji_classifier.py [--epochs 15] [--output image_tokenizer/pretrained/emoji-classifier]

Trains on the emoji train split (both styles, 64 px) to predict each emoji's Unicode group; reports accuracy
on the held-out split, overall and per style. Needs the emoji data (`pip install ".[emoji]"` and Debian's
fonts-noto-color-emoji and unicode-data).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_tokenizer.data.emoji import emoji_dataset
from image_tokenizer.feature_classifier import LabelClassifier, LabelClassifierConfig
from training.fit_classifier import fit


def emoji_arrays(split: str, resolution: int) -> tuple[np.ndarray, list[str], list[str]]:
    """uint8 images [N, R, R, 3], their groups and their styles."""
    data = emoji_dataset(split, resolution=resolution)
    return np.stack([np.asarray(image) for image in data["image"]]), data["group"], data["style"]


def held_out_accuracy(model: LabelClassifier, images: np.ndarray, groups: list[str], styles: list[str]) -> dict[str, float]:
    hits = model.predict(images) == model.label_ids(groups)
    styles_array = np.array(styles)
    return {"heldout_group_accuracy": float(hits.mean()),
            **{f"heldout_group_accuracy[{style}]": float(hits[styles_array == style].mean()) for style in sorted(set(styles))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--feature-dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "image_tokenizer/pretrained/emoji-classifier"))
    args = parser.parse_args()
    images, groups, _ = emoji_arrays("train", args.resolution)
    held_images, held_groups, held_styles = emoji_arrays("test", args.resolution)
    config = LabelClassifierConfig(image_size=args.resolution, channels=tuple(args.channels), feature_dim=args.feature_dim,
                                   class_names=tuple(dict.fromkeys(groups)), label_column="group")
    torch.manual_seed(args.seed)
    model = LabelClassifier(config)
    start = time.perf_counter()
    fit(model, images, model.label_ids(groups), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        desc="emoji group classifier")
    metrics = {**held_out_accuracy(model, held_images, held_groups, held_styles),
               "majority_class_share": float(max(held_groups.count(g) for g in set(held_groups)) / len(held_groups)),
               "train_images": len(images), "heldout_images": len(held_images), "epochs": args.epochs,
               "train_seconds": round(time.perf_counter() - start, 1),
               "command": "python training/train_emoji_classifier.py " + " ".join(sys.argv[1:])}
    model.save_pretrained(args.output, metrics)
    print(f"saved {args.output}: {metrics}")


if __name__ == "__main__":
    main()
