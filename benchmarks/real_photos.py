"""What the bundled tokenizers do to real photographs, which they were not trained on (shapes and emoji models).

    pip download --no-deps --only-binary=:all: -d wheels scikit-image matplotlib
    python benchmarks/real_photos.py --from-wheel wheels/scikit_image-*.whl --from-wheel wheels/matplotlib-*.whl

The sample photographs that scikit-image and matplotlib ship inside their wheels (PHOTOS: people, animals,
objects, textures, astronomy, microscopy; no drawings or synthetic test patterns) are extracted, each is
reconstructed at the model's resolution as `image-tokenizer reconstruct` does it (resize_center_crop, any
transparency composited onto --background, default white, the same for every model; then encode and decode), and
PSNR is measured against that input. --images DIR measures a folder of your own instead. Writes benchmarks/results/real_photos_cpu.{json,md}, with every file's sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImageTokenizer
from image_tokenizer.cli.common import add_background_option
from image_tokenizer.config import background_name
from image_tokenizer.data.sources import image_files
from image_tokenizer.image_processing import load_image, on_background
from image_tokenizer.metrics import psnr

PHOTOS = [
    "skimage/data/astronaut.png", "skimage/data/brick.png", "skimage/data/camera.png", "skimage/data/chelsea.png",
    "skimage/data/coffee.png", "skimage/data/coins.png", "skimage/data/grass.png", "skimage/data/gravel.png",
    "skimage/data/hubble_deep_field.jpg", "skimage/data/ihc.png", "skimage/data/moon.png",
    "skimage/data/motorcycle_left.png", "skimage/data/retina.jpg", "skimage/data/rocket.jpg",
    "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
]
MODELS = ["shapes-64", "shapes-64-small", "emoji-64-small"]


def extract_photos(wheels: list[str], folder: Path) -> list[str]:
    """The PHOTOS found in the wheels, written into folder; returns the wheels' file names."""
    folder.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for name in set(PHOTOS) & set(archive.namelist()):
                (folder / Path(name).name).write_bytes(archive.read(name))
    return [Path(w).name for w in wheels]


def reconstruction_psnr(tokenizer: ImageTokenizer, path: Path, background: tuple[int, int, int]) -> float:
    """PSNR (dB) of the tokenizer's reconstruction against the input as the model sees it (resized, RGB, any
    transparency on `background` rather than the model's own alpha_background, so every model gets the same)."""
    image = on_background(load_image(path), tokenizer.config, background)
    reconstruction = np.asarray(tokenizer.decode(tokenizer.encode(image)))
    return float(psnr(np.asarray(image), reconstruction))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-wheel", action="append", default=[], help="a scikit-image or matplotlib wheel")
    parser.add_argument("--images", help="a folder of photos instead of the wheels' samples")
    parser.add_argument("--workdir", default="runs/real_photos", help="where the wheels' photos are extracted")
    parser.add_argument("--name", default="real_photos_cpu")
    add_background_option(parser)
    args = parser.parse_args()
    wheels = extract_photos(args.from_wheel, Path(args.workdir)) if not args.images else []
    files = image_files(args.images or args.workdir)
    if not files:
        raise SystemExit("no photos: pass --from-wheel (see the docstring) or --images DIR")
    per_model = {}
    for model in MODELS:
        tokenizer = ImageTokenizer.from_pretrained(model)
        scores = {f.name: round(reconstruction_psnr(tokenizer, f, args.background), 2) for f in files}
        values = list(scores.values())
        per_model[model] = {"mean_psnr": round(float(np.mean(values)), 2), "min_psnr": min(values), "max_psnr": max(values),
                            "per_photo": scores}
    results = {
        "command": " ".join(["python", "benchmarks/real_photos.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "wheels": wheels,
        "background": background_name(args.background),
        "photos": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files},
        "models": per_model,
    }
    lines = [
        "# The bundled tokenizers on real photographs (out of their domain: they were trained on shapes or emoji)",
        "",
        f"Command: `{results['command']}`",
        "",
        machine_line(results["machine"]),
        "",
        (f"{len(files)} photographs ({', '.join(f.name for f in files)}), each resized and center-cropped to the model's "
        "resolution; PSNR of the reconstruction against that input."),
        "",
        "| model | mean PSNR | lowest | highest |",
        "|---|---|---|---|",
        *[f"| {m} | {r['mean_psnr']:.2f} dB | {r['min_psnr']:.2f} dB | {r['max_psnr']:.2f} dB |" for m, r in per_model.items()],
    ]
    write_results(Path(__file__).resolve().parent / "results", args.name, results, lines)


if __name__ == "__main__":
    main()
