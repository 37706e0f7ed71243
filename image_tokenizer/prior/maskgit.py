"""MaskGIT (Chang et al. 2022) on a plain transformers masked LM: training masks and the parallel sampler.

Training masks a schedule-drawn fraction of each row's ids (at least one) with `<mask>` and predicts only those.
Sampling starts fully masked; each of T steps predicts every masked id at once, samples one per position
(temperature, top-k, top-p as for the causal prior), keeps the most confident and masks the rest again, so that
`masked_counts` ids stay masked after step t; the last step fills all. The confidence is the sampled id's
log-probability plus Gumbel noise at `confidence_temperature * (1 - (t + 1) / T)`.

Schedules (mask ratio of progress p in [0, 1]): "cosine", cos(pi/2 * p), the MaskGIT paper's; "arccos",
arccos(p) / (pi/2), bytedance/1d-tokenizer's (their `generate` keeps floor(N * arccos((t+1)/T) / (pi/2)) masked,
at least 1 and fewer than before, and their training draws the ratio as arccos(u) / (pi/2), u ~ U(0, 1)).
Theirs also anneals the token temperature with the confidence noise and mixes guidance on raw logits; ours
samples ids at the caller's temperature, as the MaskGIT paper does, and guides log-probabilities as
uncond + g * (cond - uncond) (their `cond + s * (cond - uncond)` is g = 1 + s), g ramped by "linear" as
1 + (g - 1) * t / T, their `guidance_decay="linear"`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .layout import TokenLayout
from .sampling import SamplingOptions

DEFAULT_STEPS = 8  # the MaskGIT paper's and TiTok L-32's
DEFAULT_CONFIDENCE_TEMPERATURE = 4.5  # the MaskGIT paper's choice_temperature


def mask_ratio(progress: float, schedule: str = "cosine") -> float:
    """The share of ids masked at progress p in [0, 1]: 1 at p = 0, 0 at p = 1."""
    p = min(max(float(progress), 0.0), 1.0)
    return math.cos(math.pi / 2 * p) if schedule == "cosine" else math.acos(p) / (math.pi / 2)


def masked_counts(num_ids: int, steps: int, schedule: str = "cosine") -> list[int]:
    """How many of num_ids stay masked after each of `steps` steps: floor(N * ratio((t + 1) / T)), at least 1 and
    fewer than before the step (so every step fills one or more), 0 after the last."""
    counts, masked = [], num_ids
    for t in range(steps - 1):
        masked = max(1, min(masked - 1, math.floor(num_ids * mask_ratio((t + 1) / steps, schedule))))
        counts.append(masked)
    return counts + [0]


def training_mask(num_ids: int, rng: np.random.Generator, schedule: str = "cosine") -> np.ndarray:
    """One row's training mask [num_ids] (True: masked): round(N * ratio(u)) ids, u ~ U(0, 1), at least one."""
    count = min(num_ids, max(1, round(num_ids * mask_ratio(rng.random(), schedule))))
    mask = np.zeros(num_ids, dtype=bool)
    mask[rng.permutation(num_ids)[:count]] = True
    return mask


def masked_batch(layout: TokenLayout, prefix: torch.Tensor, ids: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """The masked LM's batch: prefix + ids with masked ones replaced by `<mask>`; labels only at masked ids."""
    inputs = torch.cat([prefix, ids.masked_fill(masks, layout.mask_token_id)], dim=1)
    labels = torch.cat([torch.full_like(prefix, -100), ids.masked_fill(~masks, -100)], dim=1)
    return {"input_ids": inputs, "labels": labels}


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def gumbel_like(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Standard Gumbel noise of x's shape: -log(-log(u)), u ~ U(0, 1)."""
    u = torch.rand(x.shape, dtype=dtype or x.dtype, device=x.device)
    exponential = (-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20)  # -log(u) > 0
    return -torch.log(exponential)


def guidance_at(options: SamplingOptions, step: int, steps: int) -> float:
    """The guidance scale of a step: constant, or ramped linearly from 1 (off) at the first step."""
    if options.guidance_schedule == "linear":
        return 1.0 + (options.guidance_scale - 1.0) * step / steps
    return options.guidance_scale


@torch.inference_mode()
def sample_maskgit(model: Any, layout: TokenLayout, labels: torch.Tensor | None, count: int,
                   options: SamplingOptions) -> torch.Tensor:
    """Ids [B, *layout.image_shape] in options.steps forward passes (guided: the null-class rows in the same pass)."""
    device, warpers, steps = _device(model), options.warpers(layout), options.steps or DEFAULT_STEPS
    tau = DEFAULT_CONFIDENCE_TEMPERATURE if options.confidence_temperature is None else options.confidence_temperature
    counts = masked_counts(layout.num_image_tokens, steps, options.mask_schedule or "cosine")
    guided = options.guidance_scale != 1.0
    prefix = layout.prefix(labels, count)
    prefix = (torch.cat([prefix, layout.prefix(None, count)]) if guided else prefix).to(device)
    ids = torch.full((count, layout.num_image_tokens), layout.mask_token_id, dtype=torch.long, device=device)
    for t in range(steps):
        masked = ids == layout.mask_token_id
        logits = model(input_ids=torch.cat([prefix, torch.cat([ids, ids]) if guided else ids], dim=1)).logits
        logits = torch.stack(logits[:, layout.prefix_length :].chunk(2 if guided else 1))  # [cond (, null), B, N, V]
        scores = torch.log_softmax(logits[:, masked].float(), dim=-1)  # the masked positions only: [1 or 2, M, V]
        scores = scores[1] + guidance_at(options, t, steps) * (scores[0] - scores[1]) if guided else scores[0]
        logp = torch.log_softmax(warpers(torch.zeros(len(scores), 0, dtype=torch.long, device=device), scores), dim=-1)
        sampled = (logp + gumbel_like(logp)).argmax(dim=-1, keepdim=True)  # Gumbel-max: a draw from softmax(logp)
        noise = tau * (1 - (t + 1) / steps) * gumbel_like(sampled, dtype=logp.dtype)
        confidence = torch.full(ids.shape, math.inf, device=device)  # kept ids are never masked again
        confidence[masked] = (logp.gather(1, sampled) + noise).squeeze(1)
        ids = ids.masked_scatter(masked, sampled.squeeze(1))
        ids = ids.scatter(1, confidence.argsort(dim=1)[:, : counts[t]], layout.mask_token_id)
    return ids.cpu().reshape(count, *layout.image_shape)
