"""Where a prior's samples go wrong, measured with generation_quality.py's Fréchet distance (the bundled shapes
classifier's features, against 1,000 held-out images of seed 1):

- one-step samples: every image token of a held-out image (seed 2) drawn from the prior given the image's *true*
  class and preceding tokens, so no error can compound;
- completions: the bottom half of each held-out image drawn given its true top half;
- free generation: whole images given only the class, as generation_quality.py draws them.

The seed-2 images themselves are the floor. If one-step samples are already far from it, the per-token
distribution is the problem; if only free generation is, errors compound along the sequence.

    python benchmarks/prior_diagnostics.py [--prior shapes-64-prior] [--num 1000] [--temperature 0.8] [--device cpu]

Writes benchmarks/results/prior_diagnostics.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results
from generation_quality import SECOND_HELDOUT_SEED, shapes

from image_tokenizer import ImagePrior
from image_tokenizer.data.shapes import HELDOUT_SEED
from image_tokenizer.shapes_classifier import ShapesClassifier, frechet_distance


@torch.inference_mode()
def one_step_samples(prior: ImagePrior, ids: torch.Tensor, labels: torch.Tensor, temperature: float, seed: int) -> torch.Tensor:
    """Each image token drawn from the prior given the true class and true preceding tokens; ids [B, h, w]."""
    layout, generator, grids = prior.layout, torch.Generator().manual_seed(seed), []  # draws on the CPU: same on any device
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100].cpu()
        prefix = layout.prefix(labels[start : start + 100], len(chunk))
        logits = prior.model(torch.cat([prefix, chunk.reshape(len(chunk), -1)], dim=1).to(prior.device)).logits
        image_logits = logits[:, prefix.shape[1] - 1 : -1, : layout.codebook_size].float().cpu() / temperature
        draws = torch.multinomial(image_logits.softmax(-1).reshape(-1, layout.codebook_size), 1, generator=generator)
        grids.append(draws.reshape(chunk.shape))
    return torch.cat(grids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", default="shapes-64-prior")
    parser.add_argument("--classifier", default="shapes-classifier")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    prior = ImagePrior.from_pretrained(args.prior, device=args.device)
    tokenizer, classifier = prior.tokenizer, ShapesClassifier.from_pretrained(args.classifier)
    reference = classifier.embed(shapes(args.num, HELDOUT_SEED)[0])
    images, counts = shapes(args.num, SECOND_HELDOUT_SEED)
    values = [int(v) for v in prior.layout.class_names]
    labels = torch.tensor([values.index(int(c)) for c in counts])
    ids = tokenizer.encode(images)
    half = prior.layout.grid_size[0] // 2
    sets = {
        "held-out images (seed 2: the floor)": lambda: images,
        "their tokens, decoded": lambda: tokenizer.decode(ids, output_type="np"),
        f"one-step samples, temperature {args.temperature}": lambda: tokenizer.decode(
            one_step_samples(prior, ids, labels, args.temperature, seed=31), output_type="np"),
        "one-step samples, temperature 1.0": lambda: tokenizer.decode(
            one_step_samples(prior, ids, labels, 1.0, seed=31), output_type="np"),
        f"bottom halves completed, temperature {args.temperature}": lambda: np.concatenate([
            prior.complete(ids[s : s + 250, :half], class_labels=labels[s : s + 250], seed=41 + s,
                           temperature=args.temperature, output_type="np") for s in range(0, args.num, 250)]),
        f"free generation, temperature {args.temperature}": lambda: prior.generate(
            args.num, seed=11, class_labels=labels, temperature=args.temperature, batch_size=250, output_type="np"),
    }
    rows = []
    for name, make in sets.items():
        start = time.perf_counter()
        made = make()
        hits = float((classifier.predict_counts(made).sum(1) == counts).mean())
        rows.append({"set": name, "frechet_distance": frechet_distance(reference, classifier.embed(made)),
                     "count_hits": hits, "seconds": time.perf_counter() - start})
        print(f"{name}: Fréchet distance {rows[-1]['frechet_distance']:.2f}, count hits {hits:.3f}", flush=True)
    results = {"command": " ".join(["python", "benchmarks/prior_diagnostics.py", *sys.argv[1:]]), "machine": machine_info(),
               "prior": args.prior, "images_per_set": args.num, "sets": rows}
    lines = [
        f"# Prior diagnostics: {args.prior}", "", f"Command: `{results['command']}`  ", machine_line(results["machine"]) + "  ",
        (f"{args.num} images per set, made from held-out images of seed 2 and their labels; Fréchet distance to {args.num} "
         f"held-out images of seed 1 in the shapes classifier's features; count hits: the classifier counts the shapes asked for."), "",
        "| set | Fréchet distance | count hits |", "|---|---|---|",
        *[f"| {r['set']} | {r['frechet_distance']:.2f} | {r['count_hits']:.3f} |" for r in rows],
    ]
    write_results(args.output_dir, "prior_diagnostics", results, lines)


if __name__ == "__main__":
    main()
