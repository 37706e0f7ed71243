"""How tokenizers do on real images nobody here drew: the held-out emoji (both styles), per style and group.

    python benchmarks/emoji_eval.py [--models shapes-64 shapes-64-small] [--split test] [--name emoji_eval] [--update-cards]
    python benchmarks/emoji_eval.py --data FOLDER_OF_PNGS --background white   # transparency: one colour for all models
    python benchmarks/emoji_eval.py --models runs/emoji/tokenizer/final --data .whl/emoji64/test --output-dir DIR

The emoji source is image_tokenizer/data/emoji.py (Noto Color Emoji and Twemoji, split by emoji). Writes
benchmarks/results/NAME.{json,md}: PSNR, SSIM and codebook usage of every model on the whole split, and PSNR per
style and per Unicode group. Transparent pixels (a folder of RGBA PNGs) are composited onto --background (default
white) before every model and the score, so the models are scored on the same pixels; the emoji source itself is
already RGB on white. With --update-cards, each bundled model's card records them (metrics
`emoji_<split>_*`) and says what the model is for.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImageTokenizer
from image_tokenizer.cli.common import add_background_option
from image_tokenizer.config import background_name
from image_tokenizer.data.emoji import CREDITS
from image_tokenizer.evaluation import evaluate_tokenizer, load_eval_set
from image_tokenizer.fileio import atomic_write_text
from image_tokenizer.hub import PRETRAINED_DIR
from image_tokenizer.model_card import CARD_NAME, render_tokenizer_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["shapes-64", "shapes-64-small"])
    parser.add_argument("--split", default=None, help="default: test, then validation (emoji: test); a saved split "
                        "(benchmarks/emoji_data.py) is read whole")
    parser.add_argument("--data", default="emoji", help="'emoji', or the emoji split saved by benchmarks/emoji_data.py")
    parser.add_argument("--num", type=int, default=0, help="the first NUM images (0 = all)")
    parser.add_argument("--output-dir", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--name", default="emoji_eval")
    parser.add_argument("--update-cards", action="store_true", help="record the figures in the bundled models' cards")
    add_background_option(parser)
    args = parser.parse_args()
    rows, load = {}, []
    for model in args.models:
        tokenizer = ImageTokenizer.from_pretrained(model)
        config = tokenizer.config
        held_out = load_eval_set(args.data, config.resolution, config.preprocessing, num=args.num, split=args.split,
                                 background=args.background)
        start = time.perf_counter()
        rows[model] = evaluate_tokenizer(tokenizer, held_out.images, labels=held_out.labels)
        rows[model]["seconds"] = round(time.perf_counter() - start, 1)
        load.append(round(os.getloadavg()[0], 2))
    command = "python " + " ".join(sys.argv)
    results = {"command": command, "machine": machine_info(), "load_average_after_each": load, "split": args.split,
               "background": background_name(args.background), "models": rows}
    write_results(args.output_dir, args.name, results, table(rows, args.split, command, results))
    if args.update_cards:
        for model, metrics in rows.items():
            update_card(model, metrics, args.split, args.name)


def update_card(model: str, metrics: dict, split: str, name: str) -> None:
    """Record the emoji figures in a bundled model's card, and say what the model is for: emoji (with the data's
    credits and licences) for a model trained on them, and plainly not real images for a shapes model."""
    directory = PRETRAINED_DIR / model
    tokenizer = ImageTokenizer.from_pretrained(directory)
    figures = {f"emoji_{split}_psnr_db": round(metrics["psnr_db"], 2), f"emoji_{split}_ssim": round(metrics["ssim"], 3),
               f"emoji_{split}_codebook_usage": round(metrics["codebook_usage"], 3)}
    figures.update({f"emoji_{split}_psnr_db_{style}": round(m["psnr_db"], 2) for style, m in metrics["by_style"].items()})
    tokenizer.card_info.setdefault("metrics", {}).update(figures)
    scores = (f"On {metrics['num_images']} held-out emoji (Noto and Twemoji) it scores {metrics['psnr_db']:.1f} dB PSNR, "
              f"SSIM {metrics['ssim']:.2f} (benchmarks/results/{name}.md).")
    if tokenizer.card_info.get("training", {}).get("data") == "emoji":
        tokenizer.card_info["intended_use"] = (
            f"Trained on the emoji train split (`--data emoji`) at {tokenizer.config.resolution}x{tokenizer.config.resolution} "
            f"on 2 CPU cores: a small tokenizer for emoji and similar flat colour art. {scores} Not for photographs. "
            f"Training data: {CREDITS}. The Twemoji graphics are licensed CC-BY 4.0, so credit them when you use "
            "this model's outputs; the Noto images are Apache-2.0."
        )
    else:
        tokenizer.card_info["intended_use"] = (
            f"Trained on procedurally drawn shapes only, to show and test the library: not for real images. {scores} "
            "For real images, convert a published tokenizer (`image-tokenizer convert`) or train on your own folder "
            "(training/README.md)."
        )
    atomic_write_text(directory / CARD_NAME, render_tokenizer_card(tokenizer, model, tokenizer.card_info))


def table(rows: dict, split: str, command: str, results: dict) -> list[str]:
    """The markdown a person reads: one row per model, then PSNR per style and per group."""
    first = next(iter(rows.values()))
    styles, groups = list(first["by_style"]), list(first["by_group"])
    lines = [f"# Tokenizers on held-out emoji ({split} split, {first['num_images']} images, both styles)", "",
             f"`{command}`", "", machine_line(results["machine"]), "",
             "| model | PSNR (dB) | SSIM | codebook usage | " + " | ".join(f"PSNR {s}" for s in styles) + " |",
             "|---|---|---|---|" + "---|" * len(styles)]
    for model, m in rows.items():
        lines.append(f"| {model} | {m['psnr_db']:.2f} | {m['ssim']:.3f} | {m['codebook_usage']:.3f} | "
                     + " | ".join(f"{m['by_style'][s]['psnr_db']:.2f}" for s in styles) + " |")
    lines += ["", "PSNR (dB) per Unicode group:", "", "| model | " + " | ".join(groups) + " |",
              "|---|" + "---|" * len(groups)]
    for model, m in rows.items():
        lines.append(f"| {model} | " + " | ".join(f"{m['by_group'][g]['psnr_db']:.2f}" for g in groups) + " |")
    return lines


if __name__ == "__main__":
    main()
