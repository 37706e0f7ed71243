"""Next-scale prediction (VAR, Tian et al. 2024) on a plain transformers causal LM: one forward pass per scale.

The sequence is the prefix less its <boi> (a class token, or nothing), then one block per scale: the first
scale's block is <boi> repeated p_1 * p_1 times, scale k's block is the ids of scale k-1 upsampled (nearest) to
p_k x p_k. The output at each position of block k predicts scale k's id there. A block-causal 4D attention mask
lets a block see every earlier block and itself, so a whole scale comes from one pass; transformers takes such a
mask as given (masking_utils returns a 4D mask as-is), in training and with a KV cache. Positions are the flat
indices 0..L-1, as for a raster prior: every query sees position 0, so RoPE's relative offsets also give each
position's place in its scale. Discrete inputs (ids, not VAR's summed features) keep the model a plain
LlamaForCausalLM over the same vocabulary, loadable with AutoModelForCausalLM.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .layout import TokenLayout
from .sampling import SamplingOptions


def block_sizes(layout: TokenLayout) -> list[int]:
    """The mask's blocks along the sequence: each context token alone (the class token), then one per scale."""
    return [1] * (layout.prefix_length - 1) + [side * side for side in layout.scales]


def block_causal_mask(sizes: list[int], query_start: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The additive 4D mask [1, 1, q, L] (0: may attend, the dtype's minimum: may not) of a sequence cut into blocks
    of `sizes` (L their sum), for the queries from position query_start on: a block sees itself and all before."""
    block = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    allowed = block[None, :] <= block[query_start:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def scale_inputs(layout: TokenLayout, ids: torch.Tensor) -> torch.Tensor:
    """Multiscale ids [B, N] -> the blocks' inputs [B, N]: <boi> for the first scale, then each scale's ids
    upsampled (nearest) to the next scale's side. The last scale's ids are never an input."""
    grids = layout.id_layout.split_scales(ids)
    first = torch.full((ids.shape[0], grids[0][0].numel()), layout.boi_token_id, dtype=torch.long, device=ids.device)
    blocks = [first] + [upsample(grid, side) for grid, side in zip(grids[:-1], layout.scales[1:])]
    return torch.cat(blocks, dim=1)


def upsample(grid: torch.Tensor, side: int) -> torch.Tensor:
    """Ids [B, p, p] -> [B, side * side], each id repeated over the positions it covers (nearest)."""
    scaled = F.interpolate(grid[:, None].float(), size=(side, side), mode="nearest")
    return scaled.reshape(grid.shape[0], -1).long()


def teacher_forcing(layout: TokenLayout, prefix: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """A training batch: input_ids (the context, then scale_inputs), the block-causal mask, and the targets
    aligned with the positions that predict them (`shift_labels`, which transformers' causal-LM loss takes
    unshifted; `labels` holds the same, for the Trainer's token count)."""
    context = prefix[:, :-1]
    input_ids = torch.cat([context, scale_inputs(layout, ids)], dim=1)
    targets = torch.cat([torch.full_like(context, -100), ids], dim=1)
    mask = block_causal_mask(block_sizes(layout)).expand(ids.shape[0], -1, -1, -1)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": targets, "shift_labels": targets}


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def sample_scales(model: Any, layout: TokenLayout, labels: torch.Tensor | None, count: int,
                  options: SamplingOptions) -> torch.Tensor:
    """Ids [B, N], one forward pass per scale with transformers' KV cache (each pass adds a whole block); with
    guidance, the null-class rows run in the same pass and the logits mix as uncond + g * (cond - uncond)."""
    from transformers import DynamicCache

    device, warpers, sizes = _device(model), options.warpers(layout), block_sizes(layout)
    guided = options.guidance_scale != 1.0
    prefix = layout.prefix(labels, count)
    if guided:
        prefix = torch.cat([prefix, layout.prefix(None, count)])
    rows = prefix.shape[0]
    block = torch.cat([prefix[:, :-1], prefix[:, -1:].expand(-1, layout.scales[0] ** 2)], dim=1)
    cache, start, scales = DynamicCache(config=model.config), 0, []
    dtype = next(model.parameters()).dtype
    for k, side in enumerate(layout.scales):
        end = start + block.shape[1]
        mask = block_causal_mask(sizes, start, dtype)[:, :, : end - start, :end].expand(rows, -1, -1, -1).to(device)
        positions = torch.arange(start, end, device=device)[None].expand(rows, -1)
        out = model(input_ids=block.to(device), attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        logits = out.logits[:, -side * side :].float()
        scores = torch.log_softmax(logits, dim=-1)
        if guided:
            cond, uncond = scores.chunk(2)
            scores = options.guidance_scale * (cond - uncond) + uncond
        flat = scores.reshape(-1, scores.shape[-1])
        flat = warpers(torch.zeros(flat.shape[0], 0, dtype=torch.long, device=device), flat)
        ids = torch.multinomial(torch.softmax(flat, dim=-1), 1).reshape(count, side, side)
        scales.append(ids.cpu())
        if k + 1 < len(layout.scales):
            block = upsample(ids, layout.scales[k + 1])
            block = torch.cat([block, block]) if guided else block
        start = end  # the cache now holds this block's keys and values
    return layout.id_layout.join_scales(scales)
