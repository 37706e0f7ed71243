"""Generation quality of a prior, in the feature space of a small classifier of the data's labels.

    python benchmarks/generation_quality.py [--prior shapes-64-prior] [--num 1000] [--guidance 3.0]
    python benchmarks/generation_quality.py --data emoji [--tokenizer emoji-64-small] [--prior DIR]

Shapes: Fréchet distance, in the bundled shapes classifier's features, to 1,000 held-out images (seed 1) of: a
second held-out set (seed 2, the floor), the tokenizer's reconstructions of the held-out set, and 1,000
generated images (null class, and class-conditional with the held-out set's own labels, with and without
guidance). Also how often a class-conditional sample shows the number of shapes it was asked for, by the
classifier's count (and the classifier's own accuracy on real images, the ceiling of that measure).

Emoji: the same in the bundled emoji group classifier's features, with the held-out emoji split in two halves
by emoji (both styles of an emoji in the same half): half A is the reference, half B the floor. Labels are
Unicode groups. Without --prior it measures the floor and the tokenizer's reconstructions only.

Writes benchmarks/results/generation_quality[_emoji].{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImagePrior, ImageTokenizer
from image_tokenizer.data.shapes import HELDOUT_SEED, generate
from image_tokenizer.feature_classifier import LabelClassifier, frechet_distance
from image_tokenizer.prior import SamplingOptions
from image_tokenizer.shapes_classifier import ShapesClassifier

SECOND_HELDOUT_SEED = 2


@dataclass
class Reference:
    """Held-out images and their labels (class names as the prior spells them), a second real set for the
    floor, and the classifier that embeds images and names their label."""

    images: np.ndarray
    labels: list[str]
    second: np.ndarray
    description: str
    classifier: Any
    label_of: Callable[[np.ndarray], list[str]]
    label_meaning: str  # what a hit means, for the report


def shapes(num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    samples = list(generate(num, seed))
    return np.stack([s.image for s in samples]), np.array([s.num_shapes for s in samples])


def shapes_reference(num: int, classifier_name: str | None) -> Reference:
    images, counts = shapes(num, HELDOUT_SEED)
    classifier = ShapesClassifier.from_pretrained(classifier_name)
    return Reference(images, [str(c) for c in counts], shapes(num, SECOND_HELDOUT_SEED)[0],
                     f"{num} held-out shapes images, seed {HELDOUT_SEED}", classifier,
                     lambda made: [str(c) for c in classifier.predict_counts(made).sum(1)],
                     "number of shapes, by the classifier's count, equals the number asked for")


def emoji_reference(resolution: int, classifier_name: str | None) -> Reference:
    """The held-out emoji split in two halves by emoji key: half A the reference, half B the floor."""
    from image_tokenizer.data.emoji import emoji_dataset, emoji_key

    data = emoji_dataset("test", resolution=resolution)
    half_b = np.array([zlib.crc32(emoji_key(s).encode()) // 10 % 2 == 1 for s in data["sequence"]])
    images = np.stack([np.asarray(image) for image in data["image"]])
    classifier = LabelClassifier.from_pretrained(classifier_name)
    names = list(classifier.config.class_names)
    return Reference(images[~half_b], [g for g, b in zip(data["group"], half_b) if not b], images[half_b],
                     f"half A of the held-out emoji ({int((~half_b).sum())} images; half B, {int(half_b.sum())}, is the floor)",
                     classifier, lambda made: [names[i] for i in classifier.predict(made)],
                     "Unicode group, by the classifier, equals the group asked for")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["shapes", "emoji"], default="shapes")
    parser.add_argument("--prior", help="default: shapes-64-prior for shapes, none for emoji")
    parser.add_argument("--tokenizer", help="for reconstructions without a prior (default: the prior's, or emoji-64-small)")
    parser.add_argument("--classifier", help="default: shapes-classifier or emoji-classifier")
    parser.add_argument("--num", type=int, default=1000, help="shapes: images per set (emoji: all of half A)")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--temperature", type=float, help="default: the prior's own sampling defaults")
    parser.add_argument("--top-k", type=int, help="default: the prior's")
    parser.add_argument("--top-p", type=float, help="default: the prior's")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--update-card", metavar="DIR", help="write the distances into the model card of the prior saved in DIR")
    args = parser.parse_args()
    if args.data == "shapes" and args.prior is None:
        args.prior = "shapes-64-prior"
    if args.prior is None and args.update_card:
        parser.error("--update-card needs --prior")
    return args


def generated_sets(prior: ImagePrior, args: argparse.Namespace, options: SamplingOptions, heldout_labels: list[str]) -> list:
    """(name, images, class labels or None, seconds) per generated set: null class, then the held-out set's own
    labels without and with guidance (one unlabelled set for an unconditional prior)."""
    runs = [("generated", None, 1.0, 10)]
    if prior.layout.conditional:
        names = list(prior.layout.class_names)
        labels = np.array([names.index(label) for label in heldout_labels])
        runs = [("generated, null class", None, 1.0, 10),
                ("generated, held-out labels, no guidance", labels, 1.0, 11),
                (f"generated, held-out labels, guidance {args.guidance:g}", labels, args.guidance, 12)]
    sets = []
    for name, class_labels, guidance, seed in runs:
        start = time.perf_counter()
        images = prior.generate(len(heldout_labels), seed=seed, class_labels=class_labels, guidance_scale=guidance, batch_size=args.batch_size,
                                output_type="np", temperature=options.temperature, top_k=options.top_k, top_p=options.top_p)
        seconds = time.perf_counter() - start
        sets.append((name, images, class_labels, seconds))
        print(f"{name}: {seconds:.0f} s", flush=True)
    return sets


def report_lines(args: argparse.Namespace, results: dict) -> list[str]:
    prior = args.prior or "no prior"
    return [
        f"# Generation quality on {args.data}: {prior} (tokenizer {results['tokenizer']})",
        "",
        f"Command: `{results['command']}`  ",
        machine_line(results["machine"]) + "  ",
        (f"Fréchet distance in the {results['feature_dim']}-d feature space of `{results['classifier']}` to "
         f"{results['reference']}. Sampling: {results['sampling']['described']}."),
        "",
        "| image set | Fréchet distance |",
        "|---|---|",
        *[f"| {name} | {value:.3f} |" for name, value in results["frechet_distance"].items()],
        "",
        f"Share of images whose {results['label_meaning']}:",
        "",
        "| images | share |",
        "|---|---|",
        *[f"| {name} | {value:.3f} |" for name, value in results["label_accuracy"].items()],
    ]


def update_card(prior: ImagePrior, directory: str, results: dict) -> None:
    """Record the distances and count hits in the model card of the prior saved in `directory`."""
    from image_tokenizer.fileio import atomic_write_text
    from image_tokenizer.model_card import CARD_NAME, render_prior_card

    metrics = prior.card_info.setdefault("metrics", {})
    for name, value in results["frechet_distance"].items():
        metrics[f"frechet_distance ({name})"] = round(value, 4)
    what = "shape count as asked" if results["data"] == "shapes" else "label as asked"
    for name, value in results["label_accuracy"].items():
        metrics[f"{what} ({name})"] = round(value, 4)
    metrics["generation quality"] = (f"{results['images_per_set']} images per set vs {results['reference']}; "
                                     f"{results['sampling']['described']}; {results['command']}")
    atomic_write_text(Path(directory) / CARD_NAME, render_prior_card(prior, Path(directory).name, prior.card_info))


def main() -> None:
    args = parse_args()
    prior = ImagePrior.from_pretrained(args.prior, device=args.device) if args.prior else None
    tokenizer = prior.tokenizer if prior else ImageTokenizer.from_pretrained(args.tokenizer or "emoji-64-small", device=args.device)
    if args.data == "shapes":
        reference = shapes_reference(args.num, args.classifier)
    else:
        reference = emoji_reference(tokenizer.config.resolution, args.classifier)
    sets: dict[str, np.ndarray] = {"second held-out set (floor)": reference.second}
    start = time.perf_counter()
    tokenizer_name = prior.layout.tokenizer if prior else (args.tokenizer or "emoji-64-small")
    sets[f"{tokenizer_name} reconstructions"] = tokenizer.decode(tokenizer.encode(list(reference.images)), output_type="np")
    timings = {"reconstruct": time.perf_counter() - start}
    accuracy = {"classifier on real held-out images (ceiling)": label_accuracy(reference, reference.images, reference.labels)}
    options = None
    if prior is not None:
        given = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
        options = SamplingOptions.from_kwargs({k: v for k, v in given.items() if v is not None}, prior.sampling_defaults)
        for name, images, class_labels, seconds in generated_sets(prior, args, options, reference.labels):
            sets[name], timings[name] = images, seconds
            if class_labels is not None:
                accuracy[name] = label_accuracy(reference, images, reference.labels)
    features = reference.classifier.embed(reference.images)
    results = {
        "command": " ".join(["python", "benchmarks/generation_quality.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "data": args.data,
        "prior": args.prior,
        "tokenizer": tokenizer_name,
        "classifier": args.classifier or reference.classifier.default_name,
        "feature_dim": features.shape[1],
        "images_per_set": len(reference.images),
        "reference": reference.description,
        "frechet_distance": {name: frechet_distance(features, reference.classifier.embed(images)) for name, images in sets.items()},
        "label_meaning": reference.label_meaning,
        "label_accuracy": accuracy,
        "sampling": {"described": options.describe() if options else "no sampling (no prior)", "batch_size": args.batch_size,
                     **({"temperature": options.temperature, "top_k": options.top_k, "top_p": options.top_p} if options else {})},
        "seconds": timings,
    }
    name = "generation_quality" if args.data == "shapes" else "generation_quality_emoji"
    write_results(args.output_dir, name, results, report_lines(args, results))
    if args.update_card:
        update_card(prior, args.update_card, results)


def label_accuracy(reference: Reference, images: np.ndarray, asked: list[str]) -> float:
    """Share of images whose classifier label is the one asked for."""
    return float(np.mean([made == wanted for made, wanted in zip(reference.label_of(images), asked)]))


if __name__ == "__main__":
    main()
