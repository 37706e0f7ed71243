"""Quantizers whose codebook their definition implies (FSQ levels, LFQ bits): nothing learned, nothing stored.

Each channel of a row becomes a digit; the id is the mixed-radix number id = sum_i digit_i * radix_i, with
digit i in 0..levels_i - 1. The [K, D] codebook (`effective_codebook`) is built on demand from the id -> code map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import QuantizerConfig
from .quantizer_base import QuantizerBase, QuantizerOutput


class ImplicitQuantizer(QuantizerBase):
    """Rows -> digits -> ids and back; a kind defines `quantize_rows`, `codes_from_digits` and its `losses`."""

    def __init__(self, dim: int, config: QuantizerConfig, levels: list[int], radix: list[int]):
        super().__init__(dim, config)
        # Not persistent: implied by the config, so saved weights hold nothing of the quantizer.
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        self.register_buffer("radix", torch.tensor(radix, dtype=torch.long), persistent=False)

    def quantize_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 rows [N, D] -> (codes [N, D] with straight-through gradients, digits [N, D] int64)."""
        raise NotImplementedError

    def codes_from_digits(self, digits: torch.Tensor) -> torch.Tensor:
        """Digits [..., D] int64 -> fp32 code vectors [..., D]."""
        raise NotImplementedError

    def losses(self, rows: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(loss, codebook_loss, commitment_loss[, entropy_loss]) of a training batch; rows carry gradients."""
        zero = rows.new_zeros(())
        return zero, zero, zero

    def ids_from_digits(self, digits: torch.Tensor) -> torch.Tensor:
        return (digits * self.radix).sum(dim=-1)

    def digits_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.div(ids.unsqueeze(-1), self.radix, rounding_mode="floor") % self.levels

    def code_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codes_from_digits(self.digits_from_ids(ids.to(self.radix.device)))

    def effective_codebook(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The [K, D] codes of ids 0..K-1, computed now (K x D x 4 bytes: 18 MiB at K = 2^18, D = 18)."""
        codes = self.code_vectors(torch.arange(self.codebook_size, device=self.radix.device))
        return codes if device is None else codes.to(device)

    @torch.no_grad()
    def encode_ids(self, z: torch.Tensor) -> torch.Tensor:
        """Ids only [B, H, W], for inference: the same assignment as forward without losses or statistics."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            digits = self.quantize_rows(self._rows(z))[1]
            return self.ids_from_digits(digits).reshape(z.shape[0], z.shape[2], z.shape[3])

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        with torch.autocast(device_type=z.device.type, enabled=False):
            rows = self._rows(z)
            passed, digits = self.quantize_rows(rows)
            ids = self.ids_from_digits(digits)
            losses = self.losses(rows, passed.detach()) if self.training else (rows.new_zeros(()),) * 3
            return self._output(z, passed, ids, self.batch_counts(ids), losses)


def straight_through(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Forward: value; backward: identity to x."""
    return x + (value - x).detach()


def commitment(rows: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """||z - sg[code]||^2, averaged."""
    return F.mse_loss(rows, codes)
