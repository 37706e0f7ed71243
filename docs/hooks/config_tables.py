"""MkDocs hook: config tables and command-line help, generated at build time so the docs cannot drift.

A page line `<!-- config-fields module:Class -->` (or `<!-- config-fields module:Class prefix -->`) becomes a
table of every field of that dataclass: its name (as a flag or key, with the prefix), its default, and its meaning,
taken from the field's `metadata["help"]` (HfArg) or else the comment on the line that declares it. A dataclass
that cannot be imported, or a field without either text, fails the build. A page line `<!-- cli-help -->`
becomes the `--help` of every `image-tokenizer` command.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import io
import json
import re
import sys
import tokenize
from pathlib import Path
from typing import Any

import mkdocs.plugins
from markdown import Extension
from markdown.inlinepatterns import InlineProcessor

ROOT = Path(__file__).resolve().parents[2]
# Token names written bare in docstrings and pages (<boi>, <img_00005>, <class_c>) are text, not HTML tags.
TOKEN_NAME = r"<(?:boi|eoi|pad|eol|null|img_[0-9a-z_]*|class_[0-9a-z_]*)>"
MARKER = re.compile(r"^<!-- config-fields (\S+):(\S+)(?: (\S+))? -->$", re.MULTILINE)


class ConfigTableError(RuntimeError):
    """A marker names something that is not a documented dataclass."""


def _field_comments(cls: type) -> dict[str, str]:
    """The comment on each `name: type = value  # comment` line of the class body."""
    source = inspect.getsource(cls)
    comments: dict[str, str] = {}
    names_by_line: dict[int, str] = {}
    for number, line in enumerate(source.splitlines(), 1):
        match = re.match(r"\s+(\w+)\s*:", line)
        if match:
            names_by_line[number] = match.group(1)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.start[0] in names_by_line:
            comments[names_by_line[token.start[0]]] = token.string.lstrip("# ").strip()
    return comments


def _default(field: dataclasses.Field) -> str:
    if field.default_factory is not dataclasses.MISSING:
        value: Any = field.default_factory()
    else:
        value = field.default
    if dataclasses.is_dataclass(value):
        return f"`{type(value).__name__}()`"
    if value is None:
        return "`None`"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`" if isinstance(value, (str, list, dict)) else f"`{value!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_table(module: str, name: str, prefix: str = "") -> str:
    """The markdown table of one dataclass's fields."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None or not dataclasses.is_dataclass(cls):
        raise ConfigTableError(f"{module}:{name} is not a dataclass")
    comments = _field_comments(cls)
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(cls):
        meaning = field.metadata.get("help") or comments.get(field.name, "")
        if not meaning:
            raise ConfigTableError(f"{module}:{name}.{field.name} has no help text or comment to document it")
        rows.append(f"| `{prefix}{field.name}` | {_default(field)} | {_cell(meaning)} |")
    return "\n".join(rows)


CLI_MARKER = re.compile(r"^<!-- cli-help -->$", re.MULTILINE)


def cli_help() -> str:
    """`image-tokenizer COMMAND --help` of every command, as the installed parser prints it."""
    import argparse
    import os

    os.environ["COLUMNS"] = "110"  # argparse wraps its help to this width
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from image_tokenizer.cli import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    sections = []
    for name, command in commands.choices.items():
        sections.append(f"### {name}\n\n```text\n{command.format_help().rstrip()}\n```\n")
    return "\n".join(sections)


def on_page_markdown(markdown: str, **_: Any) -> str:
    markdown = MARKER.sub(lambda match: config_table(match.group(1), match.group(2), match.group(3) or ""), markdown)
    return CLI_MARKER.sub(lambda _match: cli_help(), markdown)


class _TokenNames(InlineProcessor):
    def handleMatch(self, match: re.Match, data: str) -> tuple[str, int, int]:
        return self.md.htmlStash.store(match.group(0).replace("<", "&lt;").replace(">", "&gt;")), match.start(0), match.end(0)


class TokenNamesExtension(Extension):
    """Shows `<boi>` and the other token names as text wherever Markdown would take them for HTML tags."""

    def extendMarkdown(self, md: Any) -> None:
        md.inlinePatterns.register(_TokenNames(TOKEN_NAME, md), "token_names", 95)  # before raw inline HTML (90)


@mkdocs.plugins.event_priority(100)  # before mkdocstrings reads the Markdown extensions
def on_config(config: Any) -> Any:
    config.markdown_extensions.append(TokenNamesExtension())
    return config
