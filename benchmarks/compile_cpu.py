"""Does torch.compile pay on this CPU? Eager against inductor, on the setup of benchmarks/peers.py.

    python benchmarks/compile_cpu.py [--batch-size 8] [--repeats 3] [--variant default|freezing]

The model calls that `ImageTokenizer.compile()` wrapped (encode_ids, decode_ids), at one fixed micro-batch
(dynamic=False) and channels_last, compiled with an empty inductor cache (a temporary TORCHINDUCTOR_CACHE_DIR):
"default" is torch.compile as it is, "freezing" adds inductor's freezing (weights folded in as constants and
prepacked for oneDNN; the quantizer's lookup is in the graph either way). One variant per process: Dynamo keeps
one compiled code per function, so a second torch.compile of the same method in the same process would reuse the
first. Records each first call (the compile, cold cache), the first call again after torch._dynamo.reset() (the
on-disk cache warm), the medians of interleaved calls of eager and the variant, and the ids and pixels against
eager. Writes benchmarks/results/compile_cpu_<variant>.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-cache-"))  # before torch loads

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results
from _setup import interleaved_medians, random_pixels, randomize, setup_config

from image_tokenizer import ImageTokenizer
from image_tokenizer.modeling import VQModel

VARIANTS = {"default": {}, "freezing": {"freezing": True}}


def first_call(fn, inductor_options: dict) -> float:
    with torch._inductor.config.patch(inductor_options):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


@torch.inference_mode()
def measure(args: argparse.Namespace) -> dict:
    model = ImageTokenizer(setup_config(), randomize(VQModel(setup_config()))).model
    pixels = random_pixels(args.batch_size).contiguous(memory_format=torch.channels_last)
    ids = model.encode_ids(pixels)
    inputs = {"encode": pixels, "decode": ids}
    variant, options = args.variant, VARIANTS[args.variant]
    calls, first = {}, {}
    for step, x in inputs.items():
        method = getattr(model, f"{step}_ids")
        calls[f"{step} eager"] = lambda f=method, x=x: f(x)
        compiled = torch.compile(method, dynamic=False)
        calls[f"{step} {variant}"] = lambda f=compiled, x=x: f(x)
        first[f"{step} {variant}, cold cache"] = first_call(calls[f"{step} {variant}"], options)
    agreement = {
        "ids equal to eager": float((calls[f"encode {variant}"]() == ids).float().mean()),
        "decoded pixels, largest difference to eager": (calls[f"decode {variant}"]() - calls["decode eager"]()).abs().max().item(),
    }
    load_before = os.getloadavg()[0]
    timings = interleaved_medians(calls, args.repeats)
    load_after = os.getloadavg()[0]
    torch._dynamo.reset()  # compiled again, from the on-disk caches the first round filled
    for step, x in inputs.items():
        compiled = torch.compile(getattr(model, f"{step}_ids"), dynamic=False)
        first[f"{step} {variant}, warm cache"] = first_call(lambda f=compiled, x=x: f(x), options)
        first[f"{step} eager"] = first_call(calls[f"{step} eager"], {})
    return {
        "command": " ".join(["python", "benchmarks/compile_cpu.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "setup": f"256x256, ch 64, ch_mult (1, 1, 2, 2, 4), K 16,384, batch {args.batch_size}, random weights, channels_last",
        "load_average_1min": {"before": load_before, "after": load_after},
        "repeats": args.repeats,
        "timings": timings,
        "first_call_s": first,
        "variant": variant,
        "agreement": agreement,
    }


def report(results: dict) -> list[str]:
    timings = results["timings"]
    lines = [
        "# torch.compile against eager on the CPU", "",
        f"Command: `{results['command']}`", "", machine_line(results["machine"]), "",
        (f"Setup: {results['setup']}. {results['repeats']} interleaved repeats after the first calls, medians; load "
         f"average (1 min) {results['load_average_1min']['before']:.2f} before, {results['load_average_1min']['after']:.2f} after."),
        "", "| call | median s | speed-up over eager |", "|---|---|---|",
    ]
    for name, t in timings.items():
        eager = timings[f"{name.split()[0]} eager"]["median_s"]
        lines.append(f"| {name} | {t['median_s']:.2f} | {eager / t['median_s']:.2f}x |")
    lines += ["", "| first call | s |", "|---|---|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in results["first_call_s"].items()]
    lines += ["", "Agreement: " + "; ".join(f"{name} {value:.5g}" for name, value in results["agreement"].items()) + "."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", default="default", choices=list(VARIANTS))
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    results = measure(args)
    write_results(args.output_dir, f"compile_cpu_{args.variant}", results, report(results))


if __name__ == "__main__":
    main()
