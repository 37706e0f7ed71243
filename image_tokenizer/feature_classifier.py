"""Small CNNs whose penultimate layer is the feature space for Fréchet distances between image sets (the
offline stand-in for Inception features), and the distance itself.

`FeatureClassifier` holds what every such classifier shares: the convolutional body, the features, saving and
loading (config.json + model.safetensors, strict). A subclass names its head. `LabelClassifier` predicts one
class per image: the bundled `emoji-classifier` predicts the Unicode group of an emoji. The shapes classifier,
which counts shapes of each type, is in shapes_classifier.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError
from .fileio import atomic_write_text, check_state_dict, load_tensors, read_json_object, save_tensors
from .hub import HubMixin
from .inputs import as_uint8_images


@dataclass
class FeatureClassifierConfig:
    image_size: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 128)  # each stage halves the resolution: 32, 16, 8, 4
    feature_dim: int = 128

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)


class FeatureClassifier(nn.Module, HubMixin):
    """uint8 images [B, H, W, 3] -> features [B, feature_dim] -> the subclass's logits."""

    config_class: ClassVar[type] = FeatureClassifierConfig
    format_name: ClassVar[str] = ""  # the `format` field of config.json, checked on load
    what: ClassVar[str] = "feature classifier"  # for error messages: "the {what} takes", "not a {what}"
    default_name: ClassVar[str] = ""  # the bundled model from_pretrained() loads without a name
    hub_files = ("config.json", "model.safetensors")

    def __init__(self, config: Any = None):
        super().__init__()
        self.config = config = config or self.config_class()
        self.card_info: dict[str, Any] = {}  # measured metrics, saved in config.json
        layers: list[nn.Module] = []
        previous = 3
        for channels in config.channels:
            layers += [nn.Conv2d(previous, channels, 3, 2, 1), nn.GroupNorm(8, channels), nn.SiLU()]
            layers += [nn.Conv2d(channels, channels, 3, 1, 1), nn.GroupNorm(8, channels), nn.SiLU()]
            previous = channels
        self.body = nn.Sequential(*layers)
        self.project = nn.Linear(previous, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, self.num_logits())

    def num_logits(self) -> int:
        raise NotImplementedError

    def _pixels(self, images: Any) -> torch.Tensor:
        pixels = as_uint8_images(images, f"the {self.what}")
        return pixels.to(self.head.weight.device).permute(0, 3, 1, 2).float().div(255.0)

    def features(self, images: Any) -> torch.Tensor:
        """Penultimate activations [B, feature_dim]: the space Fréchet distances are measured in."""
        hidden = self.body(self._pixels(images)).mean(dim=(2, 3))
        return F.silu(self.project(hidden))

    def forward(self, images: Any) -> torch.Tensor:
        return self.head(self.features(images))

    @torch.inference_mode()
    def predict(self, images: Any, batch_size: int = 256) -> np.ndarray:
        """The argmax of the last logit axis for many images, as ints."""
        return np.concatenate(
            [self(images[i : i + batch_size]).argmax(-1).cpu().numpy() for i in range(0, len(images), batch_size)]
        )

    @torch.inference_mode()
    def embed(self, images: Any, batch_size: int = 256) -> np.ndarray:
        """Features of many images, float64 [B, feature_dim]."""
        return np.concatenate(
            [self.features(images[i : i + batch_size]).double().cpu().numpy() for i in range(0, len(images), batch_size)]
        )

    def save_pretrained(self, directory: str | Path, card_info: dict[str, Any] | None = None, **kwargs: Any) -> list[Path]:
        """Write config.json (with the measured metrics, card_info) and model.safetensors, as HubMixin does."""
        if card_info is not None:
            self.card_info = dict(card_info)
        return super().save_pretrained(directory, **kwargs)

    def _save_pretrained(self, directory: Path, model_name: str) -> list[Path]:
        save_tensors(directory / "model.safetensors", {k: v.contiguous() for k, v in self.state_dict().items()})
        data = {"format": self.format_name, **asdict(self.config), "metrics": self.card_info}
        atomic_write_text(directory / "config.json", json.dumps(data, indent=2) + "\n")
        return [directory / name for name in self.hub_files]

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, **kwargs: Any) -> Any:
        """The bundled classifier (by default `default_name`), a folder saved with save_pretrained, or a Hub repo."""
        return super().from_pretrained(name_or_path or cls.default_name, **kwargs)

    @classmethod
    def _from_pretrained(cls, directory: Path) -> FeatureClassifier:
        """A saved folder: safetensors only, loaded strictly."""
        data = read_json_object(directory / "config.json", cls.what)
        if data.pop("format", None) != cls.format_name:
            raise CheckpointError(f"{directory}: not a {cls.what} (config.json format field missing or not {cls.format_name!r})")
        metrics = data.pop("metrics", {})
        try:
            model = cls(cls.config_class(**data))
        except TypeError as error:
            raise CheckpointError(f"{directory / 'config.json'}: {error}") from None
        model.card_info = metrics
        weights = load_tensors(directory / "model.safetensors")
        check_state_dict(directory / "model.safetensors", weights, model.state_dict())
        model.load_state_dict(weights, strict=True)
        return model.eval()


@dataclass
class LabelClassifierConfig(FeatureClassifierConfig):
    class_names: tuple[str, ...] = field(default_factory=tuple)  # logit i is class_names[i]
    label_column: str = "label"  # the dataset column it was trained to predict

    def __post_init__(self) -> None:
        super().__post_init__()
        self.class_names = tuple(self.class_names)
        if len(self.class_names) < 2:
            raise ValueError(f"a label classifier needs at least two class_names, got {list(self.class_names)}")


class LabelClassifier(FeatureClassifier):
    """One class per image among `config.class_names` (the bundled `emoji-classifier`: the emoji's group)."""

    config_class = LabelClassifierConfig
    format_name = "image-tokenizer-label-classifier"
    what = "label classifier"
    default_name = "emoji-classifier"
    hub_commit_message = "Upload label classifier"

    def num_logits(self) -> int:
        return len(self.config.class_names)

    def label_ids(self, labels: Any) -> np.ndarray:
        """Class names -> indices into class_names, refusing an unknown name."""
        names = list(self.config.class_names)
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise ValueError(f"labels {unknown} are not among this classifier's classes {names}")
        return np.array([names.index(label) for label in labels], dtype=np.int64)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), the FID formula, with the matrix square root's
    trace taken from the eigenvalues of S_a^1/2 S_b S_a^1/2 (symmetric, so eigh is exact and stable)."""
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two [N, D] feature sets with N >= 2 and the same D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)
