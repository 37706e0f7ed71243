"""The main job: reconstruct held-out shapes with the bundled model (and sample from the bundled prior)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..fileio import atomic_path, atomic_write_text
from ..hub import bundled_models
from ..metrics import psnr
from .common import (
    DEFAULT_MODEL,
    DEFAULT_PRIOR,
    EMOJI_MODEL,
    add_common_options,
    blank_below,
    load_tokenizer,
    positive_int,
)

if TYPE_CHECKING:
    from ..tokenizer import ImageTokenizer


def cmd_demo(args: argparse.Namespace) -> None:
    """The main job: reconstruct held-out shapes with the bundled model and write a side-by-side grid."""
    from ..config import ImageTokenizerConfig, QuantizerConfig
    from ..data.shapes import HELDOUT_SEED, generate
    from ..tokenizer import ImageTokenizer
    from ..visualize import side_by_side

    if args.model is None and DEFAULT_MODEL not in bundled_models():
        print(
            f"NOTE: no trained model {DEFAULT_MODEL!r} is bundled yet; running on a freshly initialised tiny model "
            "(random weights), so the reconstructions are noise. This shows the pipeline, not quality."
        )
        config = ImageTokenizerConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=32,
                                      quantizer=QuantizerConfig(codebook_size=512, codebook_dim=8))
        torch.manual_seed(0)
        tokenizer = ImageTokenizer(config).to(args.device)
        name = "untrained tiny model"
    else:
        tokenizer = load_tokenizer(args.model, args.device)
        name = args.model or DEFAULT_MODEL
    print(f"model: {name}\n{tokenizer!r}")
    samples = list(generate(args.num, seed=HELDOUT_SEED))
    originals = [s.to_pil() for s in samples]
    start = time.perf_counter()
    ids = tokenizer.encode(originals)
    reconstructions = tokenizer.decode(ids)
    elapsed = time.perf_counter() - start
    scores = psnr(np.stack([s.image for s in samples]), np.stack([np.asarray(r) for r in reconstructions]))
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "reconstructions.png") as tmp:
        side_by_side(originals, reconstructions).save(tmp, format="PNG")
    atomic_write_text(out_dir / "ids.json", json.dumps(ids.tolist()) + "\n")
    print(f"encoded and decoded {len(samples)} held-out shapes images in {elapsed:.2f} s; mean PSNR {scores.mean():.2f} dB")
    print(f"first image's tokens: {tokenizer.convert_ids_to_tokens(ids[0].flatten()[:6].tolist())} ...")
    print(f"wrote {out_dir / 'reconstructions.png'} (input | reconstruction) and {out_dir / 'ids.json'}")
    if DEFAULT_PRIOR in bundled_models() and args.model is None:
        _demo_prior(tokenizer, samples, out_dir, args)
    else:
        print(f"(no bundled prior {DEFAULT_PRIOR!r} to use with this tokenizer: skipping generation and completion)")
    if EMOJI_MODEL in bundled_models() and args.model is None:
        _demo_emoji(out_dir, args)


def _demo_emoji(out_dir: Path, args: argparse.Namespace) -> None:
    """Real images nobody here drew: the bundled held-out emoji through the bundled emoji tokenizer."""
    from ..data.emoji_examples import load_examples
    from ..visualize import inputs_over_reconstructions

    tokenizer = load_tokenizer(EMOJI_MODEL, args.device)
    originals, tiles = load_examples()
    reconstructions = tokenizer.decode(tokenizer.encode(originals))
    scores = psnr(np.stack([np.asarray(o) for o in originals]), np.stack([np.asarray(r) for r in reconstructions]))
    styles = [tile["style"] for tile in tiles]
    per_style = ", ".join(f"{style} {np.mean([s for s, t in zip(scores, styles) if t == style]):.2f} dB" for style in dict.fromkeys(styles))
    with atomic_path(out_dir / "emoji_reconstructions.png") as tmp:
        inputs_over_reconstructions(originals, reconstructions).save(tmp, format="PNG")
    print(f"{EMOJI_MODEL} on {len(originals)} held-out emoji (Noto Color Emoji, Apache-2.0; Twemoji, CC-BY 4.0): "
          f"mean PSNR {scores.mean():.2f} dB ({per_style}); wrote {out_dir / 'emoji_reconstructions.png'} "
          "(top: input, bottom: reconstruction)")


def _demo_prior(tokenizer: ImageTokenizer, samples: list, out_dir: Path, args: argparse.Namespace) -> None:
    """Generation per class with guidance, and completion of half-images, with the bundled prior."""
    from ..prior import ImagePrior
    from ..visualize import image_grid

    prior = ImagePrior.from_pretrained(DEFAULT_PRIOR, tokenizer=tokenizer, device=args.device)
    print(f"prior: {prior!r}; sampling: {prior.sampling_defaults.describe()}")
    start = time.perf_counter()
    per_class = 4
    if prior.layout.conditional:
        labels = [c for c in range(prior.layout.num_classes) for _ in range(per_class)]
        images = prior.generate(len(labels), class_labels=labels, guidance_scale=2.0, seed=0)
        columns = per_class
        what = f"one row per class ({', '.join(prior.layout.class_names)} {prior.layout.class_label_column or ''}), guidance 2"
    else:
        images, columns, what = prior.generate(16, seed=0), 8, "unconditional"
    with atomic_path(out_dir / "generated.png") as tmp:
        image_grid(images, columns=columns, scale=2).save(tmp, format="PNG")
    print(f"generated {len(images)} images in {time.perf_counter() - start:.1f} s: {out_dir / 'generated.png'} ({what})")
    start = time.perf_counter()
    originals = [s.to_pil() for s in samples[:4]]
    half = tokenizer.grid_size[0] // 2
    tiles = []
    for index, original in enumerate(originals):
        ids = tokenizer.encode(original)
        completions = prior.complete(ids[:half].repeat(3, 1, 1), seed=index, output_type="ids")
        tiles += [original, blank_below(tokenizer.decode(ids), half, tokenizer), *tokenizer.decode(completions)]
    with atomic_path(out_dir / "completions.png") as tmp:
        image_grid(tiles, columns=5, scale=2).save(tmp, format="PNG")
    print(
        f"completed {len(originals)} half-images 3 ways in {time.perf_counter() - start:.1f} s: "
        f"{out_dir / 'completions.png'} (input | top half kept | 3 completions)"
    )


def add_commands(sub: Any) -> None:
    """demo: the main job."""
    p = sub.add_parser("demo", help="the main job: reconstruct held-out shapes with the bundled model")
    p.add_argument("--output-dir", default="demo_output")
    p.add_argument("--num", type=positive_int, default=8)
    add_common_options(p)
    p.set_defaults(func=cmd_demo)
