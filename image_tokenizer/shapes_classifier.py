"""The shapes classifier: how many shapes of each type a shapes image holds. Its features measure generation
quality on shapes (feature_classifier.py has the shared CNN and the Fréchet distance).

Bundled as `shapes-classifier` (config.json + model.safetensors). Trained by training/train_shapes_classifier.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .data.shapes import SHAPE_TYPES
from .feature_classifier import FeatureClassifier, FeatureClassifierConfig, frechet_distance

__all__ = ["ShapesClassifier", "ShapesClassifierConfig", "frechet_distance"]

CLASSIFIER_NAME = "shapes-classifier"


@dataclass
class ShapesClassifierConfig(FeatureClassifierConfig):
    num_types: int = len(SHAPE_TYPES)
    max_count: int = 5  # counts 0..max_count per type


class ShapesClassifier(FeatureClassifier):
    """uint8 images [B, H, W, 3] -> logits [B, num_types, max_count + 1]: how many shapes of each type."""

    config_class = ShapesClassifierConfig
    format_name = "image-tokenizer-shapes-classifier"
    what = "shapes classifier"
    default_name = CLASSIFIER_NAME
    hub_commit_message = "Upload shapes classifier"

    def num_logits(self) -> int:
        return self.config.num_types * (self.config.max_count + 1)

    def forward(self, images: Any) -> torch.Tensor:
        return super().forward(images).reshape(-1, self.config.num_types, self.config.max_count + 1)

    def predict_counts(self, images: Any, batch_size: int = 256) -> np.ndarray:
        """Shapes of each type per image, [B, num_types] ints (SHAPE_TYPES order)."""
        return self.predict(images, batch_size)
