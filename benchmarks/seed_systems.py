"""Four systems side by side on shapes: Autoencoder, VAE, VQ-VAE, VQGAN.

    python training/baselines/train_baseline.py --config training/configs/seed_ae.json
    python training/baselines/train_baseline.py --config training/configs/seed_vae.json
    python training/train_tokenizer.py --config training/configs/seed_vqvae.json
    python training/train_tokenizer.py --config training/configs/seed_vqgan.json
    python training/train_prior.py --config training/configs/seed_vqvae_prior.json
    python training/train_prior.py --config training/configs/seed_vqgan_prior.json
    python benchmarks/seed_systems.py --vqvae-prior runs/seed-vqvae-prior/final --vqgan-prior runs/seed-vqgan-prior/final

Scores each on the same held-out shapes images (seed 1): PSNR, SSIM, hole recall, bits per image of the
latent, parameters and seconds per training step. Writes benchmarks/results/seed_systems.{md,json}, a
reconstruction figure seed_systems.png (held-out images with the most hole pixels, 4x nearest-neighbour) and a
generation figure seed_systems_samples.png (VAE: z ~ N(0, I); VQ models: through a prior, when given), with
Fréchet distances in the shapes classifier's feature space.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImagePrior, ImageTokenizer
from image_tokenizer.data.shapes import HELDOUT_SEED, generate_arrays
from image_tokenizer.evaluation import reconstruction_metrics
from image_tokenizer.image_processing import postprocess
from image_tokenizer.shapes_classifier import ShapesClassifier, frechet_distance
from image_tokenizer.visualize import image_grid
from training.baselines.train_baseline import load_baseline, reconstruct

SYSTEMS = ("AE", "VAE", "VQ-VAE", "VQGAN")


def seconds_per_step(system: str, steps: int = 60, batch_size: int | None = None) -> float:
    """Time real training steps of a system's config in a short separate run (the VQGAN with its GAN term
    on from step 0): the median over log intervals after the first, so every system is timed alike."""
    import tempfile

    from training.baselines.train_baseline import BaselineConfig
    from training.baselines.train_baseline import train as train_baseline
    from training.train_tokenizer import TrainConfig
    from training.train_tokenizer import train as train_tokenizer

    data = json.loads((ROOT / "training" / "configs" / f"seed_{system}.json").read_text())
    data["batch_size"] = batch_size or data["batch_size"]
    log_every = max(1, steps // 6)
    with tempfile.TemporaryDirectory() as tmp:
        images = min(512, steps * data["batch_size"])  # 512 at most: a short timed run (60 steps) cycles through them
        common = {"output_dir": tmp, "steps": steps, "num_train_images": images, "eval_images": 0,
                  "log_every": log_every, "progress": False}
        if system in ("ae", "vae"):
            train_baseline(BaselineConfig(**{**data, **common}))
            intervals = [json.loads(line)["seconds_per_step"] for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        else:
            loss = {**data["loss"], **({"disc_start": 0, "gan_start": 0} if data["loss"].get("gan_weight", 0) > 0 else {})}
            train_tokenizer(TrainConfig(**{**data, **common, "loss": loss, "image_every": 0, "checkpoint_every": 0}))
            rates = [json.loads(line)["images_per_s"] for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
            intervals = [data["batch_size"] / rate for rate in rates]
    return statistics.median(intervals[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ae", default="runs/seed-ae")
    parser.add_argument("--vae", default="runs/seed-vae")
    parser.add_argument("--vqvae", default="runs/seed-vqvae")
    parser.add_argument("--vqgan", default="runs/seed-vqgan")
    parser.add_argument("--vqvae-prior", help="a prior trained on the VQ-VAE's tokens, for the generation figure")
    parser.add_argument("--vqgan-prior", help="a prior trained on the VQGAN's tokens")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--time-steps", type=int, default=60, help="training steps timed per system")
    parser.add_argument("--time-batch-size", type=int, help="batch of the timed steps (default: each config's)")
    parser.add_argument("--name", default="seed_systems", help="results name: NAME.{md,json}, NAME.png, NAME_samples.png")
    parser.add_argument("--output-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    images, holes = generate_arrays(args.num, seed=HELDOUT_SEED)
    rows, recons, systems = {}, {}, {}
    missing = [n for n, run in zip(SYSTEMS, (args.ae, args.vae, Path(args.vqvae) / "final", Path(args.vqgan) / "final"))
               if not (Path(run) / "model.safetensors").is_file()]
    if missing:
        print(f"not trained yet, left out: {', '.join(missing)}")
    systems_present = [n for n in SYSTEMS if n not in missing]
    for name, run in (("AE", args.ae), ("VAE", args.vae)):
        if name in missing:
            continue
        model, config = load_baseline(run)
        systems[name] = model
        recons[name] = reconstruct(model, images)
        h = config.model.get("resolution", 64) // model.config.downsample_factor
        eval_info = json.loads((Path(run) / "eval.json").read_text())
        rows[name] = {
            "latent": f"{h}x{h}x{config.latent_channels} continuous",
            "bits_per_image": h * h * config.latent_channels * 8,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds_per_step": seconds_per_step(name.lower(), args.time_steps, args.time_batch_size),
            "seconds_per_step_in_training_run": eval_info["seconds_per_step"],
            "steps": config.steps, "batch_size": config.batch_size,
        }
    for name, run in (("VQ-VAE", args.vqvae), ("VQGAN", args.vqgan)):
        if name in missing:
            continue
        run = Path(run)
        tokenizer = ImageTokenizer.from_pretrained(run / "final")
        train_config = json.loads((run / "train_config.json").read_text())
        systems[name] = tokenizer
        recons[name] = tokenizer.decode(tokenizer.encode(list(images)), output_type="np")
        h, w = tokenizer.grid_size
        rows[name] = {
            "latent": f"{h}x{w} ids of {tokenizer.vocab_size}",
            "bits_per_image": int(h * w * math.log2(tokenizer.vocab_size)),
            "parameters": sum(p.numel() for p in tokenizer.model.parameters()),
            "seconds_per_step": seconds_per_step(name.lower().replace("-", ""), args.time_steps, args.time_batch_size),
            "steps": train_config["steps"], "batch_size": train_config["batch_size"],
        }
    for name in systems_present:
        rows[name].update(reconstruction_metrics(images, recons[name], holes))

    # Figure 1: the held-out images with the most hole pixels, input then the four reconstructions.
    chosen = np.argsort(-holes.reshape(len(holes), -1).sum(1))[: args.rows]
    tiles = [Image.fromarray(x) for i in chosen for x in [images[i]] + [recons[n][i] for n in systems_present]]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_grid(tiles, columns=1 + len(systems_present), scale=4).save(out / f"{args.name}.png")

    # Figure 2: samples. VAE from N(0, I); VQ models through a prior when one is given.
    classifier = ShapesClassifier.from_pretrained()
    reference = classifier.embed(images)
    samples = {}
    fd = {"held-out reconstructions, " + n: frechet_distance(reference, classifier.embed(recons[n])) for n in systems_present}
    if "VAE" in systems:
        vae = systems["VAE"]
        decoded = vae.sample(args.num, torch.Generator().manual_seed(0))
        samples["VAE, z ~ N(0, I)"] = postprocess(decoded, vae.config.preprocessing, "np")
    for name, prior_dir in (("VQ-VAE", args.vqvae_prior), ("VQGAN", args.vqgan_prior)):
        if prior_dir and name in systems:
            prior = ImagePrior.from_pretrained(prior_dir, tokenizer=systems[name])
            samples[f"{name}, prior samples"] = prior.generate(args.num, seed=0, batch_size=250, output_type="np")
    for name, generated in samples.items():
        fd[name] = frechet_distance(reference, classifier.embed(generated))
    columns = 8
    sample_tiles = [Image.fromarray(x) for generated in samples.values() for x in generated[:columns]]
    if sample_tiles:
        image_grid(sample_tiles, columns=columns, scale=2).save(out / f"{args.name}_samples.png")

    results = {
        "command": " ".join(["python", "benchmarks/seed_systems.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "heldout": f"{args.num} shapes images, seed {HELDOUT_SEED}",
        "systems": rows,
        "frechet_distance": fd,
        "figure_rows": [int(i) for i in chosen],
        "not_trained": missing,
        "sample_rows": list(samples),
    }
    lines = [
        "# The lecture's four systems on shapes",
        "",
        f"Command: `{results['command']}`  ",
        machine_line(results["machine"]) + "  ",
        f"Held-out: {results['heldout']}. Same encoder/decoder blocks (ch 16, 64x64 -> 16x16 latent grid), data order, "
        "batch size, steps and constant learning rate; AE/VAE use MSE, the VQ models L2 plus the VQ terms, the VQGAN "
        "adds the adaptive PatchGAN term. Bits: VQ h*w*log2(K); continuous latents at 8 bits per value. "
        f"s/step: a separate {args.time_steps}-step run of each config (VQGAN with the GAN term on)"
        + (f", batch {args.time_batch_size}." if args.time_batch_size else "."),
        "",
        "| system | latent | bits/image | PSNR (dB) | SSIM | hole recall | parameters | s/step |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {n} | {r['latent']} | {r['bits_per_image']} | {r['psnr_db']:.2f} | {r['ssim']:.3f} | "
            f"{r['hole_recall']:.3f} | {r['parameters']:,} | {r['seconds_per_step']:.3f} |"
            for n, r in rows.items()
        ],
        "",
        "Fréchet distance to the held-out set in the shapes classifier's feature space:",
        "",
        "| image set | Fréchet distance |",
        "|---|---|",
        *[f"| {name} | {value:.3f} |" for name, value in fd.items()],
        "",
        f"Figures: `{args.name}.png` (rows: held-out images {results['figure_rows']}; columns: input, "
        + ", ".join(systems_present) + f"), `{args.name}_samples.png` (rows: {', '.join(samples)}).",
        *([f"Not trained yet, so not in the table: {', '.join(missing)}."] if missing else []),
    ]
    write_results(args.output_dir, args.name, results, lines)


if __name__ == "__main__":
    main()
