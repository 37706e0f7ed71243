"""Evaluate a tokenizer on a held-out set: PSNR, SSIM, codebook usage and perplexity, hole recall."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .metrics import codebook_usage, hole_recall, psnr, ssim


def evaluate_tokenizer(
    tokenizer: Any,
    images: np.ndarray,
    hole_masks: np.ndarray | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, float]:
    """Reconstruct uint8 images [N, H, W, 3] (already at the tokenizer's resolution) and score them."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    counts = torch.zeros(tokenizer.vocab_size, dtype=torch.float64)
    reconstructions = []
    for start in tqdm(range(0, len(images), batch_size), desc="evaluating", disable=not progress):
        batch = images[start : start + batch_size]
        ids = tokenizer.encode(batch)
        counts += torch.bincount(ids.reshape(-1), minlength=tokenizer.vocab_size).double()
        reconstructions.append(tokenizer.decode(ids, output_type="np"))
    recon = np.concatenate(reconstructions)
    usage, perplexity = codebook_usage(counts)
    psnr_values = psnr(images, recon)
    results = {
        "num_images": int(len(images)),
        "psnr_db": float(np.mean(np.minimum(psnr_values, 100.0))),  # a perfect image counts as 100 dB
        "ssim": float(np.mean(ssim(images, recon))),
        "codebook_usage": usage,
        "perplexity": perplexity,
    }
    if hole_masks is not None:
        results["hole_recall"] = hole_recall(recon, hole_masks)
    return results
