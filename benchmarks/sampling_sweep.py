"""Choose a prior's sampling defaults by measurement: Fréchet distance of class-conditional samples per setting.

    python benchmarks/sampling_sweep.py [--prior shapes-64-prior] [--num 250] \
        [--settings temperature=1.0 temperature=0.8,top_k=200 ...] [--set-defaults DIR]

The reference is the *second* held-out set (seed 2) and its labels, not the seed-1 set that
generation_quality.py reports against, so the chosen setting is not tuned on the figures it is judged by.
Each setting samples --num images with the same seed and labels. --set-defaults writes the best unguided
setting (lowest distance; plain generate has no null class to guide against) into the prior saved in DIR
(its generation_config.json and card).
Writes benchmarks/results/sampling_sweep.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImagePrior
from image_tokenizer.data.shapes import generate
from image_tokenizer.shapes_classifier import ShapesClassifier, frechet_distance

REFERENCE_SEED = 2
DEFAULT_SETTINGS = ["temperature=1.0", "temperature=0.9", "temperature=0.8", "temperature=0.7",
                    "temperature=1.0,top_k=100", "temperature=0.9,top_k=100", "temperature=1.0,top_p=0.9"]


def parse_setting(text: str) -> dict:
    """'temperature=0.8,top_k=100' -> {"temperature": 0.8, "top_k": 100}."""
    setting = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        setting[key.strip()] = int(value) if key.strip() == "top_k" else float(value)
    return setting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", default="shapes-64-prior")
    parser.add_argument("--classifier", default="shapes-classifier")
    parser.add_argument("--num", type=int, default=250)
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    parser.add_argument("--set-defaults", metavar="DIR", help="save the best setting as the prior's defaults in DIR")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.set_defaults and all("guidance_scale" in text for text in args.settings):
        parser.error("--set-defaults needs at least one setting without guidance_scale (a default cannot carry guidance)")

    prior = ImagePrior.from_pretrained(args.prior, device=args.device)
    classifier = ShapesClassifier.from_pretrained(args.classifier)
    samples = list(generate(args.num, REFERENCE_SEED))
    reference = classifier.embed(np.stack([s.image for s in samples]))
    counts = np.array([s.num_shapes for s in samples])
    values = [int(v) for v in prior.layout.class_names]
    labels = np.array([values.index(int(c)) for c in counts])
    rows = []
    for text in args.settings:
        setting = parse_setting(text)
        start = time.perf_counter()
        images = prior.generate(args.num, seed=21, class_labels=labels, batch_size=250, output_type="np", **setting)
        distance = frechet_distance(reference, classifier.embed(images))
        hits = float((classifier.predict_counts(images).sum(1) == counts).mean())
        rows.append({"setting": text, "frechet_distance": distance, "count_hits": hits,
                     "seconds": time.perf_counter() - start})
        print(f"{text}: Fréchet distance {distance:.2f}, count hits {hits:.3f}", flush=True)
    best = min(rows, key=lambda row: row["frechet_distance"])
    unguided = [row for row in rows if "guidance_scale" not in row["setting"]]  # guidance cannot be a default
    best_unguided = min(unguided, key=lambda row: row["frechet_distance"]) if unguided else None
    results = {
        "command": " ".join(["python", "benchmarks/sampling_sweep.py", *sys.argv[1:]]),
        "machine": machine_info(), "prior": args.prior, "images_per_setting": args.num,
        "reference": f"{args.num} held-out shapes images, seed {REFERENCE_SEED}, and their labels",
        "settings": rows, "best": best["setting"],
        "best_unguided": best_unguided and best_unguided["setting"],
    }
    lines = [
        f"# Sampling sweep: {args.prior}", "", f"Command: `{results['command']}`  ", machine_line(results["machine"]) + "  ",
        (f"Class-conditional samples ({args.num} per setting; guidance only where a setting names guidance_scale) vs {results['reference']}. "
         f"At {args.num} images the distance carries a small-sample bias, so compare rows, not absolute values."), "",
        "| setting | Fréchet distance | count hits |", "|---|---|---|",
        *[f"| {r['setting']} | {r['frechet_distance']:.2f} | {r['count_hits']:.3f} |" for r in rows],
        "", f"Best: `{best['setting']}`. Best without guidance (a default cannot carry guidance): "
        + (f"`{best_unguided['setting']}`." if best_unguided else "none swept."),
    ]
    write_results(args.output_dir, "sampling_sweep", results, lines)
    if args.set_defaults:
        saved = ImagePrior.from_pretrained(args.set_defaults, dtype="auto")  # re-saved in the dtype it is stored in
        saved.set_sampling_defaults(**{"temperature": 1.0, "top_k": None, "top_p": 1.0, **parse_setting(best_unguided["setting"])})
        saved.save_pretrained(args.set_defaults)


if __name__ == "__main__":
    main()
