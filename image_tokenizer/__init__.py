"""image-tokenizer: a VQGAN image tokenizer with the API of a text tokenizer."""

__version__ = "0.1.0"

from .config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from .errors import (
    CheckpointError,
    ConfigError,
    ConversionError,
    HubError,
    ImageLoadError,
    ImageTokenizerError,
    InvalidIdsError,
    InvalidImageError,
    InvalidRequestError,
    NoDecoderError,
)
from .prior import ImagePrior, TokenLayout
from .tokenizer import ImageTokenizer
from .converters import convert
from .auto import register as _register_auto_classes

_register_auto_classes()

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "HubError",
    "ImageLoadError",
    "ImagePrior",
    "ImageTokenizer",
    "ImageTokenizerConfig",
    "ImageTokenizerError",
    "InvalidIdsError",
    "InvalidImageError",
    "InvalidRequestError",
    "NoDecoderError",
    "PreprocessingConfig",
    "QuantizerConfig",
    "TokenLayout",
    "__version__",
    "convert",
]
