"""Lookup-free quantization (MAGVIT-v2, Yu et al. 2023): each channel becomes one bit, code value -1 or +1.

The id of a row is sum_i [z_i > 0] * 2^i with bit_order "lsb_first" (Open-MAGVIT2, MaskBit: channel 0 is the
lowest bit) or sum_i [z_i > 0] * 2^(D-1-i) with "msb_first" (vector-quantize-pytorch, BSQ); z_i = 0 is bit 0.
No distance matrix is needed: an id costs D comparisons, whatever K = 2^D.

Training adds the entropy loss: per-sample entropy minimised (confident bits) and the entropy of the batch's
average code distribution maximised (all codes used), over the softmax of logits 2 z . c / T (Open-MAGVIT2).
That softmax over K = 2^D codes factorises into independent bits, P(bit_i = 1) = sigmoid(4 z_i / T), so the
per-sample entropy is exactly the sum of D binary entropies. The batch entropy is computed exactly over groups
of `entropy_group_bits` bits and summed over groups (an upper bound of the joint entropy, exact when D fits in
one group): never a B x 2^D matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import QuantizerConfig
from .implicit import ImplicitQuantizer, commitment, straight_through

LOG_EPS = 1e-5  # inside log(avg_probs + eps), as Open-MAGVIT2's entropy_loss


class LookupFreeQuantizer(ImplicitQuantizer):
    """Kind "lfq": K = 2^bits codes in {-1, +1}^bits; loss = beta * commitment + entropy_loss_weight * entropy."""

    def __init__(self, dim: int, config: QuantizerConfig):
        bits = config.bits
        radix = [2**i for i in range(bits)]
        if config.bit_order == "msb_first":
            radix.reverse()
        super().__init__(dim, config, [2] * bits, radix)

    def quantize_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positive = rows > 0
        value = torch.where(positive, 1.0, -1.0)
        return straight_through(rows, value), positive.long()

    def codes_from_digits(self, digits: torch.Tensor) -> torch.Tensor:
        return digits.float() * 2 - 1

    def losses(self, rows: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c = self.config
        commitment_loss = commitment(rows, codes)
        per_sample, batch = entropy_terms(rows, c.entropy_temperature, c.entropy_group_bits)
        entropy_loss = c.sample_entropy_weight * per_sample - c.batch_entropy_weight * batch
        loss = c.beta * commitment_loss + c.entropy_loss_weight * entropy_loss
        return loss, rows.new_zeros(()), commitment_loss, entropy_loss


def entropy_terms(rows: torch.Tensor, temperature: float, group_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean per-sample entropy, batch entropy) in nats of the code distribution softmax(2 z . c / T) of rows [N, D]."""
    logits = 4 * rows.float() / temperature
    log_one, log_zero = F.logsigmoid(logits), F.logsigmoid(-logits)
    p_one = log_one.exp()
    per_sample = -(p_one * log_one + (1 - p_one) * log_zero).sum(dim=-1).mean()
    batch = rows.new_zeros(())
    for start in range(0, rows.shape[1], group_bits):
        width = min(group_bits, rows.shape[1] - start)
        patterns = (torch.arange(2**width, device=rows.device)[:, None] >> torch.arange(width, device=rows.device)) & 1
        patterns = patterns.float()  # [2^g, g]: the bits of each sub-code
        log_probs = log_one[:, start : start + width] @ patterns.t() + log_zero[:, start : start + width] @ (1 - patterns).t()
        average = log_probs.exp().mean(dim=0)
        batch = batch - (average * torch.log(average + LOG_EPS)).sum()
    return per_sample, batch


def split_ids(ids: torch.Tensor, group_bits: tuple[int, ...], bit_order: str = "lsb_first") -> tuple[torch.Tensor, ...]:
    """LFQ ids -> one sub-id per group of consecutive channels (Open-MAGVIT2's AR model factorises an 18-bit id
    into channels 0-5 and 6-17: `split_ids(ids, (6, 12))` gives (ids & 63, ids >> 6)). Each sub-id reads its
    channels in the same bit order as the id; `join_ids` is the inverse."""
    total = sum(group_bits)
    parts, first_channel = [], 0
    for width in group_bits:
        # The lowest bit of the group: its first channel (lsb_first) or its last (msb_first).
        shift = first_channel if bit_order == "lsb_first" else total - first_channel - width
        parts.append((ids >> shift) & (2**width - 1))
        first_channel += width
    return tuple(parts)


def join_ids(parts: tuple[torch.Tensor, ...], group_bits: tuple[int, ...], bit_order: str = "lsb_first") -> torch.Tensor:
    """The inverse of `split_ids`: sub-ids of consecutive channel groups -> LFQ ids."""
    total, first_channel = sum(group_bits), 0
    ids = torch.zeros_like(parts[0])
    for part, width in zip(parts, group_bits):
        shift = first_channel if bit_order == "lsb_first" else total - first_channel - width
        ids = ids | (part << shift)
        first_channel += width
    return ids
