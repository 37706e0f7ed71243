"""`image-tokenizer` command line: the parser and `main`; each command group lives in its own module.

User mistakes end in one line on stderr and exit status 2, never a traceback; Ctrl-C in one line and 130. Anything
else is our bug: one line saying so, with the path of a file holding the traceback, and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence

from .. import __version__
from ..errors import ImageTokenizerError, command_line_options
from . import codec, data, demo, prior


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (and exit status 2), like every other user mistake."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The image-tokenizer command line: one sub-command per job, grouped as in the help."""
    parser = OneLineParser(prog="image-tokenizer", description="Turn images into token ids and back.")
    parser.add_argument("--version", action="version", version=f"image-tokenizer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    codec.add_commands(sub)
    data.add_commands(sub)
    prior.add_commands(sub)
    codec.add_convert_command(sub)
    demo.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a bad flag (already reported in one line)
        return stop.code if isinstance(stop.code, int) else 2
    if getattr(args, "progress", True) is False:
        import datasets

        datasets.disable_progress_bars()  # --no-progress means every bar, datasets' included
    try:
        with command_line_options():  # messages name --flags, not Python keywords
            args.func(args)
    except BrokenPipeError:  # `info | head`: the reader has gone; stop quietly, as a tool killed by SIGPIPE does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141
    except (ImageTokenizerError, OSError) as error:
        print(f"image-tokenizer {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("image-tokenizer: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 (not the user's mistake: report it as our bug, in one line)
        report = write_traceback(argv)
        print(f"image-tokenizer {args.command}: internal error ({type(error).__name__}), a bug in image-tokenizer; "
              f"the traceback is in {report}; please report it with that file", file=sys.stderr)
        return 1
    return 0


def write_traceback(argv: Sequence[str] | None) -> str:
    """Write the command line and the current exception's traceback to a new file in the temp folder; its path."""
    handle, path = tempfile.mkstemp(prefix="image-tokenizer-crash-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as report:
        report.write(f"image-tokenizer {__version__}\ncommand: {list(sys.argv[1:] if argv is None else argv)}\n\n")
        report.write(traceback.format_exc())
    return path

