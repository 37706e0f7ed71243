"""A small CNN that counts the shapes of each type in a shapes image; its penultimate layer is the feature
space for Fréchet distances between image sets (the offline stand-in for Inception features).

Bundled as `shapes-classifier` (config.json + model.safetensors). Trained by training/train_shapes_classifier.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.shapes import SHAPE_TYPES
from .errors import CheckpointError
from .fileio import atomic_write_text, check_state_dict, load_tensors, read_json_object, save_tensors
from .hub import HubMixin
from .inputs import as_uint8_images

CLASSIFIER_NAME = "shapes-classifier"
CLASSIFIER_FORMAT = "image-tokenizer-shapes-classifier"


@dataclass
class ShapesClassifierConfig:
    image_size: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 128)  # each stage halves the resolution: 32, 16, 8, 4
    feature_dim: int = 128
    num_types: int = len(SHAPE_TYPES)
    max_count: int = 5  # counts 0..max_count per type

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)


class ShapesClassifier(nn.Module, HubMixin):
    """uint8 images [B, H, W, 3] -> logits [B, num_types, max_count + 1]: how many shapes of each type."""

    hub_files = ("config.json", "model.safetensors")
    hub_commit_message = "Upload shapes classifier"

    def __init__(self, config: ShapesClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or ShapesClassifierConfig()
        self.card_info: dict[str, Any] = {}  # measured metrics, saved in config.json
        layers: list[nn.Module] = []
        previous = 3
        for channels in config.channels:
            layers += [nn.Conv2d(previous, channels, 3, 2, 1), nn.GroupNorm(8, channels), nn.SiLU()]
            layers += [nn.Conv2d(channels, channels, 3, 1, 1), nn.GroupNorm(8, channels), nn.SiLU()]
            previous = channels
        self.body = nn.Sequential(*layers)
        self.project = nn.Linear(previous, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.num_types * (config.max_count + 1))

    def _pixels(self, images: Any) -> torch.Tensor:
        pixels = as_uint8_images(images, "the shapes classifier")
        return pixels.to(self.head.weight.device).permute(0, 3, 1, 2).float().div(255.0)

    def features(self, images: Any) -> torch.Tensor:
        """Penultimate activations [B, feature_dim]: the space Fréchet distances are measured in."""
        hidden = self.body(self._pixels(images)).mean(dim=(2, 3))
        return F.silu(self.project(hidden))

    def forward(self, images: Any) -> torch.Tensor:
        logits = self.head(self.features(images))
        return logits.reshape(-1, self.config.num_types, self.config.max_count + 1)

    @torch.inference_mode()
    def predict_counts(self, images: Any, batch_size: int = 256) -> np.ndarray:
        """Shapes of each type per image, [B, num_types] ints (SHAPE_TYPES order)."""
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
        data = {"format": CLASSIFIER_FORMAT, **asdict(self.config), "metrics": self.card_info}
        atomic_write_text(directory / "config.json", json.dumps(data, indent=2) + "\n")
        return [directory / name for name in self.hub_files]

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = CLASSIFIER_NAME, **kwargs: Any) -> ShapesClassifier:
        """The bundled classifier by name, a directory saved with save_pretrained, or a Hub repo (HubMixin)."""
        return super().from_pretrained(name_or_path, **kwargs)

    @classmethod
    def _from_pretrained(cls, directory: Path) -> ShapesClassifier:
        """A saved folder: safetensors only, loaded strictly."""
        data = read_json_object(directory / "config.json", "shapes classifier")
        if data.pop("format", None) != CLASSIFIER_FORMAT:
            raise CheckpointError(f"{directory}: not a shapes classifier (config.json format field missing or wrong)")
        data.pop("metrics", None)
        model = cls(ShapesClassifierConfig(**data))
        weights = load_tensors(directory / "model.safetensors")
        check_state_dict(directory / "model.safetensors", weights, model.state_dict())
        model.load_state_dict(weights, strict=True)
        return model.eval()


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
