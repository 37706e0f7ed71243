"""image-tokenizer: a VQGAN image tokenizer with the API of a text tokenizer."""

__version__ = "0.1.0"

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
from .lazy_imports import call_when_imported
from .prior import ImagePrior, PriorConfig, TokenLayout
from .tokenizer import ImageTokenizer


def _register_auto_classes() -> None:
    from .auto import register

    register()


# AutoConfig, AutoModel and AutoTokenizer know our model_type as soon as transformers is imported, before or after
# this package; importing it here would cost every CLI call about 0.8 CPU seconds (image_tokenizer/lazy_imports.py).
call_when_imported("transformers", _register_auto_classes)
del call_when_imported

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
