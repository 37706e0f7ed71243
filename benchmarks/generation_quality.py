"""Generation quality of the bundled prior, in the bundled shapes classifier's feature space.

    python benchmarks/generation_quality.py [--prior shapes-64-prior] [--num 1000] [--guidance 3.0]

Fréchet distance to 1,000 held-out images (seed 1) of: a second held-out set (seed 2, the floor), the
tokenizer's reconstructions of the held-out set, and 1,000 generated images (null class, and class-conditional
with the held-out set's own labels, with and without guidance). Also how often a class-conditional sample
shows the number of shapes it was asked for, by the classifier's count (and the classifier's own accuracy on
real images, the ceiling of that measure). Writes benchmarks/results/generation_quality.{json,md}.
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
from image_tokenizer.data.shapes import HELDOUT_SEED, generate
from image_tokenizer.prior import SamplingOptions
from image_tokenizer.shapes_classifier import ShapesClassifier, frechet_distance

SECOND_HELDOUT_SEED = 2


def shapes(num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    samples = list(generate(num, seed))
    return np.stack([s.image for s in samples]), np.array([s.num_shapes for s in samples])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", default="shapes-64-prior")
    parser.add_argument("--classifier", default="shapes-classifier")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--temperature", type=float, help="default: the prior's own sampling defaults")
    parser.add_argument("--top-k", type=int, help="default: the prior's")
    parser.add_argument("--top-p", type=float, help="default: the prior's")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--update-card", metavar="DIR", help="write the distances into the model card of the prior saved in DIR")
    return parser.parse_args()


def generated_sets(prior: ImagePrior, args: argparse.Namespace, options: SamplingOptions, heldout_counts: np.ndarray) -> list:
    """(name, images, class labels or None, seconds) per generated set: null class, then the held-out set's own
    labels without and with guidance (one unlabelled set for an unconditional prior)."""
    runs = [("generated", None, 1.0, 10)]
    if prior.layout.conditional:
        values = [int(v) for v in prior.layout.class_names]
        labels = np.array([values.index(int(c)) for c in heldout_counts])
        runs = [("generated, null class", None, 1.0, 10),
                ("generated, held-out labels, no guidance", labels, 1.0, 11),
                (f"generated, held-out labels, guidance {args.guidance:g}", labels, args.guidance, 12)]
    sets = []
    for name, class_labels, guidance, seed in runs:
        start = time.perf_counter()
        images = prior.generate(args.num, seed=seed, class_labels=class_labels, guidance_scale=guidance, batch_size=args.batch_size,
                                output_type="np", temperature=options.temperature, top_k=options.top_k, top_p=options.top_p)
        seconds = time.perf_counter() - start
        sets.append((name, images, class_labels, seconds))
        print(f"{name}: {seconds:.0f} s", flush=True)
    return sets


def report_lines(args: argparse.Namespace, results: dict, options: SamplingOptions) -> list[str]:
    return [
        f"# Generation quality: {args.prior} (tokenizer {results['tokenizer']})",
        "",
        f"Command: `{results['command']}`  ",
        machine_line(results["machine"]) + "  ",
        (f"Fréchet distance in the bundled shapes classifier's 128-d feature space to {results['reference']}; "
         f"{args.num} images per set. Sampling: {options.describe()}."),
        "",
        "| image set | Fréchet distance |",
        "|---|---|",
        *[f"| {name} | {value:.3f} |" for name, value in results["frechet_distance"].items()],
        "",
        "Share of images whose classifier-counted number of shapes equals the number asked for:",
        "",
        "| images | share |",
        "|---|---|",
        *[f"| {name} | {value:.3f} |" for name, value in results["requested_shape_count_accuracy"].items()],
    ]


def update_card(prior: ImagePrior, directory: str, results: dict, options: SamplingOptions) -> None:
    """Record the distances and count hits in the model card of the prior saved in `directory`."""
    from image_tokenizer.fileio import atomic_write_text
    from image_tokenizer.model_card import CARD_NAME, render_prior_card

    metrics = prior.card_info.setdefault("metrics", {})
    for name, value in results["frechet_distance"].items():
        metrics[f"frechet_distance ({name})"] = round(value, 4)
    for name, value in results["requested_shape_count_accuracy"].items():
        metrics[f"shape count as asked ({name})"] = round(value, 4)
    metrics["generation quality"] = (f"{results['images_per_set']} images per set vs {results['reference']}; {options.describe()}; "
                                     f"{results['command']}")
    atomic_write_text(Path(directory) / CARD_NAME, render_prior_card(prior, Path(directory).name, prior.card_info))


def main() -> None:
    args = parse_args()
    prior = ImagePrior.from_pretrained(args.prior, device=args.device)
    tokenizer = prior.tokenizer
    classifier = ShapesClassifier.from_pretrained(args.classifier)
    heldout, heldout_counts = shapes(args.num, HELDOUT_SEED)
    second, _ = shapes(args.num, SECOND_HELDOUT_SEED)

    def count_accuracy(images: np.ndarray) -> float:
        return float((classifier.predict_counts(images).sum(1) == heldout_counts).mean())

    sets: dict[str, np.ndarray] = {"second held-out set (floor)": second}
    start = time.perf_counter()
    sets[f"{prior.layout.tokenizer} reconstructions"] = tokenizer.decode(tokenizer.encode(list(heldout)), output_type="np")
    timings = {"reconstruct": time.perf_counter() - start}
    given = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    options = SamplingOptions.from_kwargs({k: v for k, v in given.items() if v is not None}, prior.sampling_defaults)
    accuracy = {"classifier on real held-out images (ceiling)": count_accuracy(heldout)}
    for name, images, class_labels, seconds in generated_sets(prior, args, options, heldout_counts):
        sets[name], timings[name] = images, seconds
        if class_labels is not None:
            accuracy[name] = count_accuracy(images)
    reference = classifier.embed(heldout)
    results = {
        "command": " ".join(["python", "benchmarks/generation_quality.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "prior": args.prior,
        "tokenizer": prior.layout.tokenizer,
        "images_per_set": args.num,
        "reference": f"{args.num} held-out shapes images, seed {HELDOUT_SEED}",
        "frechet_distance": {name: frechet_distance(reference, classifier.embed(images)) for name, images in sets.items()},
        "requested_shape_count_accuracy": accuracy,
        "sampling": {"temperature": options.temperature, "top_k": options.top_k, "top_p": options.top_p, "batch_size": args.batch_size},
        "seconds": timings,
    }
    write_results(args.output_dir, "generation_quality", results, report_lines(args, results, options))
    if args.update_card:
        update_card(prior, args.update_card, results, options)


if __name__ == "__main__":
    main()
