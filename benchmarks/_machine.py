"""Describe the machine a benchmark ran on, for the results files."""

from __future__ import annotations

import os
import platform
import sys

import torch


def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def machine_line(machine: dict) -> str:
    """One human line naming the machine, for the markdown results."""
    gpu = f", GPU {machine['cuda']}" if machine.get("cuda") else ""
    return f"Machine: {machine.get('cpu_model', machine.get('processor', '?'))}, {machine['cpu_count']} cores, torch {machine['torch']}{gpu}"


def write_results(out_dir, name: str, results: dict, lines: list[str]) -> None:
    """Write NAME.json (all figures) and NAME.md (the table a person reads), and print the table."""
    import json
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
