"""The codebook vocabulary: token strings <-> ids, special tokens, and the vocab.json file that carries them.

Ids 0..K-1 are codebook indices (token `<img_00042>` is code 42); special tokens follow at K, K+1, ...;
optional class tokens come last. The file lets a text tokenizer add these tokens without this package: it lists
every token for learned codebooks up to MAX_LISTED_TOKENS codes; larger or implied (fsq, lfq) vocabularies are
defined by `token_format` alone, and nothing here loops over K at load time.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import CheckpointError, InvalidIdsError
from .fileio import atomic_write_text, read_json_object

VOCAB_NAME = "vocab.json"
VOCAB_FORMAT = "image-tokenizer-vocab"
VOCAB_VERSION = 1
DEFAULT_TOKEN_FORMAT = "<img_{:05d}>"
MAX_LISTED_TOKENS = 2**16  # vocab.json's "vocab" table is written up to this many codes (1.3 MB)
BOI, EOI, PAD = "<boi>", "<eoi>", "<pad>"


_JSON_NAMES = {int: "integer", dict: "object", list: "array", str: "string"}


@dataclass
class ImageVocab:
    codebook_size: int
    grid_size: tuple[int, int]
    token_format: str = DEFAULT_TOKEN_FORMAT
    class_tokens: tuple[str, ...] = ()
    special_tokens: tuple[str, ...] = field(default=(BOI, EOI, PAD))

    def __post_init__(self) -> None:
        self.grid_size = tuple(self.grid_size)
        self.class_tokens = tuple(self.class_tokens)
        self.special_tokens = tuple(self.special_tokens)
        if not isinstance(self.token_format, str):
            raise CheckpointError(f"token_format must be a string such as {DEFAULT_TOKEN_FORMAT!r}, got {self.token_format!r}")
        try:
            distinct = self.token_format.format(0) != self.token_format.format(1)
        except (IndexError, KeyError, ValueError) as error:
            raise CheckpointError(
                f"token_format {self.token_format!r} must hold exactly one positional field for the id, such as "
                f"{DEFAULT_TOKEN_FORMAT!r} ({type(error).__name__}: {error})"
            ) from None
        if not distinct:
            raise CheckpointError(f"token_format {self.token_format!r} must contain a '{{}}' field for the id")
        for token in self.special_tokens + self.class_tokens:
            if self._image_id(token) is not None:
                raise CheckpointError(f"special or class token {token!r} collides with an image token")

    def _image_id(self, token: str) -> int | None:
        """The id of an image token string, parsed in O(1) (None when it is not one): `<img_00042>` -> 42."""
        prefix, _, rest = self.token_format.partition("{")
        suffix = rest.partition("}")[2]
        if not (token.startswith(prefix) and token.endswith(suffix) and len(token) > len(prefix) + len(suffix)):
            return None
        digits = token[len(prefix) : len(token) - len(suffix)]
        if not digits.isdigit():
            return None
        index = int(digits)
        return index if index < self.codebook_size and self.token_format.format(index) == token else None

    @cached_property
    def _special_to_id(self) -> dict[str, int]:
        table = {token: self.codebook_size + offset for offset, token in enumerate(self.special_tokens + self.class_tokens)}
        if len(table) != len(self.special_tokens) + len(self.class_tokens):
            raise CheckpointError("vocabulary has duplicate special or class token strings")
        return table

    @cached_property
    def _full_table(self) -> dict[str, int]:
        """Every token -> id, built once, only for token formats that `_image_id` cannot parse (say, hex)."""
        return self.get_vocab()

    def __len__(self) -> int:
        return self.codebook_size + len(self.special_tokens) + len(self.class_tokens)

    def special_id(self, token: str) -> int:
        return self.codebook_size + self.special_tokens.index(token)

    @property
    def boi_token_id(self) -> int:
        return self.special_id(BOI)

    @property
    def eoi_token_id(self) -> int:
        return self.special_id(EOI)

    @property
    def pad_token_id(self) -> int:
        return self.special_id(PAD)

    @property
    def class_token_ids(self) -> list[int]:
        start = self.codebook_size + len(self.special_tokens)
        return list(range(start, start + len(self.class_tokens)))

    @property
    def all_special_ids(self) -> list[int]:
        return list(range(self.codebook_size, len(self)))

    def id_to_token(self, index: int) -> str:
        try:
            if isinstance(index, bool):
                raise TypeError
            index = operator.index(index)
        except TypeError:
            raise InvalidIdsError(f"token ids must be integers, got {index!r} of type {type(index).__name__}") from None
        if not 0 <= index < len(self):
            raise InvalidIdsError(f"token id {index} is out of range: this vocabulary has ids 0..{len(self) - 1}")
        if index < self.codebook_size:
            return self.token_format.format(index)
        return (self.special_tokens + self.class_tokens)[index - self.codebook_size]

    def token_to_id(self, token: str) -> int:
        if not isinstance(token, str):
            raise InvalidIdsError(f"tokens must be strings such as {self.token_format.format(0)!r}, got {token!r}")
        index = self._image_id(token)
        if index is not None:
            return index
        try:
            return self._special_to_id.get(token) if token in self._special_to_id else self._full_table[token]
        except KeyError:
            example = self.token_format.format(0)
            raise InvalidIdsError(
                f"unknown token {token!r}: image tokens look like {example!r}, specials are {list(self.special_tokens)}"
            ) from None

    def convert_ids_to_tokens(self, ids: int | Iterable[int]) -> str | list[str]:
        if not hasattr(ids, "__iter__") or getattr(ids, "ndim", 1) == 0:
            return self.id_to_token(ids)
        return [self.id_to_token(i) for i in ids]

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        if isinstance(tokens, str) or not isinstance(tokens, Iterable):
            return self.token_to_id(tokens)
        return [self.token_to_id(t) for t in tokens]

    def image_tokens(self) -> list[str]:
        """The K image token strings in id order."""
        return list(map(self.token_format.format, range(self.codebook_size)))

    def get_vocab(self) -> dict[str, int]:
        """Every token string -> id (built now: K entries)."""
        table = dict(zip(self.image_tokens(), range(self.codebook_size)))
        table.update(self._special_to_id)
        if len(table) != len(self):
            raise CheckpointError("vocabulary has duplicate token strings")
        return table

    def to_dict(self, codebook_dim: int, normalization: str, list_tokens: bool = True) -> dict[str, Any]:
        return {
            "format": VOCAB_FORMAT,
            "version": VOCAB_VERSION,
            "codebook_size": self.codebook_size,
            "codebook_dim": codebook_dim,
            "codebook_normalization": normalization,
            "grid_size": list(self.grid_size),
            "token_format": self.token_format,
            "special_tokens": {t: self.codebook_size + i for i, t in enumerate(self.special_tokens)},
            "class_tokens": {t: self.codebook_size + len(self.special_tokens) + i for i, t in enumerate(self.class_tokens)},
            "vocab_size": len(self),
            **({"vocab": self.get_vocab()} if list_tokens else {}),
        }

    def save(self, directory: str | Path, codebook_dim: int, normalization: str, list_tokens: bool = True) -> Path:
        """Write vocab.json; list_tokens=False leaves out the table of every token (token_format defines it)."""
        path = Path(directory) / VOCAB_NAME
        atomic_write_text(path, json.dumps(self.to_dict(codebook_dim, normalization, list_tokens), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> tuple[ImageVocab, dict[str, Any]]:
        """Read and cross-check vocab.json; returns the vocabulary and the raw dict (for codebook checks)."""
        path = Path(directory) / VOCAB_NAME
        data = read_json_object(path, "tokenizer")
        if data.get("format") != VOCAB_FORMAT:
            raise CheckpointError(f"{path} is not an image-tokenizer vocabulary (format must be {VOCAB_FORMAT!r})")
        for name, kind in (("codebook_size", int), ("special_tokens", dict), ("class_tokens", dict), ("grid_size", list)):
            value = data.get(name, {} if name == "class_tokens" else None)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CheckpointError(f"{path}: field {name!r} must be a JSON {_JSON_NAMES[kind]}, got {value!r}")
        for name in ("special_tokens", "class_tokens"):
            table = data.get(name, {})
            if not all(isinstance(t, str) and isinstance(i, int) and not isinstance(i, bool) for t, i in table.items()):
                raise CheckpointError(f"{path}: field {name!r} must map token strings to integer ids")
        try:
            size = int(data["codebook_size"])
            special = data["special_tokens"]
            classes = data.get("class_tokens", {})
            vocab = cls(
                codebook_size=size,
                grid_size=tuple(data["grid_size"]),
                token_format=data["token_format"],
                special_tokens=tuple(sorted(special, key=special.get)),
                class_tokens=tuple(sorted(classes, key=classes.get)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path} is missing or has a malformed field: {error}") from None
        expected_specials = {t: size + i for i, t in enumerate(vocab.special_tokens + vocab.class_tokens)}
        if {**special, **classes} != expected_specials:
            raise CheckpointError(f"{path}: special/class token ids must follow the codebook contiguously from {size}")
        listed = data.get("vocab")
        if listed is not None and listed != vocab.get_vocab():
            raise CheckpointError(
                f"{path}: the 'vocab' table ({len(listed)} entries) disagrees with codebook_size={size} "
                f"and token_format={vocab.token_format!r}"
            )
        if data.get("vocab_size", len(vocab)) != len(vocab):
            raise CheckpointError(f"{path}: vocab_size {data['vocab_size']} disagrees with the {len(vocab)} tokens listed")
        return vocab, data
