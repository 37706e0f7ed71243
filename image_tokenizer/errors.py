"""Exceptions raised for user mistakes: bad images, bad ids, bad configs, bad checkpoints; `shorten`, how a
value read from a file may appear in their messages (and in cards); and `option`, how they name a setting."""

from __future__ import annotations

import reprlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

SHOWN_CHARACTERS = 200  # the most of a file's value that a message or card repeats


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


def shorten(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """A value from a file as a message or card may show it: its repr (strings quoted, newlines escaped, so one
    line), at most `limit` characters. Built by reprlib, which never renders more of a large or deeply nested
    value than it shows, so a hostile value costs no more than its preview."""
    text = _PREVIEW.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class _Preview(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple = 3, 6, 8, 8
        self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 8
        self.maxstring = self.maxother = self.maxlong = SHOWN_CHARACTERS

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:  # repr of a huge int is refused (int_max_str_digits) and costs quadratic time
            return f"<an integer of {x.bit_length():,} bits>"
        return super().repr_int(x, level)


_PREVIEW = _Preview()


_ON_COMMAND_LINE: ContextVar[bool] = ContextVar("on_command_line", default=False)


def option(name: str) -> str:
    """How a message names the setting `name` (max_pixels): `--max-pixels` while a command line runs (the CLI and
    the training scripts, `command_line_options`), `max_pixels=` from Python. Worker processes forked during the
    run (DataLoader, `datasets.map`) inherit it."""
    return f"--{name.replace('_', '-')}" if _ON_COMMAND_LINE.get() else f"{name}="


@contextmanager
def command_line_options() -> Iterator[None]:
    """Messages raised inside name settings as command-line flags (`option`)."""
    token = _ON_COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _ON_COMMAND_LINE.reset(token)
