"""Exceptions raised for user mistakes: bad images, bad ids, bad configs, bad checkpoints."""


class ImageTokenizerError(ValueError):
    """Base class for every error caused by the caller's input; the CLI prints these as one line."""


class ConfigError(ImageTokenizerError):
    """An impossible or inconsistent configuration."""


class ImageLoadError(ImageTokenizerError):
    """An image file that is missing, empty, truncated or not an image."""


class InvalidImageError(ImageTokenizerError):
    """An image or array that cannot be turned into model input (shape, dtype, range, size)."""


class CheckpointError(ImageTokenizerError):
    """A saved tokenizer whose files are missing or disagree with each other."""


class NoDecoderError(ImageTokenizerError):
    """Decoding asked of an encoder-only tokenizer (one whose source ships no decoder weights)."""


class ConversionError(ImageTokenizerError):
    """A published checkpoint that cannot be converted: unknown format, unsupported variant, unsafe pickle."""


class HubError(ImageTokenizerError):
    """The Hugging Face Hub could not be reached or refused a request (offline, no network, no permission)."""


class InvalidRequestError(ImageTokenizerError):
    """Call arguments that cannot be honoured (padding, max_length, return_tensors, output_type, ...)."""


class InvalidIdsError(InvalidRequestError):
    """Ids that are not valid where they are given: token ids (range, dtype, rank, length), prefix ids, class
    labels. One class wherever ids come from; a kind of InvalidRequestError, as ids are call arguments."""


class CLIError(ImageTokenizerError):
    """A mistake in the command line itself."""


class DataError(ImageTokenizerError):
    """Training data that cannot be used (missing, empty, or unreadable under --strict-data)."""


class PretokenizeError(ImageTokenizerError):
    """A dataset that cannot be pre-tokenized as asked (bad column, undecodable row, occupied output)."""


class StreamingError(ImageTokenizerError):
    """A streaming or node-sharded pre-tokenization that cannot go on as asked."""
