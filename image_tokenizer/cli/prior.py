"""Sampling from a prior: generate and complete."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fileio import atomic_path, atomic_write_text
from .common import (
    DEFAULT_PRIOR,
    add_common_options,
    add_sampling_options,
    blank_below,
    load_images,
    load_prior,
    positive_int,
    sampling_kwargs,
)

if TYPE_CHECKING:
    from ..prior import ImagePrior


def cmd_generate(args: argparse.Namespace) -> None:
    """Sample images from a prior and write them as one PNG grid (and the ids, when asked)."""
    from ..visualize import image_grid

    prior = load_prior(args.model, args.tokenizer, args.device)
    grid_size = tuple(args.grid) if args.grid else None
    maskgit = {"steps": args.steps} if args.steps is not None else {}
    ids = prior.generate(args.num, class_labels=args.class_label, batch_size=args.batch_size, output_type="ids",
                         grid_size=grid_size, **sampling_kwargs(args), **maskgit)
    images = prior.tokenizer.decode(ids)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        image_grid(images, columns=min(args.columns, len(images)), scale=args.scale).save(tmp, format="PNG")
    if args.ids_output:
        atomic_write_text(Path(args.ids_output), json.dumps(ids.tolist()) + "\n")
    index = None if args.class_label is None else int(prior.layout.check_class_labels(args.class_label)[0])
    label = "" if index is None else f" of class {index} ({prior.layout.class_names[index]})"
    tokens = "x".join(map(str, ids.shape[1:])) if prior.layout.kind == "grid" else f"{ids[0].numel()} {prior.layout.kind}"
    print(f"wrote {len(images)} generated images{label} ({tokens} tokens each) to {output}")


def cmd_complete(args: argparse.Namespace) -> None:
    """Keep the top rows of images' tokens and let the prior finish them; writes input | kept | completions."""
    from ..visualize import image_grid

    prior = load_prior(args.model, args.tokenizer, args.device)
    images = load_images(args.images, args.progress)
    tokenizer = prior.tokenizer
    rows = args.rows if args.rows is not None else tokenizer.grid_size[0] // 2
    ids = tokenizer.encode(images)
    kept = ids.clone()
    kept[:, rows:] = 0
    tiles = []
    for index in range(len(images)):
        completions = prior.complete(ids[index : index + 1, :rows].repeat(args.samples, 1, 1), output_type="ids",
                                     class_labels=args.class_label, **sampling_kwargs(args))
        tiles += [tokenizer.decode(ids[index]), blank_below(tokenizer.decode(kept[index]), rows, tokenizer)]
        tiles += tokenizer.decode(completions)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        image_grid(tiles, columns=2 + args.samples, scale=args.scale).save(tmp, format="PNG")
    print(f"wrote {output}: per row, the reconstruction, its top {rows} token rows, then {args.samples} completions")


def prior_info(prior: ImagePrior, name: str) -> dict[str, Any]:
    """What `info` says of a prior: its token layout, classes, sampling defaults and tokenizer."""
    layout = prior.layout
    return {
        "model": name,
        "kind": "image prior",
        "summary": repr(prior),
        "architecture": type(prior.model).__name__,
        "parameters": sum(p.numel() for p in prior.model.parameters()),
        "tokenizer": layout.tokenizer,
        "layout": {"codebook_size": layout.codebook_size, "grid_size": list(layout.grid_size),
                   "boi_token_id": layout.boi_token_id, "eoi_token_id": layout.eoi_token_id,
                   "pad_token_id": layout.pad_token_id, "vocab_size": layout.vocab_size,
                   "sequence_length": layout.sequence_length, "kind": layout.kind,
                   "prediction": layout.prediction},
        "classes": {str(i): name for i, name in enumerate(layout.class_names)},
        "class_label_column": layout.class_label_column,
        "null_class_token_id": layout.null_class_token_id if layout.conditional else None,
        "sampling_defaults": dataclasses.asdict(prior.sampling_defaults),
        "metrics": prior.card_info.get("metrics", {}),
    }


def add_commands(sub: Any) -> None:
    """generate and complete: sampling from a prior."""
    p = sub.add_parser("generate", help="sample images from a prior into a PNG grid")
    p.add_argument("--num", type=positive_int, default=16)
    p.add_argument("--output", default="generated.png")
    p.add_argument("--ids-output", help="also write the sampled ids as JSON")
    p.add_argument("--grid", type=positive_int, nargs=2, metavar=("H", "W"), help="token grid larger than trained: sliding window")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--columns", type=positive_int, default=8)
    p.add_argument("--steps", type=positive_int, help="a maskgit prior's parallel sampling steps (default 8)")
    add_sampling_options(p)
    add_common_options(p, DEFAULT_PRIOR)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("complete", help="finish images from their top token rows with a prior")
    p.add_argument("images", nargs="+")
    p.add_argument("--rows", type=positive_int, help="token rows to keep (default half the grid)")
    p.add_argument("--samples", type=positive_int, default=4, help="completions per image")
    p.add_argument("--output", default="completions.png")
    add_sampling_options(p)
    add_common_options(p, DEFAULT_PRIOR)
    p.set_defaults(func=cmd_complete)
