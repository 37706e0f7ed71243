"""Codebook size and lookup dimension, chosen by measurement: our default quantizer at several (K, d).

    python benchmarks/codebook_sweep.py [--sizes 256 1024 4096] [--dims 4 8 16] [--steps 500]

Same encoder/decoder, data, seed and steps as benchmarks/quantizers.py (its settings and training loop);
only the codebook size K and the lookup dimension d change. Sizes are swept at the middle dimension and
dimensions at the middle size (a cross, not the full grid). Writes benchmarks/results/codebook_sweep.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results
from quantizers import add_training_arguments, run  # also puts the repository root on sys.path

from image_tokenizer.data.shapes import HELDOUT_SEED, TRAIN_SEED, generate_arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--dims", type=int, nargs="+", default=[4, 8, 16])
    add_training_arguments(parser)
    args = parser.parse_args()

    middle_size, middle_dim = args.sizes[len(args.sizes) // 2], args.dims[len(args.dims) // 2]
    points = [(k, middle_dim) for k in args.sizes] + [(middle_size, d) for d in args.dims if d != middle_dim]
    train_images, _ = generate_arrays(args.train_images, seed=TRAIN_SEED, num_workers=2)
    held, holes = generate_arrays(args.heldout_images, seed=HELDOUT_SEED)
    rows = []
    for k, d in points:
        print(f"K={k} d={d} ...", flush=True)
        point_args = argparse.Namespace(**{**vars(args), "codebook_size": k, "codebook_dim": d})
        row = run("c_ours_default", point_args, train_images, held, holes)
        rows.append({"codebook_size": k, "codebook_dim": d, "bits_per_image": int(256 * math.log2(k)), **row})
        print(rows[-1], flush=True)

    command = " ".join(["python", "benchmarks/codebook_sweep.py", *sys.argv[1:]])
    results = {"command": command, "machine": machine_info(), "settings": vars(args), "rows": rows}
    lines = [
        "# Codebook size and lookup dimension (shapes 64x64 -> 16x16, our default quantizer)",
        "",
        f"Command: `{command}`  ",
        machine_line(results["machine"]) + "  ",
        f"Encoder/decoder ch={args.ch}, z={args.z_channels}, seed {args.seed}, {args.steps} steps of batch "
        f"{args.batch_size}, lr {args.lr}, L1 + VQ loss, l2-normalised codes, dead-code restart; metrics on "
        f"{args.heldout_images} held-out images. Usage is the share of the K codes used on the held-out set.",
        "",
        "| K | d | bits/image | PSNR (dB) | usage | perplexity | hole recall | s/step |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['codebook_size']} | {r['codebook_dim']} | {r['bits_per_image']} | {r['heldout_psnr_db']:.2f} | "
            f"{r['heldout_codebook_usage']:.3f} | {r['heldout_perplexity']:.1f} | {r['heldout_hole_recall']:.3f} | "
            f"{r['seconds_per_step']:.3f} |"
            for r in rows
        ],
    ]
    name = "codebook_sweep" if args.seed == 0 else f"codebook_sweep_seed{args.seed}"
    write_results(args.output_dir, name, results, lines)


if __name__ == "__main__":
    main()
