"""Per-op CPU profile of encoding and decoding, before and after keeping the network in channels_last.

    python benchmarks/op_profile.py [--batch-size 8] [--repeats 3] [--top 12]

The setup of benchmarks/peers.py (256x256, ch 64, K 16,384, random weights). "nchw" is the layout before issue 32:
NCHW weights, pixels passed in channels_last, looked-up codes NCHW (so the whole decoder ran NCHW).
"channels_last" is today's: weights, pixels and codes channels_last, every layer after them too. Both models hold
the same weights; their calls are timed interleaved, then each is profiled once with torch.profiler. Writes
benchmarks/results/op_profile_cpu.{json,md}. op_profile_cpu_channels_last_only.{json,md} is this script's output at
commit f691c91, before SiLU and the residual additions ran in place: its "nchw" rows are the code before issue 32.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results
from _setup import interleaved_medians, peak_memory_mib, random_pixels, randomize, setup_config

from image_tokenizer import ImageTokenizer
from image_tokenizer.modeling import VQModel


def build_models() -> dict[str, VQModel]:
    config = setup_config()
    channels_last = ImageTokenizer(config, randomize(VQModel(config))).model
    nchw = VQModel(config).eval()
    nchw.load_state_dict(channels_last.state_dict())  # copied into NCHW parameters, which keep their layout
    return {"nchw": nchw, "channels_last": channels_last}


def calls(models: dict[str, VQModel], pixels: torch.Tensor, ids: torch.Tensor) -> dict[str, object]:
    """The encode and decode call of each layout, as the tokenizer made (nchw) and makes them (channels_last)."""
    nchw, last = models["nchw"], models["channels_last"]
    return {
        "encode nchw": lambda: nchw.encode_ids(pixels),
        "encode channels_last": lambda: last.encode_ids(pixels),
        "decode nchw": lambda: nchw.decode_quantized(nchw.quantizer.lookup(ids).contiguous()),
        "decode channels_last": lambda: last.decode_ids(ids),
    }


def op_table(fn, top: int) -> dict[str, list[dict]]:
    """The ops of one call, by self CPU time: per op name, and per op name and input shapes."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()

    def rows(averages) -> list[dict]:
        ranked = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
        return [{"op": e.key, "input_shapes": str(e.input_shapes) if e.input_shapes else "", "calls": e.count,
                 "self_ms": e.self_cpu_time_total / 1000} for e in ranked]

    return {"by_op": rows(prof.key_averages()), "by_op_and_shape": rows(prof.key_averages(group_by_input_shape=True))}


@torch.inference_mode()
def measure(args: argparse.Namespace) -> dict:
    models = build_models()
    pixels = random_pixels(args.batch_size).contiguous(memory_format=torch.channels_last)
    ids = models["channels_last"].encode_ids(pixels)
    named = calls(models, pixels, ids)
    load_before = os.getloadavg()
    timings = interleaved_medians(named, args.repeats)
    load_after = os.getloadavg()
    peaks = {name: peak_memory_mib(fn) for name, fn in named.items()}
    profiles = {name: op_table(fn, args.top) for name, fn in named.items()}
    nchw_ids = models["nchw"].encode_ids(pixels)
    pixel_difference = (named["decode nchw"]() - named["decode channels_last"]()).abs().max().item()
    return {
        "command": " ".join(["python", "benchmarks/op_profile.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "setup": f"{setup_config().resolution}x{setup_config().resolution}, ch 64, ch_mult (1, 1, 2, 2, 4), K 16,384, "
                 f"batch {args.batch_size}, random weights",
        "repeats": args.repeats,
        "timings": timings,
        "peak_memory_mib": peaks,
        "ids_equal_share": float((nchw_ids == ids).float().mean()),
        "decoded_pixels_max_abs_difference": pixel_difference,
        "profiles": profiles,
    }


def report(results: dict) -> list[str]:
    timings, peaks = results["timings"], results["peak_memory_mib"]
    lines = [
        "# Per-op profile, CPU: the NCHW and channels_last layouts", "",
        f"Command: `{results['command']}`", "", machine_line(results["machine"]), "",
        (f"Setup: {results['setup']}. Load average (1 min) {results['load_average_1min']['before']:.2f} before the "
         f"timings, {results['load_average_1min']['after']:.2f} after; {results['repeats']} interleaved repeats, medians."),
        "", "| call | median s | peak memory above the start, MiB |", "|---|---|---|",
        *[f"| {name} | {t['median_s']:.2f} | {peaks[name]:,.0f} |" for name, t in timings.items()], "",
        (f"Ids equal between the layouts: {results['ids_equal_share']:.5f}; decoded pixels differ by at most "
         f"{results['decoded_pixels_max_abs_difference']:.1e}."), "",
        ("The code before issue 32 (NCHW, SiLU and residual additions out of place) and channels_last alone: "
        "`op_profile_cpu_channels_last_only.md` (this script at commit f691c91)."),
    ]
    for name, profile_rows in results["profiles"].items():
        lines += ["", f"## {name}: ops by self CPU time", "", "| op | input shapes | calls | self ms |", "|---|---|---|---|"]
        lines += [f"| {r['op']} | {r['input_shapes'][:90]} | {r['calls']} | {r['self_ms']:,.0f} |"
                  for r in profile_rows["by_op_and_shape"]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=12, help="rows per profile")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    results = measure(args)
    write_results(args.output_dir, "op_profile_cpu", results, report(results))


if __name__ == "__main__":
    main()
