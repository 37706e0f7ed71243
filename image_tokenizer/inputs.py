"""The one boundary for token ids: anything a caller may hand us as ids becomes an int64 CPU tensor, or our error.

Used by the tokenizer (decode, batch_decode), the prior (prefixes, class labels), the text-vocabulary mapping
and the CLI, so every entry point accepts and refuses the same things with the same messages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import InvalidIdsError


def as_id_tensor(ids: Any) -> torch.Tensor:
    """Ids from a list, numpy array or tensor -> int64 CPU tensor; anything that is not integers is refused by name."""
    if ids is None:
        raise InvalidIdsError("ids are None; pass a list, numpy array or tensor of integer ids")
    if isinstance(ids, torch.Tensor):
        if ids.is_meta:
            raise InvalidIdsError("ids are a meta tensor, which holds no data")
        tensor = ids.detach().to("cpu")
        tensor = tensor.to_dense() if tensor.layout != torch.strided else tensor
    else:
        try:
            array = np.asarray(ids)
        except (ValueError, TypeError):
            raise InvalidIdsError("ids must form a rectangular array (sequences of different lengths: use batch_decode)") from None
        if array.size == 0:
            array = array.astype(np.int64)  # [] has no integers, but no non-integers either
        if array.dtype.kind not in "iub":
            raise InvalidIdsError(f"ids must be integers, got dtype {array.dtype.name}")
        tensor = torch.from_numpy(array.astype(np.int64) if array.dtype == np.uint64 else array.copy())
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise InvalidIdsError(f"ids must be integers, got dtype {str(tensor.dtype).replace('torch.', '')}")
    return tensor.long()
