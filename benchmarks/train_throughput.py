"""Stage-1 training throughput: training/train_tokenizer.py with the shapes64.json recipe, GAN on from step 0,
under each speed setting. Images/s come from the run's own metrics.jsonl, after the first logging interval
(warm-up, compilation).

    python benchmarks/train_throughput.py [--steps 200] [--variants baseline,recipe,fast,compiled] [--num-images 4096]

Variants: baseline (shapes64.json without its speed options: data made in the step, contiguous memory),
recipe (shapes64.json as it is: batch 64, channels_last, 4 DataLoader workers, bf16 on a GPU), fast (the
recipe at batch 256), compiled (fast + torch.compile). On CPU the default is baseline and recipe at fp32.
Writes benchmarks/results/train_throughput_<device>.{json,md} (or --name NAME).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from training.train_tokenizer import TrainConfig, train

VARIANTS = {
    "baseline": {"channels_last": False, "num_workers": 0},  # the recipe before the speed options (955 images/s on an H100)
    "recipe": {},
    "fast": {"channels_last": True, "num_workers": 4, "batch_size": 256},
    "compiled": {"channels_last": True, "num_workers": 4, "batch_size": 256, "compile": "inductor"},
}


def run(variant: str, steps: int, on_gpu: bool, folder: Path, num_images: int = 4096, batch_size: int | None = None,
        model_ch: int | None = None) -> dict:
    recipe = json.loads((ROOT / "training" / "configs" / "shapes64.json").read_text())
    if model_ch:  # a toy run: the recipe's model narrowed (GroupNorm in groups of 8 fits any width from 8)
        recipe["model"].update(ch=model_ch, norm_groups=8)
    recipe["loss"].update(disc_start=0, gan_start=0)  # the GAN is on: the expensive part of the recipe
    recipe.update(
        output_dir=str(folder / variant), steps=steps, log_every=max(1, steps // 5), image_every=0, checkpoint_every=0,
        num_train_images=num_images, eval_images=0, kmeans_init=False, progress=False, mixed_precision="bf16" if on_gpu else "no",
        **VARIANTS[variant],
    )
    recipe["batch_size"] = batch_size or recipe["batch_size"]
    config = TrainConfig(**recipe)
    train(config)  # eval_images=0: no final evaluation (it reconstructs 1,000 images and times nothing)
    rows = [json.loads(line) for line in (folder / variant / "metrics.jsonl").read_text().splitlines()]
    rates = [row["images_per_s"] for row in rows[1:]]  # the first interval holds warm-up and compilation
    return {"batch_size": config.batch_size, "images_per_s": statistics.median(rates), "each_interval": rates,
            "settings": VARIANTS[variant], "mixed_precision": config.mixed_precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="steps per variant (default 200 on a GPU, 10 on CPU)")
    parser.add_argument("--variants", default=None, help="comma-separated: baseline, recipe, fast, compiled")
    parser.add_argument("--num-images", type=int, default=4096, help="training images made for the runs")
    parser.add_argument("--batch-size", type=int, help="one batch size for every variant (a toy run)")
    parser.add_argument("--model-ch", type=int, help="the model's base width instead of the recipe's 64 (a toy run)")
    parser.add_argument("--name", help="results file name (default train_throughput_<device>)")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    on_gpu = torch.cuda.is_available()
    steps = args.steps or (200 if on_gpu else 10)
    variants = (args.variants or ("baseline,recipe,fast,compiled" if on_gpu else "baseline,recipe")).split(",")
    with tempfile.TemporaryDirectory() as tmp:
        measured = {variant: run(variant, steps, on_gpu, Path(tmp), args.num_images, args.batch_size, args.model_ch)
                    for variant in variants}
    device = "cuda" if on_gpu else "cpu"
    results = {
        "command": " ".join(["python", "benchmarks/train_throughput.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "steps": steps,
        "model_ch": args.model_ch,
        "variants": measured,
    }
    lines = [
        f"# Stage-1 training throughput ({device}, shapes64.json, GAN on)",
        "",
        f"Command: `{results['command']}`",
        "",
        machine_line(results["machine"]),
        "",
        "| variant | batch | precision | settings | images/s (median over logging intervals) |",
        "|---|---|---|---|---|",
        *[f"| {name} | {m['batch_size']} | {m['mixed_precision']} | {m['settings'] or 'as in the recipe'} | {m['images_per_s']:,.1f} |"
          for name, m in measured.items()],
        "",
        f"{steps} steps per variant; the first of five logging intervals (warm-up, compilation) is left out."
        + (f" The model narrowed to ch {args.model_ch} (a toy run)." if args.model_ch else ""),
    ]
    write_results(args.output_dir, args.name or f"train_throughput_{device}", results, lines)


if __name__ == "__main__":
    main()
