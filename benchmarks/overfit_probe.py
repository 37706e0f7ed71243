"""Can an architecture draw holes at all? Overfit it on a few shapes images and watch hole recall.

    python benchmarks/overfit_probe.py [--images 64] [--steps 1000]

Trains the CPU pilot's architecture (shapes-64-small; --model for another) from scratch (L1 + VQ loss, Adam) on a handful of training images and
evaluates on those same images: a capacity check, not generalisation. If hole recall rises here, the
architecture can represent holes and the held-out gap is training, not capacity.
Writes benchmarks/results/overfit_probe.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results  # noqa: E402

from image_tokenizer import ImageTokenizer  # noqa: E402
from image_tokenizer.data.shapes import TRAIN_SEED, generate_arrays  # noqa: E402
from image_tokenizer.evaluation import reconstruction_metrics  # noqa: E402
from image_tokenizer.image_processing import normalize, postprocess  # noqa: E402
from image_tokenizer.modeling import VQModel  # noqa: E402


@torch.no_grad()
def reconstruct(model: VQModel, x: torch.Tensor, preprocessing) -> np.ndarray:
    model.eval()
    recon = torch.cat([model(x[i : i + 64]).reconstruction for i in range(0, len(x), 64)])
    model.train()
    return postprocess(recon, preprocessing, "np")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes-64-small",
                        help="whose architecture (config) to train from scratch (the CPU pilot's by default)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    config = ImageTokenizer.from_pretrained(args.model).config
    model = VQModel(config).train()
    images, holes = generate_arrays(args.images, seed=TRAIN_SEED)
    x = normalize(torch.from_numpy(images).permute(0, 3, 1, 2), config.preprocessing)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.9))
    generator = torch.Generator().manual_seed(args.seed)
    rows, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = x[torch.randint(0, args.images, (args.batch_size,), generator=generator)]
        output = model(batch)
        loss = (output.reconstruction - batch).abs().mean() + output.quantizer.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            metrics = reconstruction_metrics(images, reconstruct(model, x, config.preprocessing), holes)
            rows.append({"step": step, "seconds": time.perf_counter() - start, **metrics})
            print(rows[-1], flush=True)

    command = " ".join(["python", "benchmarks/overfit_probe.py", *sys.argv[1:]])
    results = {"command": command, "machine": machine_info(), "settings": vars(args), "rows": rows}
    lines = [
        f"# Overfit probe: the {args.model} architecture on {args.images} training images, scored on the same images",
        "",
        f"Command: `{command}`  ",
        machine_line(results["machine"]) + "  ",
        f"From scratch, batch {args.batch_size}, Adam lr {args.lr}, L1 + VQ loss. A capacity check: can it draw holes at all?",
        "",
        "| step | PSNR (dB) | SSIM | hole recall |",
        "|---|---|---|---|",
        *[f"| {r['step']} | {r['psnr_db']:.2f} | {r['ssim']:.3f} | {r['hole_recall']:.3f} |" for r in rows],
    ]
    write_results(args.output_dir, "overfit_probe", results, lines)


if __name__ == "__main__":
    main()
