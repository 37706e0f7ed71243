"""Running the model on fixed-size micro-batches, so an image's ids never depend on how a caller batches.

CPU and GPU kernels change algorithm with the batch size, which moves encoder outputs in the 6th digit and can
flip a near-tie between two codes. Every call therefore sees the same batch size for a given device and image
size: the last micro-batch is zero-padded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

CPU_MICRO_BATCH = 8  # images per encoder call on CPU: the model dominates there, and small batches keep memory low
ACCELERATOR_MICRO_BATCH_PIXELS = 2**20  # on a GPU: 256 images of 64x64 (16 of 256x256) per call keep it busy


def micro_batch_size(device: torch.device, height: int, width: int, fixed: int | None = None) -> int:
    """Images per model call for images of height x width pixels: `fixed` if set, else 8 on CPU and a
    2**20-pixel budget on an accelerator."""
    if fixed is not None:
        return fixed
    if device.type == "cpu":
        return CPU_MICRO_BATCH
    return max(1, ACCELERATOR_MICRO_BATCH_PIXELS // (height * width))


def run_in_micro_batches(
    fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, size: int, pad: bool = True
) -> torch.Tensor:
    """fn over `inputs` (pixels [B, 3, H, W] or id grids [B, h, w]) in micro-batches of `size`; with pad, the
    last one is zero-padded to full size. Pixels go in as channels_last, every micro-batch alike (same kernels,
    same ids): oneDNN and cuDNN convolutions run faster on it (benchmarks/results/pretokenize_cpu.md)."""
    outputs = []
    for start in range(0, inputs.shape[0], size):
        chunk = inputs[start : start + size]
        count = chunk.shape[0]
        if pad and count < size:
            chunk = torch.cat([chunk, chunk.new_zeros((size - count, *chunk.shape[1:]))])
        if chunk.ndim == 4:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        outputs.append(fn(chunk)[:count])
    return torch.cat(outputs)
