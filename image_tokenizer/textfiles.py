"""JSON and YAML from files we did not write: bounded in size, nesting and integer length, and YAML without aliases.

A 755-byte YAML whose aliases nest nine deep expands to hundreds of MB when anything walks it (an error message,
a model card), and a 50,000-deep JSON or a 5,000-digit integer stops Python's own parsers with a traceback. Every
config, vocabulary, index and card front matter is read through here, and each failure is one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .errors import ImageTokenizerError, shorten

MAX_JSON_BYTES = 16 * 2**20  # config.json and vocab.json are kB (a vocab.json listing 2^16 tokens is 1.3 MB)
MAX_YAML_BYTES = 2**20  # training configs are a few kB
MAX_NESTING = 100  # the deepest real file here nests 6 levels
MAX_INTEGER_DIGITS = 40  # more than any count, size or id needs (2^128 has 39 digits)

ErrorClass = type[ImageTokenizerError]


def read_text(path: Path, max_bytes: int, error: ErrorClass) -> str:
    """A UTF-8 text file of at most max_bytes; reading stops there, so a huge file costs nothing."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as problem:
        raise error(f"{path}: cannot be read ({problem.strerror or problem})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: larger than {max_bytes:,} bytes, far more than this kind of file holds; refusing to read it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{path}: not UTF-8 text (byte {problem.start:,} is {data[problem.start]:#04x})") from None


def read_json(path: Path, error: ErrorClass, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON file's value, or `error` in one line: too large, not JSON, nested too deep, integers too long."""
    text = read_text(path, max_bytes, error)
    try:
        return json.loads(text, parse_int=_bounded_int)
    except _TooLong as problem:
        raise error(f"{path}: {problem}") from None
    except RecursionError:
        raise error(f"{path}: nested deeper than Python can parse; not a file this library writes or reads") from None
    except json.JSONDecodeError as problem:  # the parser's own words: what it expected, at which line and column
        raise error(f"{path}: not valid JSON ({problem})") from None


def read_json_object(path: Path, error: ErrorClass, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """A JSON file that must hold an object (read_json's bounds), or `error` in one line: the one JSON reader of
    configs, vocabularies and indexes, ours (fileio.read_json_object) and publishers' (converters) alike."""
    data = read_json(path, error, max_bytes)
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def parse_yaml(text: str, where: Path | str, error: ErrorClass) -> Any:
    """YAML text's value through BoundedLoader (a SafeLoader without aliases, nesting or integers past the bounds)."""
    try:
        return yaml.load(text, Loader=BoundedLoader)
    except yaml.MarkedYAMLError as problem:
        mark = problem.problem_mark or problem.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{where}: not a readable YAML file{at}: {shorten(problem.problem or problem.context)}") from None
    except yaml.YAMLError as problem:
        raise error(f"{where}: not a readable YAML file: {shorten(str(problem))}") from None


def read_yaml(path: Path, error: ErrorClass, max_bytes: int = MAX_YAML_BYTES) -> Any:
    return parse_yaml(read_text(path, max_bytes, error), path, error)


class _TooLong(ValueError):
    pass


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise _TooLong(f"holds an integer of {digits:,} digits; numbers in these files have at most {MAX_INTEGER_DIGITS}")
    return int(text)


class BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses aliases (`*name`: how a few hundred bytes expand to gigabytes, "billion laughs"),
    nesting past MAX_NESTING (the composer recurses) and integers past MAX_INTEGER_DIGITS characters."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias {shorten('*' + event.anchor, 60)} refused: YAML aliases can expand to gigabytes, so "
                "files from others may not use them; write the value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_NESTING} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_INTEGER_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(node.value):,} characters; at most {MAX_INTEGER_DIGITS}", node.start_mark)
        return self.construct_yaml_int(node)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_bounded_int)
