"""Pre-tokenization throughput: our datasets pipeline against the naive loop that published tokenizers ship.

    python benchmarks/pretokenize.py [--num 2000] [--model shapes-64] [--num-proc 1]

Both start from the same folder of PNG shapes images and end with ids on disk. Naive: for each image, open the
file, preprocess it, run the model on a batch of one, save one .npy file. Ours: `pretokenize` over the image
folder (batched Dataset.map, fixed micro-batches) and one save_to_disk. Writes benchmarks/results/pretokenize_<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results  # noqa: E402

from image_tokenizer import ImageTokenizer  # noqa: E402
from image_tokenizer.data.shapes import HELDOUT_SEED, save_image_folder  # noqa: E402
from image_tokenizer.image_processing import load_image, pil_to_tensor, resize_and_crop, to_rgb  # noqa: E402
from image_tokenizer.pretokenize import load_image_dataset, pretokenize  # noqa: E402


@torch.inference_mode()
def naive_loop(tokenizer: ImageTokenizer, files: list[Path], out: Path) -> float:
    config = tokenizer.config
    start = time.perf_counter()
    for path in files:
        image = to_rgb(resize_and_crop(load_image(path), config.resolution, config.preprocessing))
        pixels = pil_to_tensor(image, config.preprocessing).unsqueeze(0).to(tokenizer.device)
        ids = tokenizer.model.encode(pixels).ids[0].cpu().numpy().astype(np.uint16)
        np.save(out / f"{path.stem}.npy", ids)
    return time.perf_counter() - start


def ours(tokenizer: ImageTokenizer, folder: Path, out: Path, batch_size: int, num_proc: int | None) -> float:
    start = time.perf_counter()
    dataset = load_image_dataset(str(folder))
    tokens = pretokenize(dataset, tokenizer, batch_size=batch_size, num_proc=num_proc, load_from_cache_file=False)
    tokens.save_to_disk(str(out))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--model", default="shapes-64")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-proc", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    tokenizer = ImageTokenizer.from_pretrained(args.model).to(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = save_image_folder(root / "images", args.num, seed=HELDOUT_SEED, progress=False)
        files = sorted(folder.glob("*.png"))
        (root / "naive").mkdir()
        naive_s = naive_loop(tokenizer, files, root / "naive")
        ours_s = ours(tokenizer, folder, root / "ours", args.batch_size, args.num_proc)
        # Same ids both ways (the naive loop runs batches of one, ours fixed micro-batches).
        import datasets

        ours_rows = datasets.load_from_disk(str(root / "ours"))
        naive_first = np.load(root / "naive" / f"{files[0].stem}.npy").reshape(-1).tolist()
        agreement = float(np.mean([a == b for a, b in zip(naive_first, ours_rows[0]["input_ids"])]))
        shutil.rmtree(root / "naive")

    results = {
        "command": " ".join(["python", "benchmarks/pretokenize.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "model": args.model,
        "images": args.num,
        "naive_images_per_s": args.num / naive_s,
        "ours_images_per_s": args.num / ours_s,
        "ratio": naive_s / ours_s,
        "first_image_token_agreement": agreement,
        "settings": vars(args),
    }
    lines = [
        f"# Pre-tokenization throughput ({args.device}, {args.num} shapes PNGs, model {args.model})",
        "",
        f"Command: `{results['command']}`  ",
        machine_line(results["machine"]),
        "",
        "| pipeline | images/s |",
        "|---|---|",
        f"| naive loop (one image per forward, one .npy per image) | {results['naive_images_per_s']:.1f} |",
        f"| ours (`pretokenize`, batch {args.batch_size}, num_proc {args.num_proc}) | {results['ours_images_per_s']:.1f} |",
        "",
        f"Ratio: **{results['ratio']:.2f}x**. Token agreement on the first image: {agreement:.3f}.",
    ]
    write_results(args.output_dir, f"pretokenize_{args.device.split(':')[0]}", results, lines)


if __name__ == "__main__":
    main()
