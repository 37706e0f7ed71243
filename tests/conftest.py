"""Shared fixtures: tiny configs so the whole suite runs in minutes on 2 CPU cores, offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported anywhere

import numpy as np
import pytest
import torch

from image_tokenizer import ImageTokenizer, ImageTokenizerConfig
from tests.helpers import tiny_config


@pytest.fixture
def config() -> ImageTokenizerConfig:
    return tiny_config()


@pytest.fixture
def tokenizer(config) -> ImageTokenizer:
    torch.manual_seed(0)
    return ImageTokenizer(config)


@pytest.fixture
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8) for _ in range(11)]
