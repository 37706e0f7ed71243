"""ImagePrior: a plain transformers causal LM over image token ids, plus the token layout that says what its ids mean.

A sequence is a prefix, then the h*w image ids in row-major order. Unconditional: `<boi> ids...`.
Class-conditional: `<class_c> <boi> ids...`, where a null class token stands in for "no label" (trained by
label dropout, used for classifier-free guidance). Image ids 0..K-1 and `<boi>/<eoi>/<pad>` at K.. are the
tokenizer's own; class tokens follow. The saved prior is a standard transformers checkpoint (config.json,
model.safetensors, generation_config.json) that `AutoModelForCausalLM` loads without this package, plus
prior_layout.json and a model card.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
import torch

from .devices import check_device, model_dtype
from .errors import CheckpointError, ConfigError, InvalidIdsError, InvalidRequestError
from .fileio import atomic_write_text, read_json_object
from .hub import HubMixin
from .inputs import as_id_tensor

LAYOUT_NAME = "prior_layout.json"
LAYOUT_FORMAT = "image-tokenizer-prior-layout"
PRIOR_FILES = ["config.json", "model.safetensors", "generation_config.json", LAYOUT_NAME, "README.md"]


def codebook_sha256(tokenizer: Any) -> str:
    """Fingerprint of a tokenizer's vocabulary: a prior is only meaningful with the codebook it was trained on.
    Computed on the CPU wherever the tokenizer runs, so a prior trained beside a GPU tokenizer loads on a CPU."""
    codes = tokenizer.model.quantizer.effective_codebook(device="cpu")
    return hashlib.sha256(codes.detach().contiguous().numpy().tobytes()).hexdigest()


@dataclass
class TokenLayout:
    """Which prior ids are image tokens, special tokens and class tokens; the grid; the tokenizer they belong to."""

    codebook_size: int
    grid_size: tuple[int, int]
    boi_token_id: int
    eoi_token_id: int
    pad_token_id: int
    class_names: list[str] = field(default_factory=list)  # empty: unconditional
    class_label_column: str | None = None  # the dataset column the classes came from, e.g. num_shapes
    tokenizer: str = ""  # bundled name, path or Hub repo of the tokenizer
    tokenizer_codebook_sha256: str = ""

    def __post_init__(self) -> None:
        self.grid_size = tuple(int(v) for v in self.grid_size)
        self.class_names = [str(name) for name in self.class_names]
        if self.codebook_size < 1 or len(self.grid_size) != 2 or min(self.grid_size) < 1:
            raise ConfigError(f"bad token layout: codebook_size {self.codebook_size}, grid {self.grid_size}")

    @classmethod
    def for_tokenizer(
        cls, tokenizer: Any, tokenizer_name: str, class_names: list[str] | None = None, class_label_column: str | None = None
    ) -> TokenLayout:
        return cls(
            codebook_size=tokenizer.vocab_size,
            grid_size=tokenizer.grid_size,
            boi_token_id=tokenizer.boi_token_id,
            eoi_token_id=tokenizer.eoi_token_id,
            pad_token_id=tokenizer.pad_token_id,
            class_names=list(class_names or []),
            class_label_column=class_label_column,
            tokenizer=tokenizer_name,
            tokenizer_codebook_sha256=codebook_sha256(tokenizer),
        )

    @property
    def conditional(self) -> bool:
        return bool(self.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def first_class_token_id(self) -> int:
        return max(self.boi_token_id, self.eoi_token_id, self.pad_token_id) + 1

    @property
    def null_class_token_id(self) -> int:
        if not self.conditional:
            raise ConfigError("an unconditional prior has no null class token")
        return self.first_class_token_id + self.num_classes

    @property
    def vocab_size(self) -> int:
        return self.first_class_token_id + (self.num_classes + 1 if self.conditional else 0)

    @property
    def num_image_tokens(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def prefix_length(self) -> int:
        return 2 if self.conditional else 1

    @property
    def sequence_length(self) -> int:
        return self.prefix_length + self.num_image_tokens

    @property
    def non_image_token_ids(self) -> list[int]:
        """Every id the prior must never emit inside the grid."""
        return list(range(self.codebook_size, self.vocab_size))

    def check_class_labels(self, labels: Any) -> torch.Tensor | None:
        """None or class indices 0..C-1 -> LongTensor; a clear error for anything else."""
        if labels is None:
            return None
        if not self.conditional:
            raise InvalidRequestError("class labels given, but this prior is unconditional (trained without classes)")
        tensor = torch.as_tensor(labels).reshape(-1)
        if tensor.is_floating_point() or tensor.dtype == torch.bool:
            raise InvalidRequestError(f"class labels must be integers, got dtype {tensor.dtype}")
        bad = tensor[(tensor < 0) | (tensor >= self.num_classes)]
        if bad.numel():
            names = ", ".join(f"{i}={name}" for i, name in enumerate(self.class_names))
            raise InvalidRequestError(f"class label {int(bad[0])} out of range; this prior has classes 0..{self.num_classes - 1} ({names})")
        return tensor.long()

    def prefix(self, class_labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The prompt [B, prefix_length]: `<boi>`, or a class token (null class where labels is None) and `<boi>`."""
        boi = torch.full((batch, 1), self.boi_token_id, dtype=torch.long)
        if not self.conditional:
            return boi
        if class_labels is None:
            classes = torch.full((batch, 1), self.null_class_token_id, dtype=torch.long)
        else:
            classes = (class_labels.reshape(-1, 1) + self.first_class_token_id).long()
        return torch.cat([classes, boi], dim=1)

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Refuse a tokenizer whose vocabulary differs from the one this prior was trained on."""
        problems = []
        if tokenizer.vocab_size != self.codebook_size:
            problems.append(f"codebook size {tokenizer.vocab_size} != {self.codebook_size}")
        if tuple(tokenizer.grid_size) != self.grid_size:
            problems.append(f"grid {tuple(tokenizer.grid_size)} != {self.grid_size}")
        if (tokenizer.boi_token_id, tokenizer.eoi_token_id, tokenizer.pad_token_id) != (
            self.boi_token_id, self.eoi_token_id, self.pad_token_id,
        ):
            problems.append("special token ids differ")
        if not problems and self.tokenizer_codebook_sha256 and codebook_sha256(tokenizer) != self.tokenizer_codebook_sha256:
            problems.append("codebook vectors differ (a different tokenizer with the same shape)")
        if problems:
            raise CheckpointError(
                f"this prior's token layout does not match the tokenizer given ({'; '.join(problems)}); "
                f"it was trained on tokenizer {self.tokenizer!r}"
            )

    def save(self, directory: str | Path) -> Path:
        data = {"format": LAYOUT_FORMAT, "version": 1, **asdict(self)}
        data["grid_size"] = list(self.grid_size)
        return atomic_write_text(Path(directory) / LAYOUT_NAME, json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> TokenLayout:
        path = Path(directory) / LAYOUT_NAME
        if not path.is_file():
            raise CheckpointError(f"{directory}: {LAYOUT_NAME} not found; this is not an image-tokenizer prior")
        data = read_json_object(path, "prior")
        if data.pop("format", None) != LAYOUT_FORMAT:
            raise CheckpointError(f"{path}: not a prior token layout (format field missing or wrong)")
        data.pop("version", None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{path}: unknown fields {unknown}")
        try:
            return cls(**data)
        except TypeError as error:
            raise CheckpointError(f"{path}: {error}") from None


def build_causal_lm(layout: TokenLayout, architecture: str = "llama", **sizes: Any) -> Any:
    """A fresh transformers causal LM sized for the layout (Llama by default; GPT-2 as an option)."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    common = {
        "vocab_size": layout.vocab_size,
        "bos_token_id": layout.boi_token_id,
        "eos_token_id": layout.eoi_token_id,
        "pad_token_id": layout.pad_token_id,
    }
    hidden = sizes.get("hidden_size", 256)
    layers = sizes.get("num_hidden_layers", 4)
    heads = sizes.get("num_attention_heads", 4)
    if architecture == "llama":
        config = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=sizes.get("intermediate_size", 4 * hidden),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=sizes.get("num_key_value_heads", heads),
            max_position_embeddings=sizes.get("max_position_embeddings", layout.sequence_length),
            tie_word_embeddings=sizes.get("tie_word_embeddings", True),
            attention_dropout=sizes.get("dropout", 0.0),
            **common,
        )
    elif architecture == "gpt2":
        dropout = sizes.get("dropout", 0.0)
        config = GPT2Config(
            n_embd=hidden, n_layer=layers, n_head=heads, n_positions=layout.sequence_length,
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, **common,
        )
    else:
        raise ConfigError(f"architecture must be 'llama' or 'gpt2', got {architecture!r}")
    return AutoModelForCausalLM.from_config(config)


class SamplingKwargs(TypedDict, total=False):
    """The sampling keywords of generate and complete, written once (SamplingOptions checks them)."""

    temperature: float  # > 0; 1.0 leaves the logits as they are
    top_k: int | None  # keep the k most likely ids (None: all)
    top_p: float  # nucleus sampling, in (0, 1]
    guidance_scale: float  # classifier-free guidance against the null class; 1.0 is off


@dataclass
class SamplingOptions:
    """Checked sampling settings, shared by generate, complete and sliding-window sampling."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    guidance_scale: float = 1.0

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
        return f"temperature {self.temperature:g}, top-k {top_k}, top-p {top_p}{guidance}"

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise InvalidRequestError(f"temperature must be > 0, got {self.temperature}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise InvalidRequestError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise InvalidRequestError(f"top_k must be a positive integer or None, got {self.top_k}")
        if not isinstance(self.guidance_scale, (int, float)) or self.guidance_scale < 0:
            raise InvalidRequestError(f"guidance_scale must be >= 0, got {self.guidance_scale}")

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


class ImagePrior(HubMixin):
    """A causal LM over image ids with its token layout; generates ids or, through the tokenizer, images."""

    hub_files = tuple(PRIOR_FILES)
    hub_commit_message = "Upload image prior"

    def __init__(self, model: Any, layout: TokenLayout, tokenizer: Any = None, card_info: dict | None = None):
        if model.config.vocab_size < layout.vocab_size:
            raise CheckpointError(
                f"the model's vocabulary ({model.config.vocab_size}) is smaller than the layout's ({layout.vocab_size})"
            )
        self.model, self.layout, self.card_info = model.eval(), layout, dict(card_info or {})
        self._tokenizer = None
        if tokenizer is not None:
            self.tokenizer = tokenizer

    # ----- construction, save, load -----
    @classmethod
    def from_layout(cls, layout: TokenLayout, architecture: str = "llama", tokenizer: Any = None, **sizes: Any) -> ImagePrior:
        return cls(build_causal_lm(layout, architecture, **sizes), layout, tokenizer)

    @property
    def tokenizer(self) -> Any:
        """The image tokenizer that decodes this prior's ids (loaded by the layout's name on first use)."""
        if self._tokenizer is None:
            from .tokenizer import ImageTokenizer

            if not self.layout.tokenizer:
                raise CheckpointError("this prior names no tokenizer; pass tokenizer= to decode images")
            self.tokenizer = ImageTokenizer.from_pretrained(self.layout.tokenizer).to(self.device)  # on the prior's device
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: Any) -> None:
        self.layout.check_tokenizer(tokenizer)
        self._tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> ImagePrior:
        device = check_device(device)  # a clear error for a device this machine lacks
        self.model.to(device)
        if self._tokenizer is not None:
            self._tokenizer.to(device)
        return self

    @classmethod
    def _from_pretrained(cls, directory: Path, tokenizer: Any = None, device: str | torch.device | None = None,
                         dtype: torch.dtype | str | None = None) -> ImagePrior:
        """A saved prior folder (layout, transformers checkpoint, card). Weights come from safetensors only.
        They run in float32 whatever dtype they are stored in (a bundled prior may be stored in bfloat16 to halve
        its size), unless dtype names another, or "auto" keeps the stored one."""
        from transformers import AutoModelForCausalLM

        from .model_card import load_card_info

        dtype = "auto" if dtype == "auto" else model_dtype(dtype) or torch.float32

        layout = TokenLayout.load(directory)
        if not (directory / "model.safetensors").is_file():
            raise CheckpointError(f"{directory}: model.safetensors not found (priors load from safetensors only)")
        try:
            model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True, dtype=dtype)
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{directory}: cannot load the causal LM ({error})") from None
        prior = cls(model, layout, tokenizer, load_card_info(directory))
        try:
            _ = prior.sampling_defaults  # checked here, so a bad file fails at load and names itself
        except InvalidRequestError as error:
            raise CheckpointError(f"{directory / 'generation_config.json'}: bad sampling default: {error}") from None
        return prior.to(device) if device is not None else prior

    def _save_pretrained(self, directory: Path, model_name: str) -> list[Path]:
        """Write the transformers checkpoint, the layout and a model card; every file lands atomically."""
        from .model_card import render_prior_card

        self.model.generation_config = self.generation_config()
        with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            for name in ("model.safetensors", "generation_config.json", "config.json"):  # config.json last
                os.replace(Path(tmp) / name, directory / name)
        self.layout.save(directory)
        atomic_write_text(directory / "README.md", render_prior_card(self, model_name, self.card_info))
        return [directory / name for name in PRIOR_FILES]

    def generation_config(self) -> Any:
        """Defaults that keep plain `model.generate` inside the grid (sample h*w new tokens, never a special one),
        with this prior's sampling defaults."""
        from transformers import GenerationConfig

        defaults = self.sampling_defaults
        return GenerationConfig(
            do_sample=True, temperature=defaults.temperature, top_k=defaults.top_k or 0, top_p=defaults.top_p,
            max_new_tokens=self.layout.num_image_tokens,
            suppress_tokens=self.layout.non_image_token_ids, bos_token_id=self.layout.boi_token_id,
            eos_token_id=self.layout.eoi_token_id, pad_token_id=self.layout.pad_token_id,
        )

    # ----- sampling -----
    @property
    def sampling_defaults(self) -> SamplingOptions:
        """What generate and complete use for temperature, top_k and top_p when not given: the model's
        generation_config.json, the file plain `model.generate` reads too. Guidance is off unless asked for."""
        config = self.model.generation_config  # unset fields are None; top_k 0 is transformers' "off"
        return SamplingOptions(temperature=1.0 if config.temperature is None else config.temperature,
                               top_k=config.top_k or None, top_p=1.0 if config.top_p is None else config.top_p)

    def set_sampling_defaults(self, **sampling: Unpack[SamplingKwargs]) -> None:
        """Change the defaults (checked; saved with the prior in generation_config.json)."""
        if "guidance_scale" in sampling:
            raise InvalidRequestError("guidance_scale is not a default: plain model.generate has no null class to guide against")
        options = SamplingOptions.from_kwargs(sampling, self.sampling_defaults)
        config = self.model.generation_config
        config.temperature, config.top_k, config.top_p = options.temperature, options.top_k or 0, options.top_p

    def generate(
        self,
        num_images: int = 1,
        *,
        seed: int | None = None,
        class_labels: Any = None,
        batch_size: int = 64,
        output_type: str = "pil",
        grid_size: tuple[int, int] | None = None,
        **sampling: Unpack[SamplingKwargs],
    ) -> Any:
        """Sample images (or ids [B, h, w] with output_type="ids") token by token with the KV cache.

        class_labels: one index or one per image (None: the null class on a conditional prior). guidance_scale
        > 1 applies classifier-free guidance against the null class. A grid_size larger than the trained grid
        samples with a sliding window (VQGAN paper, sec. 3.2). The same seed and batch_size give the same images.
        Sampling keywords: temperature, top_k, top_p, guidance_scale (SamplingKwargs); those not given come
        from `sampling_defaults`.
        """
        options = SamplingOptions.from_kwargs(sampling, self.sampling_defaults)
        labels = self._labels_for(class_labels, num_images)
        self._check_request(options.guidance_scale, output_type)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidRequestError(f"batch_size must be positive, got {batch_size}")
        grid = tuple(grid_size) if grid_size is not None else self.layout.grid_size
        if len(grid) != 2 or grid[0] < self.layout.grid_size[0] or grid[1] < self.layout.grid_size[1]:
            raise InvalidRequestError(f"grid_size must be at least the trained grid {self.layout.grid_size}, got {grid}")
        grids = []
        with _seeded(seed, self.device):
            for start in range(0, num_images, batch_size):
                chunk = None if labels is None else labels[start : start + batch_size]
                count = min(batch_size, num_images - start)
                if grid == self.layout.grid_size:
                    grids.append(self._sample_rows(chunk, count, torch.zeros(count, 0, dtype=torch.long), options))
                else:
                    grids.append(self._sample_sliding(chunk, count, grid, options))
        return self._output(torch.cat(grids), output_type)

    def complete(
        self,
        prefix: Any,
        rows: int | None = None,
        *,
        seed: int | None = None,
        class_labels: Any = None,
        output_type: str = "pil",
        **sampling: Unpack[SamplingKwargs],
    ) -> Any:
        """Finish partial images from their top rows (VQGAN paper's completions).

        prefix: ids [h, w] / [B, h, w] (the first `rows` rows are kept; default all given rows), a flat id
        sequence [n] / [B, n] of whole rows, or image(s), which are encoded first (rows defaults to half).
        Integer arrays and tensors are ids; uint8 and float ones are images, as everywhere in the library.
        Sampling keywords as for generate.
        """
        options = SamplingOptions.from_kwargs(sampling, self.sampling_defaults)
        ids = self._prefix_ids(prefix, rows)
        labels = self._labels_for(class_labels, ids.shape[0])
        self._check_request(options.guidance_scale, output_type)
        with _seeded(seed, self.device):
            grids = self._sample_rows(labels, ids.shape[0], ids.reshape(ids.shape[0], -1), options)
        return self._output(grids, output_type)

    # ----- internals -----
    def _labels_for(self, class_labels: Any, count: int) -> torch.Tensor | None:
        if not isinstance(count, int) or count < 1:
            raise InvalidRequestError(f"num_images must be a positive integer, got {count}")
        labels = self.layout.check_class_labels(class_labels)
        if labels is None:
            return None
        if labels.numel() == 1:
            return labels.expand(count).clone()
        if labels.numel() != count:
            raise InvalidRequestError(f"got {labels.numel()} class labels for {count} images (give one, or one per image)")
        return labels

    def _check_request(self, guidance_scale: float, output_type: str) -> None:
        """Checks shared by generate and complete, all before any sampling (the tokenizer is loaded and
        matched against the layout here, not after minutes of sampling)."""
        if guidance_scale != 1.0 and not self.layout.conditional:
            raise InvalidRequestError("classifier-free guidance needs a class-conditional prior; this one is unconditional")
        if output_type not in ("pil", "np", "pt", "ids"):
            raise InvalidRequestError(f"output_type must be 'pil', 'np', 'pt' or 'ids', got {output_type!r}")
        if output_type != "ids":
            _ = self.tokenizer

    def _prefix_ids(self, prefix: Any, rows: int | None) -> torch.Tensor:
        h, w = self.layout.grid_size
        if _holds_ids(prefix):
            ids = as_id_tensor(prefix)
            if ids.ndim == 1:
                ids = ids.unsqueeze(0)
            if ids.ndim == 2 and ids.shape[1] > h * w:
                raise InvalidIdsError(f"prefix of {ids.shape[1]} ids is longer than the {h}x{w} grid ({h * w} ids)")
            if ids.ndim == 2:
                if ids.shape[1] % w:
                    raise InvalidIdsError(f"a flat prefix must hold whole rows of {w} ids, got {ids.shape[1]}")
                ids = ids.reshape(ids.shape[0], -1, w)
            if ids.ndim != 3 or ids.shape[2] != w:
                raise InvalidIdsError(f"prefix ids must be [rows, {w}] or [B, rows, {w}], got shape {tuple(ids.shape)}")
            if ids.shape[1] > h:
                raise InvalidIdsError(f"prefix has {ids.shape[1]} rows, more than the grid's {h}")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.layout.codebook_size):
                raise InvalidIdsError(f"prefix ids must lie in 0..{self.layout.codebook_size - 1}")
            keep = ids.shape[1] if rows is None else rows
        else:
            ids = self.tokenizer.encode(prefix if isinstance(prefix, list) else [prefix])
            keep = h // 2 if rows is None else rows
        if not isinstance(keep, int) or not 0 <= keep <= ids.shape[1]:
            raise InvalidIdsError(f"rows must be an integer in 0..{ids.shape[1]}, got {keep}")
        if keep == h:
            raise InvalidIdsError(f"a prefix of all {h} rows leaves nothing to complete")
        return ids[:, :keep]

    @torch.inference_mode()
    def _sample_rows(self, labels: torch.Tensor | None, count: int, known: torch.Tensor, options: SamplingOptions) -> torch.Tensor:
        """transformers generate (KV cache on) from prefix + known ids to a full grid [B, h, w]."""
        h, w = self.layout.grid_size
        device = self.device
        prompt = torch.cat([self.layout.prefix(labels, count), known.cpu()], dim=1).to(device)
        kwargs: dict[str, Any] = {}
        if options.guidance_scale != 1.0:
            null = torch.cat([self.layout.prefix(None, count), known.cpu()], dim=1).to(device)
            kwargs.update(guidance_scale=options.guidance_scale, negative_prompt_ids=null,
                          negative_prompt_attention_mask=torch.ones_like(null))
        new = h * w - known.shape[1]
        output = self.model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=True,
            temperature=options.temperature,
            top_k=options.top_k or 0,
            top_p=options.top_p,
            max_new_tokens=new,
            min_new_tokens=new,
            suppress_tokens=self.layout.non_image_token_ids,
            use_cache=True,
            pad_token_id=self.layout.pad_token_id,
            eos_token_id=self.layout.eoi_token_id,
            **kwargs,
        )
        ids = output[:, self.layout.prefix_length :].cpu()
        if ids.shape[1] != h * w or int(ids.max()) >= self.layout.codebook_size:
            raise RuntimeError(f"generation returned {ids.shape[1]} ids or a non-image id; expected {h * w} image ids")
        return ids.reshape(count, h, w)

    @torch.inference_mode()
    def _next_token_scores(self, sequences: torch.Tensor, null: torch.Tensor | None, guidance: float) -> torch.Tensor:
        """Log-probabilities of the next token; with guidance, uncond + g * (cond - uncond), as transformers' CFG."""
        if null is None:
            return torch.log_softmax(self.model(sequences).logits[:, -1].float(), dim=-1)
        logits = self.model(torch.cat([sequences, null])).logits[:, -1].float()
        cond, uncond = torch.log_softmax(logits, dim=-1).chunk(2)
        return guidance * (cond - uncond) + uncond

    @torch.inference_mode()
    def _sample_sliding(self, labels: torch.Tensor | None, count: int, grid: tuple[int, int], options: SamplingOptions) -> torch.Tensor:
        """A grid larger than the trained one: each token is sampled from the trained-size window around it
        (clamped to the canvas), given the window's tokens above and to the left (VQGAN paper, sec. 3.2)."""
        h, w = self.layout.grid_size
        height, width = grid
        device = self.device
        warpers = options.warpers(self.layout)
        prefix = self.layout.prefix(labels, count).to(device)
        null_prefix = self.layout.prefix(None, count).to(device) if options.guidance_scale != 1.0 else None
        canvas = torch.zeros(count, height, width, dtype=torch.long, device=device)
        for i in range(height):
            top = min(max(i - h // 2, 0), height - h)
            for j in range(width):
                left = min(max(j - w // 2, 0), width - w)
                window = canvas[:, top : top + h, left : left + w].reshape(count, -1)
                context = window[:, : (i - top) * w + (j - left)]
                sequences = torch.cat([prefix, context], dim=1)
                null = None if null_prefix is None else torch.cat([null_prefix, context], dim=1)
                scores = warpers(sequences, self._next_token_scores(sequences, null, options.guidance_scale))
                canvas[:, i, j] = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
        return canvas.cpu()

    def _output(self, grids: torch.Tensor, output_type: str) -> Any:
        if output_type == "ids":
            return grids
        return self.tokenizer.decode(grids, output_type=output_type)

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        kind = f"{self.layout.num_classes} classes + null" if self.layout.conditional else "unconditional"
        return (
            f"ImagePrior({type(self.model).__name__}, {params / 1e6:.2f} M parameters, grid {self.layout.grid_size}, "
            f"{kind}, tokenizer {self.layout.tokenizer!r})"
        )


class _seeded:
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

    def __exit__(self, *exc: Any) -> None:
        if self._fork is not None:
            self._fork.__exit__(*exc)


def _holds_ids(prefix: Any) -> bool:
    """Ids or images? Integer arrays and tensors (other than uint8) and lists of ints are ids; uint8 and float
    arrays, PIL images, paths and lists of those are images, as everywhere else in the library."""
    if isinstance(prefix, (torch.Tensor, np.ndarray)):
        dtype = prefix.dtype
        if isinstance(prefix, torch.Tensor):
            return not (prefix.is_floating_point() or dtype == torch.uint8)
        return np.issubdtype(dtype, np.integer) and dtype != np.uint8 or dtype == np.bool_
    if isinstance(prefix, list) and prefix:
        first = prefix[0]
        return isinstance(first, (int, np.integer, list)) and not isinstance(first, bool)
    return False
