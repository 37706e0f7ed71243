"""The training loop shared by the feature classifiers (shapes counts, emoji groups): AdamW with a one-cycle
schedule, mirrored batches half the time (neither a shape count nor an emoji group changes under a mirror)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from image_tokenizer.feature_classifier import FeatureClassifier


def fit(model: FeatureClassifier, images: np.ndarray, targets: np.ndarray, *, epochs: int, batch_size: int, lr: float,
        seed: int, desc: str) -> FeatureClassifier:
    """Cross-entropy on every logit group: targets [N] (one label) or [N, T] (one class per type). `seed` fixes the
    batch order and the mirroring; the caller seeds the model's initialisation."""
    num = len(images)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (num // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(total=steps, desc=desc)
    for _ in range(epochs):
        order = torch.randperm(num, generator=generator).numpy()
        for index in range(0, num - batch_size + 1, batch_size):
            rows = order[index : index + batch_size]
            batch = torch.from_numpy(images[rows])
            if torch.rand(1, generator=generator).item() < 0.5:
                batch = batch.flip(2)
            logits = model(batch)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(targets[rows]).reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()
