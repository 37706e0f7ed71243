"""Encode/decode throughput of a tokenizer: the public path from each input form, the model alone, bf16 and
torch.compile, with the id agreement of every fast variant against the plain one.

    python benchmarks/throughput.py [--model shapes-64] [--device cpu|cuda] [--batch-size N] [--repeats 5]
        [--variants plain,bf16,compiled,bf16-compiled]   (default: plain on CPU, all on a GPU) [--profile]

Writes benchmarks/results/throughput_<device>.json and .md (or --name NAME); --profile adds where the time of
one public encode from a uint8 tensor goes, per operator (torch.profiler).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImageTokenizer
from image_tokenizer.data.shapes import TRAIN_SEED, generate_arrays


def timed(fn, repeats: int) -> float:
    """Median seconds of fn after one warm-up (which also compiles), synchronising a GPU around each run."""
    fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def model_alone(tokenizer: ImageTokenizer, pixels: torch.Tensor, repeats: int, fast: bool) -> float:
    """Images/s of encoder + quantizer on one normalised batch: fp32, or bf16 autocast + channels_last +
    torch.compile (the ceiling the issue measured)."""
    model, x = tokenizer.model, pixels.contiguous(memory_format=torch.channels_last)
    fn = model.encode_ids
    if fast:
        model.to(memory_format=torch.channels_last)
        compiled = torch.compile(model.encode_ids, dynamic=False)

        def fn(batch):
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return compiled(batch)

    return x.shape[0] / timed(lambda: fn(x), repeats)


def encode_profile(tokenizer: ImageTokenizer, images: torch.Tensor, rows: int = 15) -> list[dict]:
    """The operators that take the most time in one public encode call (after a warm-up), by self time on the
    device (GPU time on a GPU, CPU time otherwise)."""
    from torch.profiler import ProfilerActivity, profile

    tokenizer.encode(images)
    on_gpu = images.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        tokenizer.encode(images)
        if on_gpu:
            torch.cuda.synchronize()
    key = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:rows]
    return [{"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3,
             "self_device_ms": getattr(e, "self_device_time_total", 0) / 1e3} for e in events]


def _describe(name: str, tokenizer: ImageTokenizer) -> str:
    c = tokenizer.config
    return (f"{name}: {c.resolution}x{c.resolution} -> {c.grid_size[0]}x{c.grid_size[1]}, ch={c.ch}, ch_mult={tuple(c.ch_mult)}, "
            f"{c.num_res_blocks} res blocks, K={c.quantizer.codebook_size}, d={c.quantizer.codebook_dim}")


def measure(args: argparse.Namespace) -> dict:
    device, n = args.device, args.batch_size
    tokenizer = ImageTokenizer.from_pretrained(args.model).to(device)
    arrays, _ = generate_arrays(n, seed=TRAIN_SEED)  # uint8 [n, H, W, 3]
    on_device = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous().to(device)
    pils = [Image.fromarray(a) for a in arrays]
    rates: dict[str, float] = {}
    ids = tokenizer.encode(on_device)
    rates["encode, uint8 tensor on the device"] = n / timed(lambda: tokenizer.encode(on_device), args.repeats)
    rates["encode, numpy uint8 batch"] = n / timed(lambda: tokenizer.encode(arrays), args.repeats)
    rates["encode, list of PIL images"] = n / timed(lambda: tokenizer.encode(pils), max(1, args.repeats // 2))
    rates["decode, ids to uint8 arrays"] = n / timed(lambda: tokenizer.decode(ids, output_type="np"), args.repeats)
    pixels = tokenizer.preprocess(arrays)[0]
    normalised = torch.stack(pixels).to(device)
    rates["model alone, fp32, one batch"] = model_alone(tokenizer, normalised, args.repeats, fast=False)
    agreement = {"numpy batch vs PIL list": float((tokenizer.encode(arrays) == tokenizer.encode(pils)).float().mean())}
    if device != "cpu":
        cpu_ids = ImageTokenizer.from_pretrained(args.model).encode(arrays[:256])
        agreement[f"{device} vs cpu (256 images)"] = float((ids[:256] == cpu_ids).float().mean())
    if "bf16" in args.variants:
        fast = ImageTokenizer.from_pretrained(args.model, dtype=torch.bfloat16).to(device)
        rates["encode, uint8 tensor on the device, bf16"] = n / timed(lambda: fast.encode(on_device), args.repeats)
        agreement["bf16 vs fp32"] = float((fast.encode(on_device) == ids).float().mean())
    for variant, dtype in (("compiled", torch.float32), ("bf16-compiled", torch.bfloat16)):
        if variant in args.variants:
            label = "compile" if dtype == torch.float32 else "bf16 + compile"
            compiled = ImageTokenizer.from_pretrained(args.model, dtype=dtype).to(device).compile(force=True)
            rates[f"encode, uint8 tensor on the device, {label}"] = n / timed(lambda c=compiled: c.encode(on_device), args.repeats)
            rates[f"decode, {label}"] = n / timed(lambda c=compiled: c.decode(ids, output_type="np"), args.repeats)
            agreement[f"{label} vs fp32"] = float((compiled.encode(on_device) == ids).float().mean())
    if "bf16-compiled" in args.variants:
        rates["model alone, bf16 autocast + channels_last + compile"] = model_alone(
            ImageTokenizer.from_pretrained(args.model).to(device), normalised, args.repeats, fast=True)
    profile_rows = encode_profile(tokenizer, on_device) if args.profile else None
    return {
        "command": " ".join(["python", "benchmarks/throughput.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "device": device,
        "config": _describe(args.model, tokenizer),
        "parameters": sum(p.numel() for p in tokenizer.model.parameters()),
        "batch_size": n,
        "micro_batch_size": tokenizer.micro_batch_for(*arrays.shape[1:3]),
        "images_per_s": rates,
        "id_agreement": agreement,
        "encode_profile": profile_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes-64", help="bundled name or saved tokenizer directory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="images per call (default 64 on CPU, 4096 on a GPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", default=None, help="comma-separated: plain, bf16, compiled, bf16-compiled")
    parser.add_argument("--profile", action="store_true", help="add the per-operator profile of one public encode")
    parser.add_argument("--name", help="results file name (default throughput_<device>)")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    on_cpu = args.device == "cpu"
    args.batch_size = args.batch_size or (64 if on_cpu else 4096)
    args.variants = set((args.variants or ("plain" if on_cpu else "plain,bf16,compiled,bf16-compiled")).split(","))

    results = measure(args)
    rates = results["images_per_s"]
    lines = [
        f"# Throughput ({args.device})",
        "",
        f"Command: `{results['command']}`",
        "",
        machine_line(results["machine"]),
        "",
        f"| measure (batch {args.batch_size}, micro-batch {results['micro_batch_size']}) | images/s |",
        "|---|---|",
        *[f"| {name} | {rate:,.1f} |" for name, rate in rates.items()],
        "",
        "Share of ids equal: " + "; ".join(f"{name}: {value:.5f}" for name, value in results["id_agreement"].items()) + ".",
        "",
        f"Model: {results['config']}, {results['parameters']:,} parameters; median of {args.repeats} runs after a warm-up.",
    ]
    if results["encode_profile"]:
        lines += ["", (f"Where one public encode of {args.batch_size} uint8 images on the device spends its time "
                       "(torch.profiler, self time, top operators):"), "",
                  "| operator | calls | self CPU ms | self device ms |", "|---|---|---|---|",
                  *[f"| `{r['op']}` | {r['calls']} | {r['self_cpu_ms']:.1f} | {r['self_device_ms']:.1f} |"
                    for r in results["encode_profile"]]]
    write_results(args.output_dir, args.name or f"throughput_{args.device.split(':')[0]}", results, lines)


if __name__ == "__main__":
    main()
