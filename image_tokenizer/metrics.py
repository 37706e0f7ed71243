"""Offline image-quality and codebook metrics (no pretrained networks): PSNR, SSIM, hole recall, usage."""

from __future__ import annotations

import numpy as np
import torch

DARK_THRESHOLD = 50  # a pixel is "dark" when every channel is below this; shapes' colours peak at >= 100


def psnr(reference: np.ndarray, reconstruction: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image, for uint8 arrays [..., H, W, C]; identical images give inf."""
    _check_same_shape(reference, reconstruction)
    diff = reference.astype(np.float64) - reconstruction.astype(np.float64)
    mse = (diff**2).reshape(*diff.shape[:-3], -1).mean(axis=-1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(max_value**2 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian; SSIM's 2-D window is its outer product with itself."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _valid_blur_matrix(length: int, size: int = 11) -> torch.Tensor:
    """[length - size + 1, length]: row i holds the 1-D Gaussian at columns i .. i + size - 1."""
    g = _gaussian_1d(size)
    matrix = torch.zeros(length - size + 1, length, dtype=torch.float64)
    for i in range(matrix.shape[0]):
        matrix[i, i : i + size] = g
    return matrix


def ssim(reference: np.ndarray, reconstruction: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """Structural similarity per image (Wang et al. 2004: 11x11 Gaussian, sigma 1.5, K1=0.01, K2=0.03),
    computed per channel over the valid region and averaged; uint8 arrays [N, H, W, C] or [H, W, C]."""
    _check_same_shape(reference, reconstruction)
    single = reference.ndim == 3
    x = torch.from_numpy(np.asarray(reference, dtype=np.float64)).reshape(-1, *reference.shape[-3:])
    y = torch.from_numpy(np.asarray(reconstruction, dtype=np.float64)).reshape(-1, *reference.shape[-3:])
    x, y = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    if x.shape[-1] < 11 or x.shape[-2] < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {tuple(x.shape[-2:])}")
    down, across = _valid_blur_matrix(x.shape[-2]), _valid_blur_matrix(x.shape[-1])

    def blur(t: torch.Tensor) -> torch.Tensor:
        # The 11x11 Gaussian is separable: a banded matrix product down the columns, then across the rows.
        # Same sums as a 2-D convolution over the valid region, but on BLAS, fast in float64.
        return down @ t @ across.T

    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    values = ssim_map.mean(dim=(1, 2, 3)).numpy()
    return values[0] if single else values


def hole_recall(reconstruction: np.ndarray, hole_masks: np.ndarray, dark_threshold: int = DARK_THRESHOLD) -> float:
    """Share of hole pixels (background inside a shape's outline) that the reconstruction also leaves dark,
    pooled over all images; NaN when there are no holes at all."""
    if reconstruction.shape[:-1] != hole_masks.shape:
        raise ValueError(f"masks {hole_masks.shape} do not match images {reconstruction.shape}")
    dark = (reconstruction < dark_threshold).all(axis=-1)
    holes = hole_masks.astype(bool)
    total = holes.sum()
    return float((dark & holes).sum() / total) if total else float("nan")


def codebook_usage(counts: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """(share of codes used at least once, perplexity = exp(entropy) of the code histogram)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    probs = counts / counts.sum().clamp_min(1.0)
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    return float((counts > 0).double().mean()), float(entropy.exp())


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")


COLLAPSE_SHARE = 0.1  # a scale / depth uses fewer than this share of the codes its positions could reach: collapsed


def collapsed(codes_used: int, codebook_size: int, positions: int) -> bool:
    """The one rule for a collapsed scale or depth: it uses under COLLAPSE_SHARE of the codes its positions could
    reach, min(codebook_size, positions), positions being its ids per image times the images counted."""
    return codes_used < COLLAPSE_SHARE * min(codebook_size, positions)


def step_usage(counts: torch.Tensor, labels: list[str], positions: list[int]) -> list[dict]:
    """Each step's (scale's, depth's) codebook use from its code histogram counts [S, K] over `positions[s]` ids:
    codes used, the codes it could reach, its share of the codebook, perplexity and whether it collapsed."""
    rows = []
    for label, row, count in zip(labels, torch.as_tensor(counts, dtype=torch.float64), positions):
        usage, perplexity = codebook_usage(row)
        used, k = int((row > 0).sum()), row.numel()
        rows.append({"step": label, "codes_used": used, "reachable": min(k, count), "usage": usage,
                     "perplexity": perplexity, "collapsed": collapsed(used, k, count)})
    return rows
