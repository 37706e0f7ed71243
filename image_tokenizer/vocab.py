"""The codebook vocabulary: token strings <-> ids, special tokens, and the vocab.json file that carries them.

Ids 0..K-1 are codebook indices (token `<img_00042>` is code 42); special tokens follow at K, K+1, ...;
optional class tokens come last. The file lets a text tokenizer add these tokens without this package: it lists
every token for learned codebooks up to MAX_LISTED_TOKENS codes; larger or implied (fsq, lfq) vocabularies are
defined by `token_format` alone, and nothing here loops over K at load time. Its `layout` says what an image's ids
are (layouts.py); version 2 marks a layout other than the grid (multiscale, residual), which a version-1 reader
would misread, and files without a layout (version 1) load as grids.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import CheckpointError, InvalidIdsError, shorten
from .fileio import atomic_write_text, read_json_object
from .layouts import IdLayout, layout_from_dict

VOCAB_NAME = "vocab.json"
VOCAB_FORMAT = "image-tokenizer-vocab"
VOCAB_VERSION = 2  # 1: grids only (no layout field, or a grid one); 2: any layout
DEFAULT_TOKEN_FORMAT = "<img_{:05d}>"
MAX_LISTED_TOKENS = 2**16  # vocab.json's "vocab" table is written up to this many codes (1.3 MB)
BOI, EOI, PAD = "<boi>", "<eoi>", "<pad>"


_JSON_NAMES = {int: "integer", dict: "object", list: "array", str: "string"}
# token_format: literal text around one field for the id, decimal ({}, {:d}, {:05d}) or hex ({:x}, {:04X}), so that a
# token parses back to its id in O(1) and no format can make a token string of unbounded size.
_TOKEN_FORMAT = re.compile(r"(?P<prefix>[^{}]*)\{0?(?::(?:0(?P<width>[1-9][0-9]?))?(?P<kind>[dxX]?))?\}(?P<suffix>[^{}]*)")
MAX_ID_DIGITS = 16  # a field's width, and the digits of a parsed id (2^31 has 10 decimal digits)
MAX_AFFIX_CHARS = 64  # the literal text before and after the field
_DIGITS = {10: "0123456789", 16: "0123456789abcdefABCDEF"}


def parse_token_format(token_format: Any) -> tuple[str, str, int]:
    """(prefix, suffix, base) of a documented token_format, else CheckpointError naming the documented forms."""
    if not isinstance(token_format, str):
        raise CheckpointError(f"token_format must be a string such as {DEFAULT_TOKEN_FORMAT!r}, got {shorten(token_format)}")
    match = _TOKEN_FORMAT.fullmatch(token_format)
    if match is None or len(match["prefix"]) > MAX_AFFIX_CHARS or len(match["suffix"]) > MAX_AFFIX_CHARS or (
        match["width"] and int(match["width"]) > MAX_ID_DIGITS
    ):
        raise CheckpointError(
            f"token_format {shorten(token_format)} must hold exactly one positional field for the id, such as "
            f"{DEFAULT_TOKEN_FORMAT!r}: up to {MAX_AFFIX_CHARS} characters of text (no braces) on either side of one "
            f"'{{}}', '{{:d}}', '{{:0Nd}}', '{{:x}}' or '{{:0Nx}}' field, N at most {MAX_ID_DIGITS}"
        )
    return match["prefix"], match["suffix"], 16 if match["kind"] in ("x", "X") else 10


@dataclass
class ImageVocab:
    codebook_size: int
    grid_size: tuple[int, int]
    token_format: str = DEFAULT_TOKEN_FORMAT
    class_tokens: tuple[str, ...] = ()
    special_tokens: tuple[str, ...] = field(default=(BOI, EOI, PAD))
    layout: IdLayout | None = None  # what an image's ids are; None: the grid of grid_size

    def __post_init__(self) -> None:
        self.grid_size = tuple(self.grid_size)
        self.layout = self.layout or IdLayout("grid", self.grid_size)
        if self.layout.grid_size != self.grid_size:
            raise CheckpointError(f"vocabulary layout grid {self.layout.grid_size} disagrees with grid_size {self.grid_size}")
        self.class_tokens = tuple(self.class_tokens)
        self.special_tokens = tuple(self.special_tokens)
        self._prefix, self._suffix, self._base = parse_token_format(self.token_format)
        for token in self.special_tokens + self.class_tokens:
            if self._image_id(token) is not None:
                raise CheckpointError(f"special or class token {shorten(token)} collides with an image token")

    def _image_id(self, token: str) -> int | None:
        """The id of an image token string, parsed in O(1) (None when it is not one): `<img_00042>` -> 42."""
        prefix, suffix = self._prefix, self._suffix
        if not (token.startswith(prefix) and token.endswith(suffix)):
            return None
        digits = token[len(prefix) : len(token) - len(suffix)]
        allowed = _DIGITS[self._base]
        if not 0 < len(digits) <= MAX_ID_DIGITS or len(token) < len(prefix) + len(suffix) or digits.strip(allowed):
            return None
        index = int(digits, self._base)
        return index if index < self.codebook_size and self.token_format.format(index) == token else None

    @cached_property
    def _special_to_id(self) -> dict[str, int]:
        table = {token: self.codebook_size + offset for offset, token in enumerate(self.special_tokens + self.class_tokens)}
        if len(table) != len(self.special_tokens) + len(self.class_tokens):
            raise CheckpointError("vocabulary has duplicate special or class token strings")
        return table

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
            raise InvalidIdsError(f"token ids must be integers, got {shorten(index)} of type {type(index).__name__}") from None
        if not 0 <= index < len(self):
            raise InvalidIdsError(f"token id {index} is out of range: this vocabulary has ids 0..{len(self) - 1}")
        if index < self.codebook_size:
            return self.token_format.format(index)
        return (self.special_tokens + self.class_tokens)[index - self.codebook_size]

    def token_to_id(self, token: str) -> int:
        if not isinstance(token, str):
            raise InvalidIdsError(f"tokens must be strings such as {self.token_format.format(0)!r}, got {shorten(token)}")
        index = self._image_id(token)
        if index is not None:
            return index
        if token in self._special_to_id:
            return self._special_to_id[token]
        example = self.token_format.format(0)
        raise InvalidIdsError(
            f"unknown token {shorten(token)}: image tokens look like {example!r}, specials are {shorten(list(self.special_tokens))}"
        )

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
            "version": 1 if self.layout.kind == "grid" else VOCAB_VERSION,
            "codebook_size": self.codebook_size,
            "codebook_dim": codebook_dim,
            "codebook_normalization": normalization,
            "grid_size": list(self.grid_size),
            "layout": self.layout.to_dict(),
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
        version = data.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VOCAB_VERSION:
            raise CheckpointError(f"{path}: version {shorten(version)} is not one this library reads (1 to "
                                  f"{VOCAB_VERSION}); a newer image-tokenizer wrote it, so upgrade")
        for name, kind in (("codebook_size", int), ("special_tokens", dict), ("class_tokens", dict), ("grid_size", list)):
            value = data.get(name, {} if name == "class_tokens" else None)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CheckpointError(f"{path}: field {name!r} must be a JSON {_JSON_NAMES[kind]}, got {shorten(value)}")
        for name in ("special_tokens", "class_tokens"):
            table = data.get(name, {})
            if not all(isinstance(t, str) and isinstance(i, int) and not isinstance(i, bool) for t, i in table.items()):
                raise CheckpointError(f"{path}: field {name!r} must map token strings to integer ids")
        layout = _read_layout(data, path)
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
                layout=layout,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path} is missing or has a malformed field: {error}") from None
        expected_specials = {t: size + i for i, t in enumerate(vocab.special_tokens + vocab.class_tokens)}
        if {**special, **classes} != expected_specials:
            raise CheckpointError(f"{path}: special/class token ids must follow the codebook contiguously from {size}")
        listed = data.get("vocab")
        # The table's length first: only a table as long as the vocabulary is compared with the one built from
        # codebook_size (a 10^7 codebook_size beside an empty table must not build 10^7 token strings first).
        if listed is not None and (not isinstance(listed, dict) or len(listed) != len(vocab) or listed != vocab.get_vocab()):
            entries = f"{len(listed):,} entries" if isinstance(listed, dict) else f"not an object: {shorten(listed)}"
            raise CheckpointError(
                f"{path}: the 'vocab' table ({entries}) disagrees with codebook_size={size:,} "
                f"and token_format={vocab.token_format!r}"
            )
        if data.get("vocab_size", len(vocab)) != len(vocab):
            raise CheckpointError(f"{path}: vocab_size {shorten(data['vocab_size'])} disagrees with the {len(vocab)} tokens listed")
        return vocab, data


def _read_layout(data: dict[str, Any], path: Path) -> IdLayout:
    """vocab.json's layout (a grid when the file has none); a layout other than a grid needs version 2."""
    grid = data["grid_size"]
    if len(grid) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in grid):
        raise CheckpointError(f"{path}: field 'grid_size' must be two positive integers, got {shorten(grid)}")
    if "layout" not in data:
        return IdLayout("grid", tuple(grid))
    layout = layout_from_dict(data["layout"], tuple(grid), str(path))
    if layout.kind != "grid" and data.get("version", 1) < 2:
        raise CheckpointError(f"{path}: a {layout.kind} layout needs version 2, got version {data.get('version', 1)}")
    return layout
