"""TokenLayout: which prior ids are image tokens, special tokens and class tokens, and the tokenizer they belong to.

A sequence is a prefix, then the image ids in the tokenizer's layout order (layouts.py: a grid row-major, a
multiscale tokenizer's scales coarse to fine, a residual one's [h, w, depth] with depth fastest). Unconditional:
`<boi> ids...`. Class-conditional: `<class_c> <boi> ids...`, where a null class token stands in for "no label"
(trained by label dropout, used for classifier-free guidance). Image ids 0..K-1 and `<boi>/<eoi>/<pad>` at K.. are
the tokenizer's own; class tokens follow. `prediction` says how the prior predicts them: "raster", one id per
step, "next_scale" (multiscale only; next_scale.py), one whole scale per step, or "maskgit" (grid and 1d;
maskgit.py), all ids in a few passes of a bidirectional model, whose vocabulary ends with a `<mask>` token after
the class tokens. Saved as prior_layout.json
beside the transformers checkpoint; a file without kind and prediction is a grid raster prior.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import codebook_sha256
from ..errors import CheckpointError, ConfigError, InvalidIdsError, InvalidRequestError, shorten
from ..fileio import atomic_write_text, read_json_object
from ..inputs import as_ids
from ..layouts import IdLayout

if TYPE_CHECKING:
    from ..tokenizer import ImageTokenizer

LAYOUT_NAME = "prior_layout.json"
PREDICTIONS = ("raster", "next_scale", "maskgit")
MASKGIT_KINDS = ("grid", "1d")
LAYOUT_FORMAT = "image-tokenizer-prior-layout"


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
    kind: str = "grid"  # the tokenizer's id layout (layouts.LAYOUT_KINDS): grid, multiscale or residual
    scales: list[int] = field(default_factory=list)  # multiscale: the scale sides, coarse to fine
    depth: int = 1  # residual: codes per position
    prediction: str = "raster"  # "raster" (one id per step), "next_scale" (one scale per step; multiscale only)
    # or "maskgit" (masked-token modelling, a few parallel steps; grid and 1d)

    def __post_init__(self) -> None:
        self.grid_size = tuple(int(v) for v in self.grid_size)
        self.class_names = [str(name) for name in self.class_names]
        if self.codebook_size < 1 or len(self.grid_size) != 2 or min(self.grid_size) < 1:
            raise ConfigError(f"bad token layout: codebook_size {self.codebook_size}, grid {self.grid_size}")
        try:
            self.scales = list(self.scales)
            self.id_layout = IdLayout(self.kind, self.grid_size, tuple(self.scales), self.depth)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad prior token layout: {error}") from None
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"prediction must be one of {PREDICTIONS}, got {shorten(self.prediction)}")
        if self.prediction == "next_scale" and self.kind != "multiscale":
            raise ConfigError(f"next_scale prediction needs a multiscale tokenizer (scales to predict one by one); this "
                              f"tokenizer's layout is {self.kind!r}: use prediction 'raster'")
        if self.prediction == "maskgit" and self.kind not in MASKGIT_KINDS:
            raise ConfigError(f"maskgit prediction is built for grid and 1d tokenizers; this tokenizer's layout is "
                              f"{self.kind!r}: use prediction 'next_scale' or 'raster'")

    @classmethod
    def for_tokenizer(
        cls, tokenizer: ImageTokenizer, tokenizer_name: str, class_names: list[str] | None = None,
        class_label_column: str | None = None, prediction: str | None = None,
    ) -> TokenLayout:
        """The layout of a prior over `tokenizer`'s ids; prediction None: next_scale for a multiscale tokenizer,
        raster for the others (a residual tokenizer's [h, w, depth] ids one by one, depth fastest)."""
        ids = tokenizer.layout
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
            kind=ids.kind,
            scales=list(ids.scales),
            depth=ids.depth,
            prediction=prediction or ("next_scale" if ids.kind == "multiscale" else "raster"),
        )

    @property
    def next_scale(self) -> bool:
        """Whether the prior predicts a whole scale per step (next_scale.py) rather than one id."""
        return self.prediction == "next_scale"

    @property
    def maskgit(self) -> bool:
        """Whether the prior is a bidirectional masked-token model sampled in parallel steps (maskgit.py)."""
        return self.prediction == "maskgit"

    @property
    def mask_token_id(self) -> int:
        """The `<mask>` id of a maskgit prior: the last id of its vocabulary, after the class tokens."""
        if not self.maskgit:
            raise ConfigError(f"a {self.prediction} prior has no mask token")
        return self.first_class_token_id + (self.num_classes + 1 if self.conditional else 0)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One image's ids as the tokenizer takes them: (h, w), (N,) or (h, w, depth)."""
        return self.id_layout.shape

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
        classes = self.num_classes + 1 if self.conditional else 0
        return self.first_class_token_id + classes + (1 if self.maskgit else 0)

    @property
    def num_image_tokens(self) -> int:
        return self.id_layout.ids_per_image

    @property
    def prefix_length(self) -> int:
        return 2 if self.conditional else 1

    @property
    def sequence_length(self) -> int:
        """Positions the LM sees: the prefix and every id (next_scale: <boi> is the first scale's input, and the
        last scale is only predicted, so one position less)."""
        return self.prefix_length + self.num_image_tokens - (1 if self.next_scale else 0)

    @property
    def non_image_token_ids(self) -> list[int]:
        """Every id the prior must never emit inside the grid."""
        return list(range(self.codebook_size, self.vocab_size))

    def check_class_labels(self, labels: Any) -> torch.Tensor | None:
        """None, class names, or class indices 0..C-1 (one, or a list mixing both: ["people", 3]) -> LongTensor;
        a clear error for anything else."""
        if labels is None:
            return None
        if not self.conditional:
            raise InvalidRequestError("class labels given, but this prior is unconditional (trained without classes)")
        if isinstance(labels, str) or (isinstance(labels, (list, tuple)) and any(isinstance(v, str) for v in labels)):
            labels = [self.class_index(v) for v in ([labels] if isinstance(labels, str) else labels)]
        return as_ids(labels, self.num_classes, lambda bad: (
            f"class label {bad.value} out of range; this prior has classes 0..{bad.limit - 1} ({self.describe_classes()})")).reshape(-1)

    def class_index(self, label: Any) -> Any:
        """A class name -> its index; anything else is returned for as_ids to check."""
        if not isinstance(label, str):
            return label
        if label not in self.class_names:
            raise InvalidIdsError(f"no class named {label!r}; this prior's classes are {self.describe_classes()}")
        return self.class_names.index(label)

    def describe_classes(self) -> str:
        """'0=cats, 1=people': each class index with its name."""
        return ", ".join(f"{i}={name}" for i, name in enumerate(self.class_names))

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

    def check_tokenizer(self, tokenizer: ImageTokenizer) -> None:
        """Refuse a tokenizer whose vocabulary differs from the one this prior was trained on."""
        problems = []
        if tokenizer.vocab_size != self.codebook_size:
            problems.append(f"codebook size {tokenizer.vocab_size} != {self.codebook_size}")
        if tuple(tokenizer.grid_size) != self.grid_size:
            problems.append(f"grid {tuple(tokenizer.grid_size)} != {self.grid_size}")
        elif tokenizer.layout != self.id_layout:
            problems.append(f"id layout {tokenizer.layout.kind!r} ({tokenizer.layout.describe()}) != {self.kind!r} "
                            f"({self.id_layout.describe()})")
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
        if self.kind == "grid" and self.prediction == "raster":  # as before layouts: files readers of version 1 know
            for key in ("kind", "scales", "depth", "prediction"):
                data.pop(key)
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
        except (TypeError, ConfigError) as error:
            raise CheckpointError(f"{path}: {error}") from None
