"""ImagePrior: a plain transformers causal LM over image token ids, with the token layout that says what they mean.

The saved prior is a standard transformers checkpoint (config.json, model.safetensors, generation_config.json)
that `AutoModelForCausalLM` loads without this package, plus prior_layout.json and a model card. A maskgit prior
(layout.prediction "maskgit") is a BertForMaskedLM instead, which `AutoModelForMaskedLM` loads. `generate` and
`complete` check the request, then hand the model, layout and options to the samplers (sampling.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import torch

from ..checkpoint import CODEBOOK_NAME, VOCAB_NAME
from ..devices import check_device, model_dtype
from ..errors import CheckpointError, InvalidIdsError, InvalidRequestError
from ..fileio import atomic_write_text
from ..hub import HubMixin
from ..inputs import as_id_tensor, as_ids, holds_ids
from .config import PriorConfig, build_prior_model
from .layout import LAYOUT_NAME, TokenLayout
from .maskgit import sample_maskgit
from .next_scale import sample_scales
from .sampling import SamplingKwargs, SamplingOptions, sample_rows, sample_sliding, seeded

if TYPE_CHECKING:
    from ..tokenizer import ImageTokenizer

PRIOR_FILES = ["config.json", "model.safetensors", "generation_config.json", LAYOUT_NAME, "README.md"]


def check_tokenizer_source(name: str, prior_folder: Path | None) -> None:
    """A prior downloaded from the Hub may name its tokenizer by bundled name or Hub repo id, never by a path on this
    machine: its publisher cannot know the user's files, so such a name could only read one they did not choose."""
    from ..hub import bundled_models
    from ..safe_paths import link_root

    if prior_folder is None or link_root(prior_folder.resolve()) == prior_folder.resolve() or name in bundled_models():
        return  # a prior in one's own folder may name one's own tokenizer folder
    if os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name or Path(name).expanduser().exists():
        raise CheckpointError(
            f"{prior_folder / LAYOUT_NAME}: the prior, from the Hub, names the local path {name[:200]!r} as its "
            "tokenizer; a downloaded prior may name only a bundled tokenizer or a Hub repo id. Pass tokenizer= "
            "(--tokenizer) to choose it yourself"
        )


class ImagePrior(HubMixin):
    """A causal LM over image ids with its token layout; generates ids or, through the tokenizer, images."""

    hub_files = tuple(PRIOR_FILES)
    hub_commit_message = "Upload image prior"
    other_kind_files = (VOCAB_NAME, CODEBOOK_NAME)  # a saved tokenizer's

    def __init__(self, model: Any, layout: TokenLayout, tokenizer: ImageTokenizer | None = None,
                 card_info: dict | None = None):
        if model.config.vocab_size < layout.vocab_size:
            raise CheckpointError(
                f"the model's vocabulary ({model.config.vocab_size}) is smaller than the layout's ({layout.vocab_size})"
            )
        self.model, self.layout, self.card_info = model.eval(), layout, dict(card_info or {})
        if getattr(model, "generation_config", None) is None:  # a masked LM has none: it holds the sampling defaults
            from transformers import GenerationConfig

            model.generation_config = GenerationConfig()
        self._tokenizer = None
        self.loaded_from: Path | None = None  # the folder _from_pretrained read, for where its tokenizer may come from
        if tokenizer is not None:
            self.tokenizer = tokenizer

    # ----- construction, save, load -----
    @classmethod
    def from_layout(cls, layout: TokenLayout, config: PriorConfig | None = None, tokenizer: ImageTokenizer | None = None,
                    **sizes: Any) -> ImagePrior:
        """A fresh, untrained prior for the layout: a causal LM (a masked LM for a maskgit layout) of `config`
        (PriorConfig), whose fields may also be given as keywords (from_layout(layout, hidden_size=512))."""
        config = config or PriorConfig(architecture="bert" if layout.maskgit else "llama")
        return cls(build_prior_model(layout, PriorConfig.build(config, sizes)), layout, tokenizer)

    @property
    def tokenizer(self) -> ImageTokenizer:
        """The image tokenizer that decodes this prior's ids (see load_tokenizer)."""
        return self.load_tokenizer()

    def load_tokenizer(self) -> ImageTokenizer:
        """The tokenizer given, or the one the layout names, loaded once onto the prior's device and matched
        against the layout (a different codebook is refused)."""
        if self._tokenizer is None:
            from ..tokenizer import ImageTokenizer

            if not self.layout.tokenizer:
                raise CheckpointError("this prior names no tokenizer; pass tokenizer= to decode images")
            check_tokenizer_source(self.layout.tokenizer, self.loaded_from)
            self.tokenizer = ImageTokenizer.from_pretrained(self.layout.tokenizer).to(self.device)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: ImageTokenizer) -> None:
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
    def _from_pretrained(cls, directory: Path, tokenizer: ImageTokenizer | None = None, device: str | torch.device | None = None,
                         dtype: torch.dtype | str | None = None) -> ImagePrior:
        """A saved prior folder (layout, transformers checkpoint, card). Weights come from safetensors only.
        They run in float32 whatever dtype they are stored in (a bundled prior may be stored in bfloat16 to halve
        its size), unless dtype names another, or "auto" keeps the stored one."""
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, GenerationConfig

        from ..model_card import load_card_info

        dtype = "auto" if dtype == "auto" else model_dtype(dtype) or torch.float32

        layout = TokenLayout.load(directory)
        if not (directory / "model.safetensors").is_file():
            raise CheckpointError(f"{directory}: model.safetensors not found (priors load from safetensors only)")
        auto, kind = (AutoModelForMaskedLM, "masked") if layout.maskgit else (AutoModelForCausalLM, "causal")
        try:
            model = auto.from_pretrained(directory, use_safetensors=True, dtype=dtype)
            if layout.maskgit:  # a masked LM reads no generation_config.json itself
                model.generation_config = GenerationConfig.from_pretrained(directory)
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{directory}: cannot load the {kind} LM ({error})") from None
        prior = cls(model, layout, tokenizer, load_card_info(directory))
        prior.loaded_from = directory
        try:
            _ = prior.sampling_defaults  # checked here, so a bad file fails at load and names itself
        except InvalidRequestError as error:
            raise CheckpointError(f"{directory / 'generation_config.json'}: bad sampling default: {error}") from None
        return prior.to(device) if device is not None else prior

    def _save_pretrained(self, directory: Path, model_name: str) -> list[Path]:
        """Write the transformers checkpoint, the layout and a model card; every file lands atomically."""
        from ..hub import bundled_models
        from ..model_card import render_prior_card

        self.model.generation_config = self.generation_config()
        with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            if not (Path(tmp) / "generation_config.json").is_file():  # a masked LM does not write it
                self.model.generation_config.save_pretrained(tmp)
            for name in ("model.safetensors", "generation_config.json", "config.json"):  # config.json last
                os.replace(Path(tmp) / name, directory / name)
        self.layout.save(directory)
        # The card's snippet loads a bundled name or a Hub repo id as named, any other prior from this folder.
        load_name = model_name if "/" in model_name or model_name in bundled_models() else str(directory)
        atomic_write_text(directory / "README.md", render_prior_card(self, model_name, self.card_info, load_name))
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
        if SamplingOptions.from_kwargs(sampling).maskgit_options():
            raise InvalidRequestError("only temperature, top_k and top_p are sampling defaults; pass the maskgit "
                                      "options (steps, ...) to generate")
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
        """Sample images (or ids [B, h, w] with output_type="ids"; other layouts: the tokenizer's shape) with the
        KV cache: token by token, or one forward pass per scale for a next-scale prior (`layout.prediction`); a
        maskgit prior fills all ids in `steps` parallel passes (prior/maskgit.py).

        class_labels: one index or one per image (None: the null class on a conditional prior). guidance_scale
        > 1 applies classifier-free guidance against the null class. A grid_size larger than the trained grid
        samples with a sliding window (VQGAN paper, sec. 3.2). The same seed and batch_size give the same images.
        Sampling keywords: temperature, top_k, top_p, guidance_scale (SamplingKwargs), and for a maskgit prior
        steps, confidence_temperature, mask_schedule, guidance_schedule; those not given come from
        `sampling_defaults`.
        """
        options = SamplingOptions.from_kwargs(sampling, self.sampling_defaults)
        labels = self._labels_for(class_labels, num_images)
        self._check_request(options.guidance_scale, output_type)
        self._check_maskgit_options(options, grid_size)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidRequestError(f"batch_size must be positive, got {batch_size}")
        grid = tuple(grid_size) if grid_size is not None else self.layout.grid_size
        if len(grid) != 2 or grid[0] < self.layout.grid_size[0] or grid[1] < self.layout.grid_size[1]:
            raise InvalidRequestError(f"grid_size must be at least the trained grid {self.layout.grid_size}, got {grid}")
        if grid != self.layout.grid_size and self.layout.kind != "grid":
            raise InvalidRequestError(f"grid_size (sliding-window sampling) applies to grid priors; this one's tokenizer "
                                      f"is {self.layout.kind!r}")
        grids = []
        with seeded(seed, self.device):
            for start in range(0, num_images, batch_size):
                chunk = None if labels is None else labels[start : start + batch_size]
                count = min(batch_size, num_images - start)
                if self.layout.maskgit:
                    grids.append(sample_maskgit(self.model, self.layout, chunk, count, options))
                elif self.layout.next_scale:
                    grids.append(sample_scales(self.model, self.layout, chunk, count, options))
                elif grid == self.layout.grid_size:
                    grids.append(sample_rows(self.model, self.layout, chunk, count, torch.zeros(count, 0, dtype=torch.long), options))
                else:
                    grids.append(sample_sliding(self.model, self.layout, chunk, count, grid, options))
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
        if self.layout.maskgit:
            raise InvalidRequestError("complete continues a causal prior's top rows; a maskgit prior only generates")
        if options.maskgit_options():
            raise InvalidRequestError(f"{', '.join(options.maskgit_options())}: maskgit options; complete takes none")
        if self.layout.kind != "grid":
            raise InvalidRequestError(f"complete continues a grid's top rows; this prior's tokenizer is "
                                      f"{self.layout.kind!r} ({self.layout.id_layout.describe()})")
        ids = self._prefix_ids(prefix, rows)
        labels = self._labels_for(class_labels, ids.shape[0])
        self._check_request(options.guidance_scale, output_type)
        with seeded(seed, self.device):
            grids = sample_rows(self.model, self.layout, labels, ids.shape[0], ids.reshape(ids.shape[0], -1), options)
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
            raise InvalidIdsError(f"got {labels.numel()} class labels for {count} images (give one, or one per image)")
        return labels

    def _check_request(self, guidance_scale: float, output_type: str) -> None:
        """Checks shared by generate and complete, all before any sampling (so a tokenizer that does not match
        the layout is refused now, not after minutes of sampling)."""
        if guidance_scale != 1.0 and not self.layout.conditional:
            raise InvalidRequestError("classifier-free guidance needs a class-conditional prior; this one is unconditional")
        if output_type not in ("pil", "np", "pt", "ids"):
            raise InvalidRequestError(f"output_type must be 'pil', 'np', 'pt' or 'ids', got {output_type!r}")
        if output_type != "ids":
            self.load_tokenizer()

    def _check_maskgit_options(self, options: SamplingOptions, grid_size: Any) -> None:
        """steps and the other maskgit options only for a maskgit prior, steps at most one per id; no sliding window."""
        given = options.maskgit_options()
        if given and not self.layout.maskgit:
            raise InvalidRequestError(f"{', '.join(given)}: maskgit options, but this is a {self.layout.prediction} prior")
        if not self.layout.maskgit:
            return
        if options.steps is not None and options.steps > self.layout.num_image_tokens:
            raise InvalidRequestError(f"steps must be in 1..{self.layout.num_image_tokens} (one id or more per step), "
                                      f"got {options.steps}")
        if grid_size is not None and tuple(grid_size) != self.layout.grid_size:
            raise InvalidRequestError("grid_size (sliding-window sampling) applies to causal grid priors; a maskgit "
                                      f"prior samples its trained {self.layout.id_layout.describe()}")

    def _prefix_ids(self, prefix: Any, rows: int | None) -> torch.Tensor:
        h, w = self.layout.grid_size
        if holds_ids(prefix):
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
            as_ids(ids, self.layout.codebook_size, lambda bad: f"prefix ids must lie in 0..{bad.limit - 1}, got {bad.value}")
            keep = ids.shape[1] if rows is None else rows
        else:
            ids = self.tokenizer.encode(prefix if isinstance(prefix, list) else [prefix])
            keep = h // 2 if rows is None else rows
        if not isinstance(keep, int) or not 0 <= keep <= ids.shape[1]:
            raise InvalidIdsError(f"rows must be an integer in 0..{ids.shape[1]}, got {keep}")
        if keep == h:
            raise InvalidIdsError(f"a prefix of all {h} rows leaves nothing to complete")
        return ids[:, :keep]

    def _output(self, grids: torch.Tensor, output_type: str) -> Any:
        if output_type == "ids":
            return grids
        return self.tokenizer.decode(grids, output_type=output_type)

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        kind = f"{self.layout.num_classes} classes + null" if self.layout.conditional else "unconditional"
        plain = self.layout.kind == "grid" and self.layout.prediction == "raster"
        order = "" if plain else f", {self.layout.kind} {self.layout.prediction}"
        return (
            f"ImagePrior({type(self.model).__name__}, {params / 1e6:.2f} M parameters, grid {self.layout.grid_size}"
            f"{order}, {kind}, tokenizer {self.layout.tokenizer!r})"
        )
