"""MaskGIT (a bidirectional masked LM, a few parallel steps) against the raster prior, on shapes (CPU).

    python benchmarks/maskgit_prior.py [--work runs/maskgit] [--prior-steps 1500] [--num 300] [--guidance 2]

1. The tokenizer: the bundled shapes-64-small (a 16x16 grid, 1,024 codes; 256 ids an image), so both priors model
   the same ids and decode through the same tokenizer: the distances compare the priors alone.
2. Its rows: `pretokenize` of shapes images (seed 0, mirrored copies added) and of a held-out set (seed 1).
3. Two class-conditional priors (num_shapes, label dropout 0.1) with training/train_prior.py, the same number of
   steps and batches: `raster` (LlamaForCausalLM, one id per forward pass) and `maskgit` (BertForMaskedLM,
   masked-token modelling with the cosine schedule), of the same width, depth and heads; the BERT MLP width is
   chosen so that the parameter counts match (a SwiGLU MLP has three matrices, BERT's two).
4. Each prior samples --num images with the held-out set's labels, unguided and guided (--guidance): forward passes
   per batch (counted on the model), images per second (sampling, then sampling + decoding), the Fréchet
   distance in the bundled shapes classifier's features to held-out images (as benchmarks/generation_quality.py
   measures it) and the share whose classifier count equals the label asked for. MaskGIT also at other step
   counts, with the publisher's arccos schedule, with linearly ramped guidance and at other confidence
   temperatures.

Writes benchmarks/results/maskgit_prior.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _machine import machine_info, machine_line, write_results
from generation_quality import shapes_reference
from next_scale_prior import add_prior_arguments, sample, token_rows

from image_tokenizer import ImagePrior, ImageTokenizer, TokenLayout
from image_tokenizer.feature_classifier import frechet_distance
from image_tokenizer.prior import PriorConfig, build_prior_model

TOKENIZER = "shapes-64-small"
PREDICTIONS = ("maskgit", "raster")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/maskgit", help="the rows and priors go here")
    add_prior_arguments(parser, prior_steps=1500, repeats=1)
    parser.add_argument("--guidance", type=float, default=2.0, help="the guided sets' scale")
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16], help="maskgit sampling steps: the first "
                        "unguided, guided, ramped and with the arccos schedule; the others unguided")
    parser.add_argument("--confidence-temperatures", type=float, nargs="*", default=[1.0],
                        help="maskgit at the first step count, unguided, with these confidence temperatures too")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (on a shared machine, two threads "
                        "spinning against other jobs ran a forward pass 12x slower than one)")
    return parser.parse_args()


def matched_intermediate_size(layout: TokenLayout, args: argparse.Namespace) -> tuple[int, int, int]:
    """The BERT MLP width whose masked LM has the raster Llama's parameter count; returns it and both counts."""
    sizes = {"hidden_size": args.hidden_size, "num_hidden_layers": args.layers, "num_attention_heads": args.heads}
    raster = dataclasses.replace(layout, prediction="raster")
    target = count(build_prior_model(raster, PriorConfig(architecture="llama", **sizes)))
    def width(mlp: int) -> int:
        return count(build_prior_model(layout, PriorConfig(architecture="bert", intermediate_size=mlp, **sizes)))

    best = min(range(args.hidden_size, 8 * args.hidden_size + 1, 8), key=lambda m: abs(width(m) - target))
    return best, width(best), target


def count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def train_priors(args: argparse.Namespace, rows: tuple[Path, Path], work: Path, bert_mlp: int) -> dict[str, Any]:
    """The two priors, same sizes, steps and batches; returns their folders and training records."""
    from training.train_prior import PriorTrainConfig, train

    records = {}
    for prediction in PREDICTIONS:
        out = work / f"prior-{prediction}"
        config = PriorTrainConfig(
            output_dir=str(out), tokenizer=TOKENIZER, data=str(rows[0]), eval_data=str(rows[1]),
            label_column="num_shapes", prediction=prediction, hidden_size=args.hidden_size,
            num_hidden_layers=args.layers, num_attention_heads=args.heads,
            intermediate_size=bert_mlp if prediction == "maskgit" else None, max_steps=args.prior_steps,
            batch_size=args.prior_batch_size, lr=1e-3, warmup_steps=100, eval_steps=100000, save_steps=100000,
            logging_steps=100, sample_images=16, progress=False,
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


def sampling_sets(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(row name, prior, generate keywords) of every measured set."""
    g = args.guidance
    sets = [("raster prior", "raster", {"guidance": 1.0}), (f"raster prior, guidance {g:g}", "raster", {"guidance": g})]
    first = args.steps[0]
    sets += [(f"maskgit prior, {first} steps", "maskgit", {"guidance": 1.0, "steps": first}),
             (f"maskgit prior, {first} steps, guidance {g:g}", "maskgit", {"guidance": g, "steps": first}),
             (f"maskgit prior, {first} steps, guidance {g:g} ramped linearly", "maskgit",
              {"guidance": g, "steps": first, "guidance_schedule": "linear"}),
             (f"maskgit prior, {first} steps, arccos schedule, guidance {g:g}", "maskgit",
              {"guidance": g, "steps": first, "mask_schedule": "arccos"})]
    sets += [(f"maskgit prior, {steps} steps", "maskgit", {"guidance": 1.0, "steps": steps}) for steps in args.steps[1:]]
    sets += [(f"maskgit prior, {first} steps, confidence temperature {tau:g}", "maskgit",
              {"guidance": 1.0, "steps": first, "confidence_temperature": tau}) for tau in args.confidence_temperatures]
    return sets


def measure(args: argparse.Namespace, records: dict[str, Any], tokenizer: ImageTokenizer) -> dict[str, Any]:
    reference = shapes_reference(args.num, None)
    features = reference.classifier.embed(reference.images)

    def distance(images: Any) -> float:
        return frechet_distance(features, reference.classifier.embed(images))

    def label_accuracy(images: Any) -> float:
        return sum(a == b for a, b in zip(reference.label_of(images), reference.labels)) / len(reference.labels)

    reconstructions = tokenizer.decode(tokenizer.encode(list(reference.images)), output_type="np")
    rows = {"second held-out set (floor)": {"frechet_distance": distance(reference.second)},
            "tokenizer reconstructions": {"frechet_distance": distance(reconstructions),
                                          "label_accuracy": label_accuracy(reconstructions)}}
    priors = {name: ImagePrior.from_pretrained(records[name]["folder"], tokenizer=tokenizer) for name in PREDICTIONS}
    for name, which, options in sampling_sets(args):
        guidance = options.pop("guidance")
        result = sample(priors[which], reference.labels, guidance, args.batch_size, 11, args.repeats, **options)
        images = result.pop("images")
        result.update(frechet_distance=distance(images), label_accuracy=label_accuracy(images))
        rows[name] = {key: round(value, 4) for key, value in result.items()}
        print(name, rows[name], flush=True)
    return rows


def report_lines(results: dict[str, Any]) -> list[str]:
    priors = results["priors"]
    lines = [
        "# MaskGIT against raster prediction on shapes (CPU)",
        "",
        f"Command: `{results['command']}`  ",
        machine_line(results["machine"]) + f", {results['torch_threads']} torch thread(s) (shared with other jobs: "
        "times are wall clock on a loaded machine)  ",
        (f"Tokenizer: the bundled `{TOKENIZER}` ({results['tokenizer']}), for both priors, so the distances compare "
         "the priors alone.  "),
        (f"Priors: {results['prior_sizes']}; raster LlamaForCausalLM {priors['raster']['parameters']:,} parameters, "
         f"maskgit BertForMaskedLM {priors['maskgit']['parameters']:,} (MLP width {results['bert_mlp']} to match); "
         f"{results['prior_training']} each, the same batches, on {results['prior_rows']}; label dropout 0.1."),
        "",
        "| prior | steps | training loop (s, shared CPU) | held-out bits/id |",
        "|---|---|---|---|",
        *[f"| {name} | {p['steps']} | {p['training_loop_seconds']:.0f} | {p['heldout_bits_per_token']} |"
          for name, p in priors.items()],
        "",
        ("Held-out bits: the raster prior's per id given all earlier ids; the maskgit prior's per masked id given "
         "the unmasked ones at a cosine-drawn mask ratio, so the two are not comparable."),
        "",
        (f"Fréchet distance in the shapes classifier's features to {results['reference']}; label accuracy: the "
         "share of images whose classifier count equals the class asked for. Sampling at temperature 1, batches of "
         f"{results['batch_size']}, seed 11; times are the fastest of {results['repeats']} runs after a warm-up. "
         "MaskGIT: confidence temperature 4.5, cosine schedule unless named."),
        "",
        "| image set | FD | label accuracy | forward passes / batch | images/s (sampling) | images/s (with decode) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results["rows"].items():
        cells = [row.get(key, "") for key in ("forward_passes_per_batch", "images_per_second_sampling",
                                             "images_per_second_with_decode")]
        accuracy = f"{row['label_accuracy']:.3f}" if "label_accuracy" in row else ""
        lines.append(f"| {name} | {row['frechet_distance']:.3f} | {accuracy} | "
                     + " | ".join(f"{c:g}" if c != "" else "" for c in cells) + " |")
    return lines


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(args.work)
    tokenizer = ImageTokenizer.from_pretrained(TOKENIZER)
    rows = token_rows(tokenizer, work, args.train_images, args.num)
    layout = TokenLayout.for_tokenizer(tokenizer, TOKENIZER, ["1", "2", "3", "4", "5"], "num_shapes", "maskgit")
    bert_mlp, bert_params, llama_params = matched_intermediate_size(layout, args)
    print(f"maskgit MLP width {bert_mlp}: {bert_params:,} parameters against the raster prior's {llama_params:,}")
    records = train_priors(args, rows, work, bert_mlp)
    measured = measure(args, records, tokenizer)
    results = {
        "command": " ".join(["python", "benchmarks/maskgit_prior.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "tokenizer": tokenizer.layout.describe(),
        "torch_threads": args.threads,
        "prior_sizes": f"hidden {args.hidden_size}, {args.layers} layers, {args.heads} heads, batch {args.prior_batch_size}",
        "bert_mlp": bert_mlp,
        "prior_training": f"{args.prior_steps} steps (cosine learning rate to the last)",
        "repeats": args.repeats,
        "prior_rows": f"{args.train_images} shapes images (seed 0) and their mirrors",
        "reference": f"{args.num} held-out shapes images",
        "batch_size": args.batch_size,
        "priors": records,
        "rows": measured,
    }
    write_results(args.output_dir, "maskgit_prior", results, report_lines(results))


if __name__ == "__main__":
    main()
