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
import torch.nn.functional as F
from tqdm.auto import tqdm

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_tokenizer.data.shapes import HELDOUT_SEED, ShapeSample, generate
from image_tokenizer.shapes_classifier import ShapesClassifier

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
    torch.manual_seed(seed)
    images, counts = arrays(num, CLASSIFIER_SEED, workers)
    held_images, held_counts = arrays(1000, HELDOUT_SEED, workers)
    model = ShapesClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (num // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    bar = tqdm(total=steps, desc="shapes classifier")
    for _ in range(epochs):
        order = torch.randperm(num, generator=generator).numpy()
        for index in range(0, num - batch_size + 1, batch_size):
            rows = order[index : index + batch_size]
            batch = torch.from_numpy(images[rows])
            if torch.rand(1, generator=generator).item() < 0.5:  # counts do not change under a mirror
                batch = batch.flip(2)
            logits = model(batch)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(counts[rows]).reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
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
