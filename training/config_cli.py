"""Command-line configs for the training scripts: a JSON file of dataclass fields, then --field VALUE overrides."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class TrainingError(RuntimeError):
    """The run cannot continue (non-finite loss, bad config); the message says why and where."""


def parse_config(config_class: type, argv: list[str] | None, description: str | None) -> tuple[Any, bool]:
    """--config FILE, then --field VALUE / --section.field VALUE overrides (VALUE parsed as JSON when it can
    be); returns (config_class instance, whether --resume was given)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"JSON config (fields of {config_class.__name__})")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    args, overrides = parser.parse_known_args(argv)
    data: dict[str, Any] = {}
    if args.config:
        data = json.loads(Path(args.config).read_text())
    if len(overrides) % 2:
        raise TrainingError(f"overrides come in pairs --field VALUE, got {overrides}")
    names = {f.name for f in dataclasses.fields(config_class)}
    for flag, raw in zip(overrides[::2], overrides[1::2]):
        if not flag.startswith("--"):
            raise TrainingError(f"expected --field, got {flag!r}")
        key = flag[2:].replace("-", "_")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        section, _, sub = key.partition(".")
        if section not in names:
            raise TrainingError(f"unknown config field {section!r}; known: {sorted(names)}")
        if sub:
            data.setdefault(section, {})[sub] = value
        else:
            data[section] = value
    unknown = sorted(set(data) - names)
    if unknown:
        raise TrainingError(f"unknown config field(s) {unknown} in {args.config}")
    return config_class(**data), args.resume


def run_cli(program: str, parse: Callable[[list[str] | None], tuple[Any, bool]], train: Callable[..., Any],
            argv: list[str] | None = None) -> int:
    """Parse, train, and turn a training or config error into one readable line and exit status 2."""
    try:
        config, resume = parse(argv)
        if resume:
            train(config, resume=True)
        else:
            train(config)
    except (TrainingError, ValueError, OSError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    return 0
