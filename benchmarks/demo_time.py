"""The demo as a user runs it (`image-tokenizer demo`: every bundled model, the 12 M-parameter prior included), timed
in a fresh process, and checked: every file it promises is written, shapes-64 reconstructs the held-out shapes, and
emoji-64-small the held-out emoji (above 24 dB). The test suite runs the same demo with a tiny prior in place of the
bundled one (tests/test_cli.py::test_demo_runs_end_to_end); this is its full-size run.

    python benchmarks/demo_time.py                    # on 2 otherwise idle cores, as the README's promise is measured

Writes benchmarks/results/NAME.{json,md} (NAME: demo_time, or --name); exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results  # noqa: E402

FILES = ("reconstructions.png", "ids.json", "generated.png", "completions.png", "emoji_reconstructions.png")
EMOJI_FLOOR_DB = 24.0  # 27.8 dB when emoji-64-small was bundled; the shapes models score 11-13 dB on emoji


def run_demo(extra: list[str]) -> dict:
    """One `image-tokenizer demo` in a fresh process: wall and CPU seconds, its printout, the files it wrote."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "demo_output"
        command = [sys.executable, "-m", "image_tokenizer.cli", "demo", "--output-dir", str(out), *extra]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        written = [name for name in FILES if (out / name).is_file()]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"exit_status": done.returncode, "wall_s": wall, "cpu_s": cpu, "load_before": load,
            "load_after": os.getloadavg()[0], "stdout": done.stdout, "stderr_tail": done.stderr[-2000:], "written": written}


def stages(stdout: str) -> dict:
    """The demo's own figures: mean PSNRs and the seconds each stage printed."""
    found = {}
    patterns = {
        "shapes_psnr_db": r"held-out shapes images in [\d.]+ s; mean PSNR ([\d.]+) dB",
        "encode_decode_s": r"held-out shapes images in ([\d.]+) s",
        "generate_s": r"generated \d+ images in ([\d.]+) s",
        "complete_s": r"half-images 3 ways in ([\d.]+) s",
        "emoji_psnr_db": r"held-out emoji .*?mean PSNR ([\d.]+) dB",
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, stdout)
        found[key] = float(match.group(1)) if match else None
    return found


def problems_of(run: dict, figures: dict) -> list[str]:
    problems = [] if run["exit_status"] == 0 else [f"the demo exited {run['exit_status']}: {run['stderr_tail'][-300:]}"]
    problems += [f"{name} was not written" for name in FILES if name not in run["written"]]
    problems += [f"no {key} in the demo's printout" for key, value in figures.items() if value is None]
    if figures["emoji_psnr_db"] is not None and figures["emoji_psnr_db"] <= EMOJI_FLOOR_DB:
        problems.append(f"emoji-64-small: {figures['emoji_psnr_db']} dB, not above {EMOJI_FLOOR_DB}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, help="held-out shapes images (default: the demo's own, 8)")
    parser.add_argument("--name", default="demo_time")
    parser.add_argument("--output-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    run = run_demo(["--num", str(args.num)] if args.num else [])
    figures = stages(run["stdout"])
    problems = problems_of(run, figures)
    command = "python benchmarks/demo_time.py " + " ".join(sys.argv[1:])
    machine = machine_info()
    lines = [
        "# The demo as a user runs it (`image-tokenizer demo`, every bundled model)",
        "",
        f"Command: `{command.strip()}`",
        machine_line(machine) + f"; load average {run['load_before']:.1f} before, {run['load_after']:.1f} after; "
        f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}",
        "",
        "| wall | CPU (user + sys) | encode + decode | generate (20 images, guidance 2) | complete (3 ways) | shapes PSNR | emoji PSNR |",
        "|---|---|---|---|---|---|---|",
        f"| {run['wall_s']:.1f} s | {run['cpu_s']:.1f} s | {figures['encode_decode_s']} s | {figures['generate_s']} s "
        f"| {figures['complete_s']} s | {figures['shapes_psnr_db']} dB | {figures['emoji_psnr_db']} dB |",
        "",
        "Checks: " + ("every file written, emoji above 24 dB." if not problems else "; ".join(problems)),
    ]
    write_results(args.output_dir, args.name, {"command": command, "machine": machine, **figures,
                                                **{k: v for k, v in run.items() if k != "stdout"},
                                                "problems": problems}, lines)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
