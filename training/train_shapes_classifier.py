"""Train the small shapes classifier (shape counts per type) whose features measure generation quality.

    python training/train_shapes_classifier.py [--images 20000] [--epochs 4] [--output image_tokenizer/pretrained/shapes-classifier]

Trains on shapes seed 3, so it has seen neither the held-out set (seed 1) nor the tokenizer's and prior's
training images (seed 0); reports per-type count accuracy on 1,000 held-out images.
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

from image_tokenizer.data.shapes import HELDOUT_SEED, ShapeSample, generate
from image_tokenizer.shapes_classifier import ShapesClassifier
from training.fit_classifier import fit

CLASSIFIER_SEED = 3


def arrays(num: int, seed: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    samples: list[ShapeSample] = list(generate(num, seed, num_workers=workers))
    return np.stack([s.image for s in samples]), np.array([s.type_counts for s in samples], dtype=np.int64)


@torch.inference_mode()
def accuracy(model: ShapesClassifier, images: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    predicted = model.predict_counts(images)
    return {
        "per_type_count_accuracy": float((predicted == counts).mean()),
        "all_types_exact": float((predicted == counts).all(axis=1).mean()),
        "total_count_accuracy": float((predicted.sum(1) == counts.sum(1)).mean()),
    }


def train(num: int, epochs: int, batch_size: int, lr: float, seed: int, workers: int) -> tuple[ShapesClassifier, dict]:
    images, counts = arrays(num, CLASSIFIER_SEED, workers)
    held_images, held_counts = arrays(1000, HELDOUT_SEED, workers)
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = fit(ShapesClassifier(), images, counts, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, desc="shapes classifier")
    metrics = {**accuracy(model, held_images, held_counts), "train_images": num, "epochs": epochs,
               "train_seconds": round(time.perf_counter() - start, 1)}
    return model, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "image_tokenizer/pretrained/shapes-classifier"))
    args = parser.parse_args()
    model, metrics = train(args.images, args.epochs, args.batch_size, args.lr, args.seed, args.workers)
    metrics["command"] = "python training/train_shapes_classifier.py " + " ".join(sys.argv[1:])
    model.save_pretrained(args.output, metrics)
    print(f"saved {args.output}: {metrics}")


if __name__ == "__main__":
    main()
