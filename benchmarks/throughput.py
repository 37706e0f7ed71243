"""Encode/decode throughput of the bundled tokenizer (or any saved one), and shapes generation time.

    python benchmarks/throughput.py [--model shapes-64] [--device cpu] [--batch-size 64] [--repeats 5]

Writes benchmarks/results/throughput_<device>.json and .md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImageTokenizer
from image_tokenizer.data.shapes import TRAIN_SEED, generate_arrays


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def _describe(name: str, tokenizer: ImageTokenizer) -> str:
    c = tokenizer.config
    return (f"{name}: {c.resolution}x{c.resolution} -> {c.grid_size[0]}x{c.grid_size[1]}, ch={c.ch}, ch_mult={tuple(c.ch_mult)}, "
            f"{c.num_res_blocks} res blocks, K={c.quantizer.codebook_size}, d={c.quantizer.codebook_dim}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="shapes-64", help="bundled name or saved tokenizer directory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", type=int, default=20000)
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    tokenizer = ImageTokenizer.from_pretrained(args.model).to(args.device)
    images, _ = generate_arrays(args.batch_size, seed=TRAIN_SEED)
    ids = tokenizer.encode(images)

    encode_times = timed(lambda: tokenizer.encode(images), args.repeats)
    decode_times = timed(lambda: tokenizer.decode(ids, output_type="np"), args.repeats)
    results = {
        "command": " ".join(["python", "benchmarks/throughput.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "device": args.device,
        "config": _describe(args.model, tokenizer),
        "parameters": sum(p.numel() for p in tokenizer.model.parameters()),
        "batch_size": args.batch_size,
        "micro_batch_size": tokenizer.micro_batch_size,
        "encode_images_per_s": args.batch_size / statistics.median(encode_times),
        "decode_images_per_s": args.batch_size / statistics.median(decode_times),
        "encode_seconds": encode_times,
        "decode_seconds": decode_times,
    }
    for workers in (1, 2):
        start = time.perf_counter()
        generate_arrays(args.shapes, seed=TRAIN_SEED, num_workers=workers)
        results[f"shapes_{args.shapes}_seconds_workers_{workers}"] = time.perf_counter() - start

    lines = [
        f"# Throughput ({args.device})",
        "",
        f"Command: `{results['command']}`",
        "",
        machine_line(results["machine"]),
        "",
        "| measure | value |",
        "|---|---|",
        f"| encode, batch {args.batch_size}, 64x64 | {results['encode_images_per_s']:.1f} images/s |",
        f"| decode, batch {args.batch_size}, 64x64 | {results['decode_images_per_s']:.1f} images/s |",
        f"| generate {args.shapes} shapes images, 1 process | {results[f'shapes_{args.shapes}_seconds_workers_1']:.1f} s |",
        f"| generate {args.shapes} shapes images, 2 processes | {results[f'shapes_{args.shapes}_seconds_workers_2']:.1f} s |",
        "",
        f"Model: {results['config']}, {results['parameters']:,} parameters; median of {args.repeats} runs after a warm-up.",
    ]
    write_results(args.output_dir, f"throughput_{args.device.split(':')[0]}", results, lines)


if __name__ == "__main__":
    main()
