"""What every quantizer kind shares: the output of a forward pass, the optional projections into the D-dimensional
lookup space, rows <-> feature maps, id -> feature-map lookup and the usage statistics of a batch.

Kinds: `VectorQuantizer` (quantizer.py, a learned codebook), `FiniteScalarQuantizer` (fsq.py) and
`LookupFreeQuantizer` (lfq.py), whose codebooks are implied by their definition, and the kinds that stack several
lookups in one learned codebook (stacked.py): `MultiScaleQuantizer` (multiscale.py) and `ResidualQuantizer`
(residual.py). Everything runs in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import QuantizerConfig


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, dim, H, W], straight-through: forward = codes, backward = identity to z
    ids: torch.Tensor  # [B, H, W] int64 code indices ([B, N] multiscale, [B, H, W, D] residual: layouts.py)
    loss: torch.Tensor  # what the kind adds to the training loss (vq: codebook + beta * commitment)
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    usage: torch.Tensor  # share of codes used at least once in this batch
    perplexity: torch.Tensor  # exp(entropy) of the batch's code histogram
    entropy_loss: torch.Tensor | None = None  # lfq: per-sample entropy - batch entropy (weighted), else None
    step_usage: torch.Tensor | None = None  # multiscale, residual: [S] usage of each scale / depth in this batch
    step_perplexity: torch.Tensor | None = None  # multiscale, residual: [S] perplexity of each scale / depth


class QuantizerBase(nn.Module):
    """Projections dim <-> D (when they differ) and the plumbing around a kind's rows -> (codes, ids) assignment."""

    def __init__(self, dim: int, config: QuantizerConfig):
        super().__init__()
        self.config = config
        self.dim = dim
        d = config.codebook_dim
        self.project_in = nn.Linear(dim, d) if dim != d else None
        self.project_out = nn.Linear(d, dim) if dim != d else None

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def effective_codebook(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The [K, D] code vectors in the lookup space, fp32."""
        raise NotImplementedError

    def code_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids of any shape -> their fp32 code vectors [..., D] in the lookup space."""
        return F.embedding(ids, self.effective_codebook(device=ids.device))

    def protect_codes(self) -> None:
        """Keep the current codes through the first training steps (learned codebooks; implied ones have none)."""

    def initial_state(self, codebook: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The state entries a saved model does not hold in model.safetensors (the codebook, training statistics)."""
        return {}

    def _to_lookup_space(self, z_flat: torch.Tensor) -> torch.Tensor:
        z = z_flat.float()
        if self.project_in is not None:
            z = F.linear(z, self.project_in.weight.float(), self.project_in.bias.float())
        return z

    def _from_lookup_space(self, q: torch.Tensor) -> torch.Tensor:
        if self.project_out is None:
            return q
        return F.linear(q, self.project_out.weight.float(), self.project_out.bias.float())

    def _rows(self, z: torch.Tensor) -> torch.Tensor:
        """[B, dim, H, W] features -> fp32 rows [BHW, D] in the lookup space."""
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(f"quantizer expects [B, {self.dim}, H, W], got {tuple(z.shape)}")
        return self._to_lookup_space(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]))

    def batch_counts(self, ids: torch.Tensor) -> torch.Tensor:
        """How often each code occurs in the flat ids [N] (float, length K)."""
        # index_add_, not bincount: CUDA's bincount reads ids.max() back to size its output, a sync every step.
        ones = torch.ones_like(ids, dtype=torch.float)
        return torch.zeros(self.codebook_size, device=ids.device).index_add_(0, ids, ones)

    def _output(self, z: torch.Tensor, passed: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor,
                losses: tuple[torch.Tensor, ...]) -> QuantizerOutput:
        """Package rows [BHW, D] passed to the decoder side (projected out) and ids [BHW] as maps shaped like z;
        losses are (loss, codebook_loss, commitment_loss[, entropy_loss])."""
        b, c, h, w = z.shape
        quantized = self._from_lookup_space(passed).reshape(b, h, w, c).permute(0, 3, 1, 2).to(z.dtype)
        usage, perplexity = usage_and_perplexity(counts)
        loss, codebook_loss, commitment_loss, *entropy = losses
        return QuantizerOutput(quantized=quantized, ids=ids.reshape(b, h, w), loss=loss, codebook_loss=codebook_loss,
                               commitment_loss=commitment_loss, usage=usage, perplexity=perplexity,
                               entropy_loss=entropy[0] if entropy else None)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code ids [B, h, w] -> quantized feature map [B, dim, h, w] (what the decoder consumes), channels_last:
        the layout the vectors come in, and the one the decoder's convolutions run fastest on (CPU and GPU)."""
        vectors = self._from_lookup_space(self.code_vectors(ids))
        return vectors.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def usage_and_perplexity(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Share of codes with a non-zero count, and exp(entropy) of the normalised histogram."""
    counts = counts.float()
    probs = counts / counts.sum().clamp_min(1.0)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return (counts > 0).float().mean(), torch.exp(entropy)
