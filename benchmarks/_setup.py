"""The setup the CPU speed benchmarks share (op_profile.py, peers.py): 256x256 images, ch 64, K 16,384, random
weights, timings interleaved with medians, and the peak memory of one call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from image_tokenizer import ImageTokenizerConfig, QuantizerConfig

RESOLUTION = 256
CH = 64
CODEBOOK_SIZE = 16_384
CODEBOOK_DIM = 8


def setup_config() -> ImageTokenizerConfig:
    """LlamaGen's VQ-16 at half width: ch 64, ch_mult (1, 1, 2, 2, 4), two ResNet blocks per level, mid attention."""
    return ImageTokenizerConfig(
        resolution=RESOLUTION, ch=CH, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=256,
        quantizer=QuantizerConfig(codebook_size=CODEBOOK_SIZE, codebook_dim=CODEBOOK_DIM),
    )


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, so no layer hides behind an identity init: matrices and kernels N(0, 1/fan_in) (the
    activations keep their scale through the depth of the setup), biases N(0, 0.01), norm scales N(1, 0.01)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = p[0].numel() ** -0.5 if p.ndim > 1 else 0.1
            offset = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(torch.randn(p.shape, generator=generator) * scale + offset)
    return model.eval()


def random_pixels(batch: int, seed: int = 1) -> torch.Tensor:
    """Normalised pixels in [-1, 1], [batch, 3, 256, 256]."""
    return torch.rand(batch, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def interleaved_medians(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Seconds of each call: one warm-up each, then `repeats` rounds calling each once in turn (so a change in
    the machine's load hits every call alike); the median and all times."""
    for fn in calls.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(t), "times_s": t} for name, t in times.items()}


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def peak_memory_mib(fn: Callable[[], object]) -> float:
    """How far the process's resident memory rose above its level before fn, at its highest during fn (MiB):
    the kernel's high-water mark (VmHWM), reset first through /proc/self/clear_refs."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = _status_mib("VmRSS")
    fn()
    return _status_mib("VmHWM") - before
