"""Run a call on a hostile file in a worker process whose memory is capped and measured.

One worker serves every test of a session (starting torch costs seconds, a call on a tiny file milliseconds).
Before each call it resets its peak resident size (writing 5 to /proc/self/clear_refs), so the peak it reports is
that call's. The address space is capped (RLIMIT_AS) so that a regression fails its test instead of taking the
machine: without the cap, the attacks measured in issue 37 reached 20 GB and were OOM-killed.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import resource
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ADDRESS_SPACE_LIMIT = 3 * 2**30  # torch and datasets alone map about 0.7 GiB; peaks are judged by PEAK_LIMIT
PEAK_LIMIT = 2**30  # the bound: every refusal under 1 GB of resident memory
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    """What a call did: the error it raised (type name and message) or its result, and its peak resident size."""

    error_type: str | None
    message: str
    result: Any
    peak_bytes: int
    stderr: str
    traceback: str

    def refused(self, error_type: str = "ImageTokenizerError") -> bool:
        """True when the call raised `error_type` or one of its subclasses (by name, across processes)."""
        return self.error_type is not None and error_type in self.message_types

    message_types: tuple[str, ...] = ()


class HostileWorker:
    """A child Python that runs `module:function(*args, **kwargs)` calls sent to it, one at a time."""

    def __init__(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile"], cwd=REPO, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )

    def call(self, target: str, *args: Any, **kwargs: Any) -> Outcome:
        """Run target ("package.module:function") on JSON-able arguments; paths are passed as strings."""
        request = {"target": target, "args": [_plain(a) for a in args], "kwargs": {k: _plain(v) for k, v in kwargs.items()}}
        assert self.process.stdin and self.process.stdout
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.process.wait()
            raise AssertionError(f"the worker died running {target}{tuple(args)} (exit {code}): memory or a crash")
        reply = json.loads(line)
        _record(request, reply)
        return Outcome(
            error_type=reply["error_type"], message=reply["message"], result=reply["result"],
            peak_bytes=reply["peak_bytes"], stderr=reply["stderr"], traceback=reply["traceback"],
            message_types=tuple(reply["error_mro"]),
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


REPORT_VARIABLE = "IMAGE_TOKENIZER_HOSTILE_REPORT"  # benchmarks/hostile_files.py: a JSON-lines file of every call


def _record(request: dict[str, Any], reply: dict[str, Any]) -> None:
    """Append the call and what it did to the report file, when benchmarks/hostile_files.py asks for one."""
    path = os.environ.get(REPORT_VARIABLE)
    if not path:
        return
    entry = {
        "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        "target": request["target"], "args": [str(a)[-80:] for a in request["args"]],
        "error_type": reply["error_type"], "result": reply["result"], "peak_bytes": reply["peak_bytes"],
        "message": (reply["message"] or last_line(reply["stderr"]))[:300],  # the CLI's is its last stderr line
    }
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _plain(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _peak_bytes() -> int:
    """This process's peak resident size since the last reset (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _serve() -> None:
    """The worker's loop: one JSON request per line in, one JSON reply per line out."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    import image_tokenizer
    import image_tokenizer.cli
    import image_tokenizer.converters  # noqa: F401

    replies = sys.stdout
    sys.stdout = sys.stderr  # what a call prints must not corrupt the replies
    for line in sys.stdin:
        request = json.loads(line)
        module, _, name = request["target"].partition(":")
        captured = io.StringIO()
        reply: dict[str, Any] = {"error_type": None, "error_mro": [], "message": "", "result": None, "traceback": ""}
        _reset_peak()
        try:
            with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
                result = getattr(importlib.import_module(module), name)(*request["args"], **request["kwargs"])
            reply["result"] = result if isinstance(result, (int, str, float, bool, type(None))) else repr(result)[:200]
        except BaseException as error:  # noqa: BLE001 (the test judges what was raised)
            reply["error_type"] = type(error).__name__
            reply["error_mro"] = [cls.__name__ for cls in type(error).__mro__]
            reply["message"] = str(error)[:100_000]
            reply["traceback"] = traceback.format_exc()[-5000:]
        reply["peak_bytes"] = _peak_bytes()
        reply["stderr"] = captured.getvalue()[-100_000:]
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    _serve()
