"""image-tokenizer: a VQGAN image tokenizer with the API of a text tokenizer."""

__version__ = "0.1.0"

from .config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from .errors import (
    CheckpointError,
    ConfigError,
    ImageLoadError,
    ImageTokenizerError,
    InvalidIdsError,
    InvalidImageError,
)
from .prior import ImagePrior, TokenLayout
from .tokenizer import ImageTokenizer

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ImageLoadError",
    "ImagePrior",
    "ImageTokenizer",
    "ImageTokenizerConfig",
    "ImageTokenizerError",
    "InvalidIdsError",
    "InvalidImageError",
    "PreprocessingConfig",
    "QuantizerConfig",
    "TokenLayout",
    "__version__",
]
