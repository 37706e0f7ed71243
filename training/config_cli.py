"""Command-line configs for the training scripts, parsed by transformers' HfArgumentParser.

Every field of the config dataclass is a flag (`--field VALUE`, also `--field-name`) whose help shows its default
and the text of its `metadata["help"]`; `--config FILE.json` sets fields first and flags override them; a dict
field also takes one key at a time (`--model.ch 32`); `--resume` continues from the last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool


class TrainingError(RuntimeError):
    """The run cannot continue (non-finite loss, bad config); the message says why and where."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each flag's default after its help."""


def _json_value(text: str) -> Any:
    """A flag's value as JSON when it parses (numbers, lists, objects, null), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _json_object(text: str) -> dict[str, Any]:
    value = _json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"ch\": 32}}', got {text!r}")
    return value


def _optional(kind: type) -> Callable[[str], Any]:
    """The type of an Optional[kind] flag: `none` or `null` gives None, anything else kind(text)."""

    def convert(text: str) -> Any:
        return None if text.lower() in ("none", "null") else kind(text)

    convert.__name__ = kind.__name__  # argparse names the type in its errors
    return convert


def _optional_inner(hint: Any) -> Any:
    """X for Optional[X] (X | None), else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(inner) == 1 and len(typing.get_args(hint)) == 2:
            return inner[0]
    return None


class ConfigParser(HfArgumentParser):
    """HfArgumentParser with dict fields as JSON objects, tuple fields as N values, Optional fields that take
    `none`, and mistakes raised as TrainingError (one line) instead of printing usage and exiting."""

    def error(self, message: str):  # argparse's hook for every bad flag or value
        raise TrainingError(message)

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        names = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        common = {"default": default, "help": field.metadata.get("help", "")}
        origin, inner = typing.get_origin(field.type), _optional_inner(field.type)
        if origin is dict:
            parser.add_argument(*names, type=_json_object, metavar="JSON", **common)
        elif origin is tuple:
            args = typing.get_args(field.type)
            parser.add_argument(*names, type=args[0], nargs=len(args), metavar=args[0].__name__.upper(), **common)
        elif bool in (field.type, inner):  # --flag, --flag true|false (|none when Optional), --no_flag
            kind = _optional(string_to_bool) if inner else string_to_bool
            parser.add_argument(*names, type=kind, nargs="?", const=True, metavar="BOOL", **common)
            if field.default is True:
                negated = dict.fromkeys([f"--no_{field.name}", f"--no-{field.name.replace('_', '-')}"])
                parser.add_argument(*negated, dest=field.name, action="store_false",
                                    default=argparse.SUPPRESS, help=f"the same as --{field.name} false")
        elif inner is not None:
            parser.add_argument(*names, type=_optional(inner), metavar=inner.__name__.upper(), **common)
        else:
            HfArgumentParser._parse_dataclass_field(parser, field)


def build_parser(config_class: type, description: str | None) -> ConfigParser:
    """The parser of a config dataclass, with --config and --resume."""
    parser = ConfigParser(config_class, description=description, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--config", metavar="FILE.json", help=f"a JSON object of {config_class.__name__} fields, "
                        "read first; the flags given override it")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    return parser


def parse_config(config_class: type, argv: list[str] | None, description: str | None) -> tuple[Any, bool]:
    """--config FILE, then --field VALUE / --section.key VALUE overrides; returns (config_class instance, whether
    --resume was given). --help prints every field with its default and exits."""
    argv = list(sys.argv[1:] if argv is None else argv)
    hints = typing.get_type_hints(config_class)
    argv, keys = _split_key_overrides(argv, {name for name, hint in hints.items() if typing.get_origin(hint) is dict})
    parser = build_parser(config_class, description)
    config_file = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    config_file.add_argument("--config")
    if path := config_file.parse_known_args(argv)[0].config:
        parser.set_defaults(**_read_config_file(path, config_class))
    config, extra, unknown = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True, look_for_args_file=False)
    if unknown:
        flag = next((item for item in unknown if item.startswith("-")), unknown[0])
        raise TrainingError(f"unknown config field {flag.lstrip('-').replace('-', '_')!r} "
                            f"(--help lists every field and its default)")
    for section, key, value in keys:
        setattr(config, section, {**getattr(config, section), key: value})
    for name, hint in hints.items():  # a JSON file gives lists where a field is a tuple
        if typing.get_origin(hint) is tuple and isinstance(getattr(config, name), list):
            setattr(config, name, tuple(getattr(config, name)))
    return config, extra.resume


def _split_key_overrides(argv: list[str], dict_fields: set[str]) -> tuple[list[str], list[tuple[str, str, Any]]]:
    """Take `--section.key VALUE` pairs out of argv: (the rest, [(section, key, value parsed as JSON)])."""
    rest, keys, index = [], [], 0
    while index < len(argv):
        item = argv[index]
        name = item[2:].replace("-", "_") if item.startswith("--") else ""
        section, dot, key = name.partition(".")
        if not dot:
            rest.append(item)
            index += 1
            continue
        if section not in dict_fields:
            raise TrainingError(f"{item}: only the fields {sorted(dict_fields)} take --section.key values")
        if index + 1 >= len(argv):
            raise TrainingError(f"{item} needs a value")
        keys.append((section, key, _json_value(argv[index + 1])))
        index += 2
    return rest, keys


def _read_config_file(path: str, config_class: type) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise TrainingError(f"--config {path}: cannot be read as JSON ({error})") from None
    if not isinstance(data, dict):
        raise TrainingError(f"--config {path}: expected a JSON object of {config_class.__name__} fields")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(config_class)})
    if unknown:
        raise TrainingError(f"unknown config field(s) {unknown} in {path} (--help lists every field)")
    return data


def run_cli(program: str, parse: Callable[[list[str] | None], tuple[Any, bool]], train: Callable[..., Any],
            argv: list[str] | None = None) -> int:
    """Parse, train, and end a training or config error in one line and exit status 2, Ctrl-C in one line and 130
    (checkpoints are written atomically, so the last one is intact)."""
    from image_tokenizer.errors import command_line_options

    config = None
    try:
        config, resume = parse(argv)
        with command_line_options():  # messages name --max-pixels, not max_pixels=
            if resume:
                train(config, resume=True)
            else:
                train(config)
    except SystemExit as stop:  # --help
        return stop.code if isinstance(stop.code, int) else 0
    except (TrainingError, ValueError, OSError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" in {config.output_dir}" if config is not None else ""
        print(f"{program}: interrupted; the last checkpoint{where} is intact, continue with --resume", file=sys.stderr)
        return 130
    return 0
