"""What `python training/train_prior.py` costs with its defaults: wall time, steps, seconds per step, and the time
spent outside the training steps (tokenizing the shapes data on the fly, the final evaluation, saving).

    python benchmarks/prior_default_cost.py                       # the defaults: 5,000 steps
    python benchmarks/prior_default_cost.py --time-budget-minutes 8  # as many of them as fit (the GPU queue's job)

Every setting is train_prior.py's default (PriorTrainConfig) except where a flag says otherwise; the run folder is
temporary. Writes benchmarks/results/NAME.{json,md} (NAME: prior_default_cost, or --name).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results  # noqa: E402

from training.train_prior import PriorTrainConfig, train  # noqa: E402


def measure(overrides: dict) -> dict:
    """One run of train_prior's `train` with its defaults plus `overrides`, timed."""
    with tempfile.TemporaryDirectory() as folder:
        config = PriorTrainConfig(output_dir=str(Path(folder) / "run"), progress=False, **overrides)
        start = time.perf_counter()
        result = train(config)
        wall = time.perf_counter() - start
    metrics = result["train_metrics"]
    runtime = metrics["train_runtime"]
    steps = round(metrics.get("train_steps_per_second", 0) * runtime) or config.max_steps
    return {"settings": {"max_steps": config.max_steps, "batch_size": config.batch_size,
                         "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
                         "num_train_images": config.num_train_images, "time_budget_minutes": config.time_budget_minutes},
            "wall_s": wall, "train_runtime_s": runtime, "steps": steps, "s_per_step": runtime / steps,
            "outside_training_s": wall - runtime, "train_samples_per_second": metrics.get("train_samples_per_second"),
            "bits_per_token": result.get("bits_per_token")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, help="default: train_prior's (5,000)")
    parser.add_argument("--time-budget-minutes", type=float, help="stop after this long (the budget's own rule)")
    parser.add_argument("--num-train-images", type=int, help="default: train_prior's (20,000)")
    parser.add_argument("--batch-size", type=int, help="default: train_prior's (32); smaller only for a toy run")
    parser.add_argument("--eval-images", type=int, help="default: train_prior's (1,000)")
    parser.add_argument("--sample-images", type=int, help="default: train_prior's (images sampled at the end)")
    parser.add_argument("--name", default="prior_default_cost")
    parser.add_argument("--output-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    given = {"max_steps": args.max_steps, "time_budget_minutes": args.time_budget_minutes,
             "num_train_images": args.num_train_images, "batch_size": args.batch_size, "eval_images": args.eval_images,
             "sample_images": args.sample_images}
    figures = measure({k: v for k, v in given.items() if v is not None})
    command = "python benchmarks/prior_default_cost.py " + " ".join(sys.argv[1:])
    machine = machine_info()
    s = figures["settings"]
    lines = [
        "# train_prior.py with its defaults: what a run costs",
        "",
        f"Command: `{command.strip()}`",
        machine_line(machine),
        "",
        f"Model: {s['num_hidden_layers']} layers of width {s['hidden_size']}, batch {s['batch_size']}, "
        f"{s['num_train_images']:,} shapes images tokenized on the fly.",
        "",
        "| steps run | of max_steps | seconds per step | training | outside the steps (tokenize, evaluate, save) | wall | samples/s |",
        "|---|---|---|---|---|---|---|",
        f"| {figures['steps']:,} | {s['max_steps']:,} | {figures['s_per_step']:.3f} | {figures['train_runtime_s']:.0f} s "
        f"| {figures['outside_training_s']:.0f} s | {figures['wall_s']:.0f} s | {figures['train_samples_per_second']} |",
    ]
    write_results(args.output_dir, args.name, {"command": command, "machine": machine, **figures}, lines)


if __name__ == "__main__":
    main()
