"""Sampling from a prior: the checked options, and the two samplers as plain functions of model, layout and options.

`sample_rows` continues prompts to a full grid with transformers' generate (KV cache on); `sample_sliding`
samples a grid larger than the trained one, token by token, from the trained-size window around each token
(VQGAN paper, sec. 3.2). Both are nanoGPT's `generate` loop at heart: logits, warp, sample, append.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypedDict

import torch

from ..errors import InvalidRequestError
from .layout import TokenLayout

MASK_SCHEDULES = ("cosine", "arccos")  # maskgit: how many ids stay masked after each step (prior/maskgit.py)
GUIDANCE_SCHEDULES = ("constant", "linear")  # maskgit: guidance held, or ramped up from 1 over the steps


class SamplingKwargs(TypedDict, total=False):
    """The sampling keywords of generate and complete, written once (SamplingOptions checks them)."""

    temperature: float  # > 0; 1.0 leaves the logits as they are
    top_k: int | None  # keep the k most likely ids (None: all)
    top_p: float  # nucleus sampling, in (0, 1]
    guidance_scale: float  # classifier-free guidance against the null class; 1.0 is off
    steps: int | None  # maskgit only: parallel sampling steps, 1..N ids (None: 8)
    confidence_temperature: float | None  # maskgit only: Gumbel noise on the confidence, annealed to 0 (None: 4.5)
    mask_schedule: str | None  # maskgit only: "cosine" (None) or "arccos": how many ids stay masked per step
    guidance_schedule: str | None  # maskgit only: "constant" (None) or "linear": guidance ramped up from 1


@dataclass
class SamplingOptions:
    """Checked sampling settings, shared by generate, complete and sliding-window sampling."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    guidance_scale: float = 1.0
    steps: int | None = None  # the maskgit options (prior/maskgit.py); None: that sampler's default
    confidence_temperature: float | None = None
    mask_schedule: str | None = None
    guidance_schedule: str | None = None

    @classmethod
    def from_kwargs(cls, kwargs: SamplingKwargs, defaults: SamplingOptions | None = None) -> SamplingOptions:
        """The caller's keywords over `defaults` (a prior's own, from its generation_config.json)."""
        unknown = sorted(set(kwargs) - set(SamplingKwargs.__annotations__))
        if unknown:
            raise InvalidRequestError(f"unknown keyword {unknown[0]!r}; the sampling keywords are {', '.join(SamplingKwargs.__annotations__)}")
        return cls(**{**(asdict(defaults) if defaults else {}), **kwargs})

    def describe(self) -> str:
        """'temperature 0.8, top-k off, top-p off' (guidance named only when on), for cards and logs."""
        top_k = "off" if self.top_k is None else self.top_k
        top_p = "off" if self.top_p == 1.0 else f"{self.top_p:g}"
        guidance = f", guidance {self.guidance_scale:g}" if self.guidance_scale != 1.0 else ""
        maskgit = "".join(f", {name.replace('_', ' ')} {value}" for name, value in self.maskgit_options().items())
        return f"temperature {self.temperature:g}, top-k {top_k}, top-p {top_p}{guidance}{maskgit}"

    def maskgit_options(self) -> dict[str, Any]:
        """The maskgit-only options that were set (a causal prior refuses them)."""
        names = ("steps", "confidence_temperature", "mask_schedule", "guidance_schedule")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise InvalidRequestError(f"temperature must be > 0, got {self.temperature}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise InvalidRequestError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise InvalidRequestError(f"top_k must be a positive integer or None, got {self.top_k}")
        if not isinstance(self.guidance_scale, (int, float)) or self.guidance_scale < 0:
            raise InvalidRequestError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.steps is not None and (not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1):
            raise InvalidRequestError(f"steps must be a positive integer, got {self.steps!r}")
        if self.confidence_temperature is not None and not (
                isinstance(self.confidence_temperature, (int, float)) and self.confidence_temperature >= 0):
            raise InvalidRequestError(f"confidence_temperature must be >= 0, got {self.confidence_temperature!r}")
        for name, allowed in (("mask_schedule", MASK_SCHEDULES), ("guidance_schedule", GUIDANCE_SCHEDULES)):
            if getattr(self, name) not in (None, *allowed):
                raise InvalidRequestError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def warpers(self, layout: TokenLayout) -> Any:
        """transformers' own processors: suppress non-image ids, then temperature, top-k, top-p."""
        from transformers import (
            LogitsProcessorList,
            SuppressTokensLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        processors = LogitsProcessorList([SuppressTokensLogitsProcessor(layout.non_image_token_ids)])
        if self.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k is not None:
            processors.append(TopKLogitsWarper(self.top_k))
        if self.top_p < 1.0:
            processors.append(TopPLogitsWarper(self.top_p))
        return processors


class seeded:
    """Seed torch's generators for a block without disturbing the caller's random state."""

    def __init__(self, seed: int | None, device: torch.device):
        self.seed, self.device = seed, device
        self._fork = None

    def __enter__(self) -> None:
        if self.seed is None:
            return
        devices = [self.device] if self.device.type == "cuda" else []
        self._fork = torch.random.fork_rng(devices=devices)
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        if self._fork is not None:
            self._fork.__exit__(*exc)


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def sample_rows(model: Any, layout: TokenLayout, labels: torch.Tensor | None, count: int, known: torch.Tensor,
                options: SamplingOptions) -> torch.Tensor:
    """transformers generate (KV cache on) from the prefix + known ids [B, n] to a full image's ids, one per step:
    [B, h, w] (a residual layout: [B, h, w, depth]; a multiscale one: [B, N])."""
    total = layout.num_image_tokens
    device = _device(model)
    prompt = torch.cat([layout.prefix(labels, count), known.cpu()], dim=1).to(device)
    kwargs: dict[str, Any] = {}
    if options.guidance_scale != 1.0:
        null = torch.cat([layout.prefix(None, count), known.cpu()], dim=1).to(device)
        kwargs.update(guidance_scale=options.guidance_scale, negative_prompt_ids=null,
                      negative_prompt_attention_mask=torch.ones_like(null))
    new = total - known.shape[1]
    output = model.generate(
        input_ids=prompt,
        attention_mask=torch.ones_like(prompt),
        do_sample=True,
        temperature=options.temperature,
        top_k=options.top_k or 0,
        top_p=options.top_p,
        max_new_tokens=new,
        min_new_tokens=new,
        suppress_tokens=layout.non_image_token_ids,
        use_cache=True,
        pad_token_id=layout.pad_token_id,
        eos_token_id=layout.eoi_token_id,
        **kwargs,
    )
    ids = output[:, layout.prefix_length :].cpu()
    if ids.shape[1] != total or int(ids.max()) >= layout.codebook_size:
        raise RuntimeError(f"generation returned {ids.shape[1]} ids or a non-image id; expected {total} image ids")
    return ids.reshape(count, *layout.image_shape)


@torch.inference_mode()
def next_token_scores(model: Any, sequences: torch.Tensor, null: torch.Tensor | None, guidance: float) -> torch.Tensor:
    """Log-probabilities of the next token; with guidance, uncond + g * (cond - uncond), as transformers' CFG."""
    if null is None:
        return torch.log_softmax(model(sequences).logits[:, -1].float(), dim=-1)
    logits = model(torch.cat([sequences, null])).logits[:, -1].float()
    cond, uncond = torch.log_softmax(logits, dim=-1).chunk(2)
    return guidance * (cond - uncond) + uncond


@torch.inference_mode()
def sample_sliding(model: Any, layout: TokenLayout, labels: torch.Tensor | None, count: int, grid: tuple[int, int],
                   options: SamplingOptions) -> torch.Tensor:
    """A grid larger than the trained one: each token is sampled from the trained-size window around it
    (clamped to the canvas), given the window's tokens above and to the left (VQGAN paper, sec. 3.2)."""
    h, w = layout.grid_size
    height, width = grid
    device = _device(model)
    warpers = options.warpers(layout)
    prefix = layout.prefix(labels, count).to(device)
    null_prefix = layout.prefix(None, count).to(device) if options.guidance_scale != 1.0 else None
    canvas = torch.zeros(count, height, width, dtype=torch.long, device=device)
    for i in range(height):
        top = min(max(i - h // 2, 0), height - h)
        for j in range(width):
            left = min(max(j - w // 2, 0), width - w)
            window = canvas[:, top : top + h, left : left + w].reshape(count, -1)
            context = window[:, : (i - top) * w + (j - left)]
            sequences = torch.cat([prefix, context], dim=1)
            null = None if null_prefix is None else torch.cat([null_prefix, context], dim=1)
            scores = warpers(sequences, next_token_scores(model, sequences, null, options.guidance_scale))
            canvas[:, i, j] = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
    return canvas.cpu()
