"""Next-scale prediction (VAR) against raster prediction, on one multiscale tokenizer trained on shapes (CPU).

    python benchmarks/next_scale_prior.py [--work runs/next_scale] [--tokenizer DIR] [--prior-steps 3000] [--num 300]

1. The tokenizer: training/train_tokenizer.py --config training/configs/shapes64_multiscale_cpu.json (scales
   1, 2, 3, 4, 6, 8 on an 8x8 grid: 130 ids an image), into WORK/tokenizer, unless WORK/tokenizer/final exists;
   or --tokenizer DIR, a saved multiscale tokenizer (e.g. a checkpoint of that run through export_checkpoint.py).
2. Its rows: `pretokenize` of shapes images (seed 0, mirrored copies added) and of a held-out set (seed 1), as
   parquet outputs whose pretokenize_info.json records the multiscale layout.
3. Two class-conditional priors (num_shapes) on those rows with training/train_prior.py, of the same PriorConfig
   (so the same parameter count: positions are RoPE, which has no weights) and the same number of steps (the
   same work: on a shared CPU the same wall-clock budget is not; --prior-minutes gives each that budget instead):
   `next_scale` (one forward pass per scale) and `raster` (the same 130 ids, one per forward pass). Both priors
   decode through the same tokenizer, so the Fréchet distances compare the priors alone; a grid tokenizer's
   raster prior would also compare two tokenizers.
4. Each prior samples --num images with the held-out set's labels (and with --guidance, when not 1): forward passes of
   the LM per batch (counted on the model), images per second (sampling, then sampling + decoding), and the
   Fréchet distance in the bundled shapes classifier's features to the held-out images (as
   benchmarks/generation_quality.py measures it), beside the floor (a second held-out set) and the tokenizer's
   reconstructions.

Writes benchmarks/results/next_scale_prior.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _machine import machine_info, machine_line, write_results
from generation_quality import shapes_reference

from image_tokenizer import ImagePrior, ImageTokenizer
from image_tokenizer.data.shapes import to_dataset
from image_tokenizer.feature_classifier import frechet_distance
from image_tokenizer.pretokenize import pretokenize

TOKENIZER_CONFIG = "training/configs/shapes64_multiscale_cpu.json"
PREDICTIONS = ("next_scale", "raster")


def add_prior_arguments(parser: argparse.ArgumentParser, prior_steps: int, repeats: int) -> None:
    """What every prior comparison on shapes sets: data, each prior's steps and sizes, sampled sets, outputs."""
    parser.add_argument("--train-images", type=int, default=2000, help="shapes images for the priors (x2 mirrored)")
    parser.add_argument("--prior-steps", type=int, default=prior_steps, help="each prior's optimizer steps (cosine to the last)")
    parser.add_argument("--repeats", type=int, default=repeats, help="sampling timings: the fastest of this many runs")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--prior-batch-size", type=int, default=16)
    parser.add_argument("--num", type=int, default=300, help="images per generated set (and held-out images)")
    parser.add_argument("--batch-size", type=int, default=150)
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/next_scale", help="the tokenizer, rows and priors go here")
    parser.add_argument("--tokenizer", help="a saved multiscale tokenizer to use instead of training one")
    add_prior_arguments(parser, prior_steps=3000, repeats=3)
    parser.add_argument("--prior-minutes", type=float, help="instead of --prior-steps: each prior's wall-clock budget "
                        "(on a shared machine the two runs then see different loads, so the same time is not the same work)")
    parser.add_argument("--guidance", type=float, default=1.0, help="a guided set too, when not 1")
    return parser.parse_args()


def train_tokenizer(work: Path) -> tuple[Path, str]:
    """The multiscale tokenizer (trained here unless already there) and the command that made it."""
    from training.train_tokenizer import main as train_main

    final = work / "tokenizer" / "final"
    argv = ["--config", TOKENIZER_CONFIG, "--output_dir", str(work / "tokenizer"), "--progress", "false"]
    if not (final / "config.json").is_file() and train_main(argv) != 0:
        raise SystemExit("tokenizer training failed")
    return final, "python training/train_tokenizer.py " + " ".join(argv)


def token_rows(tokenizer: ImageTokenizer, work: Path, train_images: int, eval_images: int) -> tuple[Path, Path]:
    """Shapes rows (seed 0, mirrored) and held-out rows (seed 1) as parquet pretokenize outputs."""
    folders = []
    for name, count, seed, flip in (("train", train_images, 0, True), ("eval", eval_images, 1, False)):
        folder = work / f"rows-{name}"
        if not (folder / "pretokenize_info.json").is_file():
            images = to_dataset(count, seed=seed).select_columns(["image", "num_shapes"])
            pretokenize(images, tokenizer, output_dir=str(folder), format="parquet", flip=flip, overwrite=True,
                        source=f"shapes seed {seed}, {count} images")
        folders.append(folder)
    return folders[0], folders[1]


def train_priors(args: argparse.Namespace, tokenizer_dir: Path, rows: tuple[Path, Path], work: Path) -> dict[str, Any]:
    """The two priors, same sizes and budget; returns their folders and training records."""
    from training.train_prior import PriorTrainConfig, train

    records = {}
    for prediction in PREDICTIONS:
        out = work / f"prior-{prediction}"
        config = PriorTrainConfig(
            output_dir=str(out), tokenizer=str(tokenizer_dir), data=str(rows[0]), eval_data=str(rows[1]),
            label_column="num_shapes", prediction=prediction, hidden_size=args.hidden_size,
            num_hidden_layers=args.layers, num_attention_heads=args.heads,
            max_steps=100000 if args.prior_minutes else args.prior_steps, batch_size=args.prior_batch_size,
            lr=1e-3, warmup_steps=100, time_budget_minutes=args.prior_minutes, eval_steps=100000,
            save_steps=100000, logging_steps=100, sample_images=16, progress=False,
        )
        if not (out / "final" / "config.json").is_file():
            start = time.perf_counter()
            result = train(config)
            (out / "train_seconds.json").write_text(f'{{"seconds": {time.perf_counter() - start:.1f}, '
                                                    f'"train_runtime": {result["train_metrics"]["train_runtime"]:.1f}}}\n')
        card = ImagePrior.from_pretrained(out / "final").card_info
        seconds = json.loads((out / "train_seconds.json").read_text())
        records[prediction] = {"folder": str(out / "final"), **card["training"], **card["metrics"],
                               "training_loop_seconds": seconds["train_runtime"]}
    return records


def sample(prior: ImagePrior, labels: list[str], guidance: float, batch_size: int, seed: int, repeats: int,
           **sampling: Any) -> dict[str, Any]:
    """Generate images for `labels` (other sampling keywords passed on), counting the LM's forward passes; ids
    time and decode time apart, each the fastest of `repeats` runs after a warm-up call (the same seed gives the
    same ids every run)."""
    prior.generate(2, seed=seed, class_labels=labels[:2], guidance_scale=guidance, output_type="np", **sampling)  # warm-up
    calls: list[int] = []
    forward = prior.model.forward
    prior.model.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    sampled = decoded = float("inf")
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            ids = prior.generate(len(labels), seed=seed, class_labels=labels, guidance_scale=guidance,
                                 batch_size=batch_size, output_type="ids", **sampling)
            sampled = min(sampled, time.perf_counter() - start)
            start = time.perf_counter()
            images = prior.tokenizer.decode(ids, output_type="np")
            decoded = min(decoded, time.perf_counter() - start)
    finally:
        del prior.model.forward
    batches = repeats * -(-len(labels) // batch_size)
    return {"images": images, "forward_passes_per_batch": len(calls) / batches, "sampling_seconds": sampled,
            "decode_seconds": decoded, "images_per_second_sampling": len(labels) / sampled,
            "images_per_second_with_decode": len(labels) / (sampled + decoded)}


def measure(args: argparse.Namespace, records: dict[str, Any], tokenizer: ImageTokenizer) -> dict[str, Any]:
    reference = shapes_reference(args.num, None)
    features = reference.classifier.embed(reference.images)

    def distance(images: np.ndarray) -> float:
        return frechet_distance(features, reference.classifier.embed(images))

    reconstructions = tokenizer.decode(tokenizer.encode(list(reference.images)), output_type="np")
    rows = {"second held-out set (floor)": {"frechet_distance": distance(reference.second)},
            "tokenizer reconstructions": {"frechet_distance": distance(reconstructions)}}
    for prediction in PREDICTIONS:
        prior = ImagePrior.from_pretrained(records[prediction]["folder"], tokenizer=tokenizer)
        for guidance in sorted({1.0, args.guidance}):
            result = sample(prior, reference.labels, guidance, args.batch_size, 11, args.repeats)
            result["frechet_distance"] = distance(result.pop("images"))
            name = f"{prediction} prior, held-out labels" + (f", guidance {guidance:g}" if guidance != 1.0 else "")
            rows[name] = {key: round(value, 4) for key, value in result.items()}
            print(name, rows[name], flush=True)
    return rows


def tokenizer_text(record: dict[str, Any]) -> str:
    """The tokenizer's training and held-out figures in a line, from its card."""
    made = f"trained by `{record['command']}`, " if "command" in record else ""
    made += f"{record.get('steps')} steps" + (f" ({record['note']})" if record.get("note") else "")
    scores = f"held-out PSNR {record.get('heldout_psnr_db')} dB, codebook usage {record.get('heldout_codebook_usage')}"
    return f"{made}; {scores}"


def report_lines(results: dict[str, Any]) -> list[str]:
    priors = results["priors"]
    lines = [
        "# Next-scale against raster prediction on shapes (CPU)",
        "",
        f"Command: `{results['command']}`  ",
        machine_line(results["machine"]) + " (shared with other jobs: times are wall clock on a loaded machine)  ",
        f"Tokenizer: `{results['tokenizer_command']}` ({results['tokenizer']}); {tokenizer_text(results['tokenizer_record'])}.  ",
        (f"Priors: {results['prior_sizes']}, {priors['next_scale']['parameters']:,} parameters each, "
         f"{results['prior_training']} each on {results['prior_rows']}. Both decode through the same "
         "tokenizer, so the distances compare the priors alone."),
        "",
        "| prior | steps | training loop (s, shared CPU) | held-out bits/id |",
        "|---|---|---|---|",
        *[f"| {name} | {p['steps']} | {p['training_loop_seconds']:.0f} | {p['heldout_bits_per_token']} |"
          for name, p in priors.items()],
        "",
        (f"Fréchet distance in the shapes classifier's features to {results['reference']}; sampling at temperature 1, "
         f"batches of {results['batch_size']}; times are the fastest of {results['repeats']} runs after a warm-up."),
        "",
        "| image set | FD | forward passes / batch | images/s (sampling) | images/s (with decode) |",
        "|---|---|---|---|---|",
    ]
    for name, row in results["rows"].items():
        cells = [row.get(key, "") for key in ("forward_passes_per_batch", "images_per_second_sampling",
                                             "images_per_second_with_decode")]
        lines.append(f"| {name} | {row['frechet_distance']:.3f} | " + " | ".join(f"{c:g}" if c != "" else "" for c in cells) + " |")
    return lines


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    work = Path(args.work)
    if args.tokenizer:
        tokenizer_dir, tokenizer_command = Path(args.tokenizer).resolve(), f"--tokenizer {args.tokenizer}"
    else:
        tokenizer_dir, tokenizer_command = train_tokenizer(work)
    tokenizer = ImageTokenizer.from_pretrained(tokenizer_dir)
    if not tokenizer.layout.kind == "multiscale":
        raise SystemExit(f"{tokenizer_dir}: not a multiscale tokenizer ({tokenizer.layout.describe()})")
    rows = token_rows(tokenizer, work, args.train_images, args.num)
    records = train_priors(args, tokenizer_dir, rows, work)
    measured = measure(args, records, tokenizer)
    results = {
        "command": " ".join(["python", "benchmarks/next_scale_prior.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "tokenizer": tokenizer.layout.describe(),
        "tokenizer_command": tokenizer_command,
        "tokenizer_record": {**tokenizer.card_info.get("metrics", {}), **tokenizer.card_info.get("training", {})},
        "prior_sizes": f"llama, hidden {args.hidden_size}, {args.layers} layers, {args.heads} heads, batch {args.prior_batch_size}",
        "prior_training": (f"{args.prior_minutes:g} min of training" if args.prior_minutes
                           else f"{args.prior_steps} steps (cosine learning rate to the last)"),
        "repeats": args.repeats,
        "prior_rows": f"{args.train_images} shapes images (seed 0) and their mirrors",
        "reference": f"{args.num} held-out shapes images (seed 1)",
        "batch_size": args.batch_size,
        "priors": records,
        "rows": measured,
    }
    write_results(args.output_dir, "next_scale_prior", results, report_lines(results))


if __name__ == "__main__":
    main()
