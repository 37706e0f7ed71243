"""Hostile files (issue 37): every attack of the hostile-file tests, what it raised, its one line and its peak.

    python benchmarks/hostile_files.py

Runs tests/test_hostile_*.py with the memory-capped worker of tests/hostile.py recording each call (the peak is
that call's own resident high-water mark, torch's ~260 MiB included), then writes
benchmarks/results/hostile_files.{json,md}: one row per call, and the largest peak of all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

TEST_FILES = ["tests/test_hostile_files.py", "tests/test_hostile_paths.py", "tests/test_hostile_tensors.py",
              "tests/test_hostile_text.py"]
COMMAND = "python benchmarks/hostile_files.py"


def run_tests(report: Path) -> tuple[int, float, str]:
    """Run the hostile-file tests with the worker's report switched on; (exit status, seconds, pytest's last line)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "IMAGE_TOKENIZER_HOSTILE_REPORT": str(report)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TEST_FILES], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    return done.returncode, time.perf_counter() - start, lines[-1] if lines else ""


def table(calls: list[dict]) -> list[str]:
    rows = ["| test | raised (exit) | peak MiB | one line |", "|---|---|---|---|"]
    for call in calls:
        raised = call["error_type"] or (f"exit {call['result']}" if isinstance(call["result"], int) else "returned")
        line = re.sub(r"\S*/pytest-\d+/[^/]+/", ".../", call["message"]).replace("|", "\\|")[:160]
        name = call["test"].split("::")[-1]
        rows.append(f"| {name} | {raised} | {call['peak_bytes'] / 2**20:.0f} | {line} |")
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "calls.jsonl"
        status, seconds, summary = run_tests(report)
        calls = [json.loads(line) for line in report.read_text().splitlines()] if report.is_file() else []
    calls = [c for c in calls if not c["test"].split("::")[-1].startswith("test_the_worker")]  # its own probes
    machine = machine_info()
    peak = max((c["peak_bytes"] for c in calls), default=0)
    lines = [
        "# Hostile files: refused in one line, under 1 GiB",
        "",
        f"Command: `{COMMAND}` ({', '.join(TEST_FILES)}; pytest: {summary}, {seconds:.0f} s)",
        machine_line(machine),
        "",
        (f"{len(calls)} calls in the memory-capped worker; the largest peak of any: **{peak / 2**20:.0f} MiB** "
         "(the worker alone, with torch imported, holds about 260 MiB)."),
        "",
        *table(calls),
    ]
    write_results(ROOT / "benchmarks" / "results", "hostile_files",
                  {"command": COMMAND, "machine": machine, "pytest_status": status, "pytest": summary,
                   "seconds": seconds, "largest_peak_bytes": peak, "calls": calls}, lines)
    sys.exit(status)


if __name__ == "__main__":
    main()
