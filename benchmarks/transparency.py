"""Why scores that compare models composite transparency onto one background: line art scored on each model's own
colour against one shared colour.

    python benchmarks/transparency.py [--count 20] [--models shapes-64 emoji-64-small]

Draws COUNT transparent 64x64 line-art images (strokes, circles and polylines on alpha 0; the first half in black,
the rest in colour; seed 0) and scores every model on them composited onto its own `alpha_background`, onto white
and onto black. Black strokes on a black background leave a single-colour image, which reconstructs almost exactly
and lifts the mean PSNR: `blank_images` counts them. Writes benchmarks/results/transparency.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImageTokenizer
from image_tokenizer.evaluation import evaluate_tokenizer

BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def line_art(count: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """COUNT RGBA uint8 images [N, size, size, 4]: a few opaque strokes on a transparent canvas, black strokes for
    the first half, random colours for the rest."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        draw = ImageDraw.Draw(canvas)
        colour = (0, 0, 0, 255) if index < count // 2 else (*map(int, rng.integers(0, 256, 3)), 255)
        for _ in range(int(rng.integers(2, 5))):
            points = [tuple(map(int, rng.integers(4, size - 4, 2))) for _ in range(int(rng.integers(2, 5)))]
            width = int(rng.integers(2, 5))
            if rng.random() < 0.3:
                x, y = points[0]
                r = int(rng.integers(6, size // 3))
                draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=width)
            else:
                draw.line(points, fill=colour, width=width, joint="curve")
        images.append(np.asarray(canvas))
    return np.stack(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["shapes-64", "emoji-64-small"])
    parser.add_argument("--output-dir", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    images = line_art(args.count)
    rows = []
    for model in args.models:
        tokenizer = ImageTokenizer.from_pretrained(model)
        own = tuple(tokenizer.config.preprocessing.alpha_background)
        for name, background in (("own", own), ("white", WHITE), ("black", BLACK)):
            metrics = evaluate_tokenizer(tokenizer, images, background=background)
            rows.append({"model": model, "background": name, "rgb": list(background),
                         "psnr_db": round(metrics["psnr_db"], 2), "ssim": round(metrics["ssim"], 3),
                         "blank_images": metrics["blank_images"], "num_images": metrics["num_images"]})
    command = "python " + " ".join(sys.argv)
    results = {"command": command, "machine": machine_info(), "count": args.count, "rows": rows}
    lines = [f"# Line art scored on each model's own background and on one shared background ({args.count} images)",
             "", f"`{command}`", "", machine_line(results["machine"]), "",
             "| model | background | RGB | PSNR (dB) | SSIM | blank images |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['background']} | {tuple(r['rgb'])} | {r['psnr_db']:.2f} | {r['ssim']:.3f} | "
              f"{r['blank_images']} |" for r in rows]
    write_results(args.output_dir, "transparency", results, lines)


if __name__ == "__main__":
    main()
