"""Can a bf16 encoder keep the float32 ids by re-checking only the positions whose nearest code is nearly tied?

    python benchmarks/bf16_recheck.py [--images 256] [--setup-images 16] [--repeats 5]

The plan of issue 32: run the network in bf16 and the lookup in fp32 (already so), then look again, with float32
features, at the few positions whose margin (squared distance to the second-nearest code minus to the nearest, in
the lookup space) is below a threshold. For each model this measures: the share of ids bf16 keeps; for targets of
99.9 % and 100 % ids equal, the smallest threshold that meets it, the share of positions under it and the share of
images with at least one such position; how many feature positions move when one pixel in a corner changes (the
receptive field: with attention in the middle block, every position depends on every pixel, so float32 features
of one position need the whole float32 encoder on its image); and the encode time of float32 and bf16, interleaved.
A re-check then costs bf16 + (images to re-check) x float32; its speed-up over float32 is reported.

Models: the bundled trained `shapes-64` on held-out shapes images, and the setup of benchmarks/peers.py
(256x256, ch 64, K 16,384, random weights) on random pixels. Writes benchmarks/results/bf16_recheck_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results
from _setup import interleaved_medians, random_pixels, randomize, setup_config

from image_tokenizer import ImageTokenizer
from image_tokenizer.data.shapes import HELDOUT_SEED, generate_arrays
from image_tokenizer.modeling import VQModel

TARGETS = (0.999, 1.0)


def margins(model: VQModel, features: torch.Tensor) -> torch.Tensor:
    """Squared distance to the second-nearest code minus to the nearest, per position [B, h, w], in fp32."""
    quantizer = model.quantizer
    flat = quantizer._to_lookup_space(features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]))
    codes = quantizer.effective_codebook()
    distances = torch.cdist(flat.double(), codes.double()).pow(2)
    two = distances.topk(2, dim=1, largest=False).values
    return (two[:, 1] - two[:, 0]).float().reshape(features.shape[0], features.shape[2], features.shape[3])


def thresholds(margin: torch.Tensor, flipped: torch.Tensor) -> dict:
    """For each target share of equal ids: the smallest margin threshold whose re-check meets it, the share of
    positions under it, and the share of images holding at least one of them."""
    out = {}
    flip_margins = margin[flipped].sort(descending=True).values
    allowed = int((1 - TARGETS[0]) * margin.numel())
    for target in TARGETS:
        keep = 0 if target == 1.0 else allowed  # flips that may stay unchecked: the largest margins among them
        threshold = float(flip_margins[keep]) * (1 + 1e-6) if flip_margins.numel() > keep else 0.0
        below = margin < threshold
        out[f"{target:.1%}"] = {"threshold": threshold, "positions_rechecked": float(below.float().mean()),
                                "images_rechecked": float(below.flatten(1).any(1).float().mean())}
    return out


def receptive_field(model: VQModel, pixels: torch.Tensor) -> float:
    """Share of feature positions of one image that change when its top-left pixel changes."""
    changed = pixels[:1].clone()
    changed[:, :, 0, 0] += 0.5
    before, after = model.features(pixels[:1]), model.features(changed)
    return float(((before - after).abs().amax(dim=1) > 0).float().mean())


@torch.inference_mode()
def measure_model(name: str, tokenizer: ImageTokenizer, pixels: torch.Tensor, repeats: int) -> dict:
    fp32 = tokenizer.model
    bf16 = ImageTokenizer(tokenizer.config, VQModel(tokenizer.config)).model
    bf16.load_state_dict(fp32.state_dict())
    bf16.encoder.to(torch.bfloat16)
    micro = tokenizer.micro_batch_for(pixels.shape[2], pixels.shape[3])
    pixels = pixels.contiguous(memory_format=torch.channels_last)
    ids32 = torch.cat([fp32.encode_ids(pixels[i : i + micro]) for i in range(0, len(pixels), micro)])
    features16 = torch.cat([bf16.features(pixels[i : i + micro]) for i in range(0, len(pixels), micro)])
    ids16 = fp32.quantizer.encode_ids(features16)
    flipped = ids16 != ids32
    margin = margins(fp32, features16)
    chunks = pixels[: micro * 4].split(micro)  # up to four micro-batches per timed call: this machine is shared

    def encode_all(model: VQModel) -> None:
        for chunk in chunks:
            model.encode_ids(chunk)

    timings = interleaved_medians({"fp32": lambda: encode_all(fp32), "bf16": lambda: encode_all(bf16)}, repeats)
    t32, t16 = timings["fp32"]["median_s"], timings["bf16"]["median_s"]
    result = {
        "model": name, "images": len(pixels), "positions": int(ids32.numel()),
        "ids_equal_share": float((~flipped).float().mean()),
        "images_with_a_flip": float(flipped.flatten(1).any(1).float().mean()),
        "positions_moved_by_one_corner_pixel": receptive_field(fp32, pixels),
        "encode_s": {"fp32": t32, "bf16": t16, "images": sum(len(c) for c in chunks), "micro_batch": micro},
        "bf16_speedup": t32 / t16,
        "recheck": thresholds(margin, flipped),
    }
    for target in result["recheck"].values():
        target["speedup_over_fp32"] = t32 / (t16 + target["images_rechecked"] * t32)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="shapes-64 held-out images")
    parser.add_argument("--setup-images", type=int, default=16, help="random 256x256 images for the setup model")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    shapes = ImageTokenizer.from_pretrained("shapes-64")
    arrays, _ = generate_arrays(args.images, seed=HELDOUT_SEED)
    shapes_pixels = torch.stack(shapes.preprocess(arrays)[0])
    setup = ImageTokenizer(setup_config(), randomize(VQModel(setup_config())))
    load_before = os.getloadavg()[0]
    rows = [measure_model("shapes-64 (trained), held-out shapes", shapes, shapes_pixels, args.repeats),
            measure_model("setup (256x256, ch 64, K 16,384, random weights), random pixels", setup,
                          random_pixels(args.setup_images), args.repeats)]
    results = {"command": " ".join(["python", "benchmarks/bf16_recheck.py", *sys.argv[1:]]), "machine": machine_info(),
               "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}, "models": rows}
    write_results(args.output_dir, "bf16_recheck_cpu", results, report(results))


def report(results: dict) -> list[str]:
    lines = ["# bf16 encoder with a float32 re-check of near-tied positions (CPU)", "",
             f"Command: `{results['command']}`", "", machine_line(results["machine"]), "",
             (f"Load average (1 min) {results['load_average_1min']['before']:.2f} at the start, "
              f"{results['load_average_1min']['after']:.2f} at the end; encode times are medians of interleaved calls."), "",
             ("| model | images | bf16 ids equal | images with a changed id | positions moved by one corner pixel "
             "| bf16 speed-up | target | positions to re-check | images to re-check | speed-up with the re-check |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["models"]:
        for target, t in r["recheck"].items():
            lines.append(f"| {r['model']} | {r['images']} | {r['ids_equal_share']:.2%} | {r['images_with_a_flip']:.1%} "
                         f"| {r['positions_moved_by_one_corner_pixel']:.1%} | {r['bf16_speedup']:.2f}x | {target} "
                         f"| {t['positions_rechecked']:.2%} | {t['images_rechecked']:.1%} | {t['speedup_over_fp32']:.2f}x |")
    return lines


if __name__ == "__main__":
    main()
