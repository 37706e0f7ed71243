"""Offline image-quality metrics (no pretrained networks): PSNR on uint8 images."""

from __future__ import annotations

import numpy as np


def psnr(reference: np.ndarray, reconstruction: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image, for uint8 arrays [..., H, W, C]; identical images give inf."""
    if reference.shape != reconstruction.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {reconstruction.shape}")
    diff = reference.astype(np.float64) - reconstruction.astype(np.float64)
    mse = (diff**2).reshape(*diff.shape[:-3], -1).mean(axis=-1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(max_value**2 / mse)
