"""Devices and dtypes, checked at the boundary: a device this machine has, a dtype the model can run in.
Errors say what is wrong instead of an assertion from deep inside torch."""

from __future__ import annotations

import torch

from .errors import InvalidRequestError


def check_device(device: str | torch.device) -> torch.device:
    """A device this machine has, or InvalidRequestError naming what is wrong (instead of an assertion deep in torch)."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidRequestError(f"{device!r} is not a device; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidRequestError(f"device {str(device)!r} asked for, but this machine has no CUDA GPU (torch {torch.__version__}); use 'cpu'")
        if device.index is not None and device.index >= count:
            raise InvalidRequestError(f"device {str(device)!r} asked for, but this machine has {count} CUDA GPU(s): cuda:0..cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidRequestError("device 'mps' asked for, but MPS is not available here; use 'cpu'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InvalidRequestError(f"device {str(device)!r} is not supported; use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device


def model_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A dtype the encoder and decoder can run in, from a torch.dtype or its name; None and "auto" keep the current one."""
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in names:
        return names[dtype.removeprefix("torch.")]
    if dtype not in names.values():
        raise InvalidRequestError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16 (or their names, or 'auto'), got {dtype!r}")
    return dtype
