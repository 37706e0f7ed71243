"""The K = 262,144 LFQ lookup against a dense nearest-code search over the same 262,144 codes, on this CPU.

    python benchmarks/lfq_lookup.py [--images 1 16] [--repeats 5]

Rows of an Open-MAGVIT2-256-shaped grid (16 x 16 tokens of 18 channels per image). LFQ reads an id off the
signs of the 18 channels; the dense search builds the explicit {-1, +1}^18 codebook and runs our vq lookup
(chunked fp32 distances, argmin). The nearest vertex of the cube is the sign pattern, so both must give the same
ids (checked). Each measurement runs in a fresh process, so its peak memory (ru_maxrss minus the peak before the
lookup) is its own; times are medians over --repeats calls. Writes benchmarks/results/lfq_lookup.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

BITS, GRID = 18, 16


def run_one(method: str, images: int, repeats: int) -> dict:
    """Time one lookup method on `images` images' rows in this (fresh) process."""
    import torch

    from image_tokenizer import QuantizerConfig
    from image_tokenizer.modeling import build_quantizer

    torch.manual_seed(0)
    z = torch.randn(images, BITS, GRID, GRID)
    lfq = build_quantizer(BITS, QuantizerConfig(kind="lfq", bits=BITS))
    expected = lfq.encode_ids(z)
    if method == "lfq":
        lookup = lambda: lfq.encode_ids(z)
    else:
        dense = build_quantizer(BITS, QuantizerConfig(codebook_size=2**BITS, codebook_dim=BITS, distance="l2"))
        dense.set_codebook(lfq.effective_codebook())
        lookup = lambda: dense.encode_ids(z)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, ids = [], None
    for _ in range(repeats if method == "dense" else 20 * repeats):  # LFQ calls are cheap: more of them
        start = time.perf_counter()
        ids = lookup()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    seconds = statistics.median(times)
    return {"method": method, "images": images, "rows": images * GRID * GRID, "seconds": seconds, "best_seconds": min(times),
            "calls": len(times),
            "peak_added_mb": peak, "ids_equal_lfq": bool(torch.equal(ids, expected))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--method", choices=["lfq", "dense"], help=argparse.SUPPRESS)  # internal: one fresh process
    args = parser.parse_args()
    if args.method:
        print(json.dumps(run_one(args.method, args.images[0], args.repeats)))
        return
    load_before, rows = os.getloadavg()[0], []
    for images in args.images:
        for method in ("lfq", "dense"):
            command = [sys.executable, __file__, "--method", method, "--images", str(images), "--repeats", str(args.repeats)]
            done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                                  check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    command = " ".join(["python", "benchmarks/lfq_lookup.py", *sys.argv[1:]])
    load = {"before": load_before, "after": os.getloadavg()[0]}
    results = {"command": command, "machine": machine_info(), "settings": vars(args), "load_average_1min": load,
               "rows": rows}
    lines = ["# LFQ lookup at K = 262,144 against a dense nearest-code search", "",
             f"Command: `{command}`  ", machine_line(results["machine"]) + "  ",
             f"Load average (1 min) before and after: {load['before']:.1f}, {load['after']:.1f} (the CPU is shared).", "",
             (f"Rows of {GRID}x{GRID} tokens x {BITS} channels per image; dense = our chunked fp32 argmin over the explicit "
             f"2^{BITS} x {BITS} codebook. Median and best of {args.repeats} calls (LFQ: {20 * args.repeats}); peak = "
             "ru_maxrss added by the lookups. On a loaded CPU the median of tiny calls is noisy: the best is the cost."), "",
             "| method | images | rows | seconds (median) | seconds (best) | rows/s (best) | peak (+MB) | ids equal to LFQ |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['images']} | {row['rows']:,} | {row['seconds']:.5f} | "
                     f"{row['best_seconds']:.5f} | {row['rows'] / row['best_seconds']:,.0f} | {row['peak_added_mb']:.0f} | "
                     f"{row['ids_equal_lfq']} |")
    for images in args.images:
        pair = {r["method"]: r for r in rows if r["images"] == images}
        ratio = pair["dense"]["best_seconds"] / pair["lfq"]["best_seconds"]
        lines.append(f"\nAt {images} image(s): LFQ is {ratio:,.0f}x faster (best against best).")
    write_results(Path(args.output_dir), "lfq_lookup", results, lines)


if __name__ == "__main__":
    main()
