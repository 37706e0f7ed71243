"""image-tokenizer: a VQGAN image tokenizer with the API of a text tokenizer."""

__version__ = "0.1.0"

from .auto import register as _register_auto_classes
from .config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from .converters import convert
from .errors import (
    CheckpointError,
    CLIError,
    ConfigError,
    ConversionError,
    DataError,
    HubError,
    ImageLoadError,
    ImageTokenizerError,
    InvalidIdsError,
    InvalidImageError,
    InvalidRequestError,
    NoDecoderError,
    PretokenizeError,
    StreamingError,
)
from .prior import ImagePrior, PriorConfig, TokenLayout
from .tokenizer import ImageTokenizer

_register_auto_classes()

__all__ = [
    "CLIError",
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "DataError",
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
    "PretokenizeError",
    "PriorConfig",
    "QuantizerConfig",
    "StreamingError",
    "TokenLayout",
    "__version__",
    "convert",
]
