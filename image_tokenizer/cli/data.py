"""Datasets in and out: evaluate, pretokenize, pretokenize-merge, shapes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import background_name
from ..data.specs import SPEC_HELP, parse_spec
from ..errors import CLIError
from ..fileio import atomic_write_text
from .common import (
    DEFAULT_MODEL,
    add_background_option,
    add_common_options,
    add_pixel_budget,
    load_tokenizer,
    non_negative_int,
    note_blank,
    positive_int,
)

if TYPE_CHECKING:
    from ..pretokenize import PretokenizeOptions


def cmd_evaluate(args: argparse.Namespace) -> None:
    """PSNR, SSIM, codebook usage/perplexity (and hole recall on shapes) on a held-out set, as JSON."""
    from ..evaluation import evaluate_tokenizer, flat_metrics, load_eval_set
    from ..model_card import CARD_NAME, render_tokenizer_card

    tokenizer = load_tokenizer(args.model, args.device)
    config = tokenizer.config
    held_out = load_eval_set(
        args.data, config.resolution, config.preprocessing, num=args.num, seed=args.seed, split=args.split,
        image_column=args.image_column, strict=args.strict_data, max_pixels=args.max_pixels,
        min_side=config.grid_size[0], background=args.background,
    )
    if held_out.skipped:
        more = f"; and {held_out.skipped - 3} more (see the JSON's \"skipped\")" if held_out.skipped > 3 else ""
        print(f"skipped {held_out.skipped} image(s) that cannot be used: {'; '.join(held_out.skipped_errors[:3])}{more}",
              file=sys.stderr)
    metrics = evaluate_tokenizer(tokenizer, held_out.images, held_out.hole_masks, batch_size=args.batch_size,
                                 progress=args.progress, labels=held_out.labels)
    metrics["skipped_images"] = held_out.skipped
    metrics["skipped"] = held_out.skipped_errors
    metrics["data"] = args.data if args.data != "shapes" else f"shapes, seed {args.seed}"
    metrics["background"] = background_name(args.background)
    note_blank(metrics["blank_images"], metrics["num_images"], metrics["background"])
    metrics["split"] = held_out.split
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    if args.update_card:
        model_dir = Path(args.model or "")
        if not (model_dir / "config.json").is_file():
            raise CLIError("--update-card needs --model to be a local model directory")
        numbers = flat_metrics({k: v for k, v in metrics.items() if k not in ("data", "background", "split", "skipped")})
        tokenizer.card_info.setdefault("metrics", {}).update({f"heldout_{k}": v for k, v in numbers.items()})
        split = f", split {metrics['split']}" if metrics["split"] else ""
        tokenizer.card_info.setdefault("training", {})["held-out set"] = f"{metrics['data']}{split}, on {metrics['background']}"
        atomic_write_text(model_dir / CARD_NAME, render_tokenizer_card(tokenizer, model_dir.name, tokenizer.card_info))
        print(f"updated {model_dir / CARD_NAME}", file=sys.stderr)


def pretokenize_options(args: argparse.Namespace) -> PretokenizeOptions:
    """The command's flags as the one PretokenizeOptions of the run (the node split from the flags or the
    environment: torchrun, SLURM, a Kubernetes indexed job)."""
    from ..pretokenize import NodeSpec, PretokenizeOptions, node_spec

    return PretokenizeOptions(
        image_column=args.image_column, split=args.split, flip=args.flip, skip_bad=args.skip_bad,
        max_pixels=args.max_pixels, batch_size=args.batch_size, num_proc=args.num_proc, num_workers=args.num_workers,
        device=args.device, streaming=args.streaming, shard_size=args.shard_size,
        node=node_spec(args.num_nodes, args.node_rank) if args.streaming else NodeSpec(), progress=args.progress,
        output_dir=args.output, format=args.format, overwrite=args.overwrite, push_to_hub=args.push_to_hub,
        source=args.data, model=args.model or DEFAULT_MODEL, engine=args.engine, ray_address=args.ray_address,
        actors=args.actors, gpus_per_actor=args.gpus_per_actor,
    )


def cmd_pretokenize(args: argparse.Namespace) -> None:
    """A dataset of images -> a dataset of token ids (every split, or --split), written atomically (arrow or
    parquet), or streamed (one split; this worker's part with several nodes)."""
    from ..pretokenize import load_image_splits, pretokenize, pretokenize_streaming
    from ..pretokenize.card import check_can_push

    check_can_push(args.push_to_hub)  # before loading anything
    options = pretokenize_options(args)
    options.validate()
    tokenizer = load_tokenizer(args.model, "cpu")
    if options.engine == "ray" and parse_spec(args.data).kind == "wds":
        splits = args.data  # Ray reads the tar shards itself
    else:
        splits = load_image_splits(args.data, split=args.split, num=args.num, seed=args.seed, streaming=args.streaming,
                                   resolution=tokenizer.config.resolution)
    if options.node.num_nodes > 1:
        print(f"node {options.node.node_rank} of {options.node.num_nodes} (from {options.node.origin})", file=sys.stderr)
    if options.streaming or options.engine == "ray":  # shards; the summary, without reading the rows back
        _report_streaming(args, options, pretokenize_streaming(splits, tokenizer, options=options))
        return
    start = time.perf_counter()
    tokens, report = pretokenize(splits, tokenizer, options, return_report=True)
    rate = report["rows_in"] / max(time.perf_counter() - start, 1e-9)
    skipped = f", skipped {report['skipped']} bad image(s) (see {args.output}/skipped_rows.json)" if report["skipped"] else ""
    pushed = f"; uploaded to {args.push_to_hub}" if args.push_to_hub else ""
    rows = ", ".join(f"{name} {len(part)}" for name, part in tokens.items())
    print(f"wrote {report['rows_out']} rows ({rows}) to {args.output} ({args.format}) at {rate:.1f} images/s{skipped}"
          f"{pushed}; load with {loader_hint(args.output, args.format, list(tokens))}")


def loader_hint(output: str, fmt: str, splits: list[str]) -> str:
    """How to read an output back: load_from_disk (arrow), else load_dataset (every split, or the one)."""
    if fmt == "arrow":
        return f"datasets.load_from_disk('{output}')"
    if len(splits) == 1:
        return f"datasets.load_dataset('{output}', split='{splits[0]}')"
    return f"datasets.load_dataset('{output}') (splits {', '.join(splits)})"


def _report_streaming(args: argparse.Namespace, options: PretokenizeOptions, summary: dict[str, Any]) -> None:
    """What a --streaming worker wrote, and whether the output is complete (the last node to finish merges)."""
    from ..pretokenize import INFO_NAME

    node = options.node
    where = f"node {node.node_rank} of {node.num_nodes}: " if node.num_nodes > 1 else ""
    loader = f"load with {loader_hint(args.output, 'parquet', [summary['split']])}"
    done = f"; {loader}" if node.num_nodes == 1 else ""
    print(f"{where}wrote {summary['shards']} parquet shard(s) of {summary['rows_in']} input rows to {args.output}/data{done}")
    if node.num_nodes > 1:
        complete = (Path(args.output) / INFO_NAME).is_file()
        print(f"all nodes done: the output is complete; {loader}" if complete else
              "other nodes are still running; the last one to finish merges (or run image-tokenizer pretokenize-merge)")


def cmd_pretokenize_merge(args: argparse.Namespace) -> None:
    """Check that every node of a node-sharded pre-tokenization finished, and mark the output complete."""
    from ..pretokenize import merge_nodes

    merged = merge_nodes(args.output)
    print(f"{args.output}: {merged.get('num_nodes', 1)} node(s), {merged['shards']} shards, {merged['rows_in']} input rows; "
          f"load with {loader_hint(args.output, 'parquet', [merged.get('split') or 'train'])}")


def cmd_shapes(args: argparse.Namespace) -> None:
    from ..data.shapes import save_image_folder

    if args.num < 1:
        raise CLIError(f"--num must be at least 1, got {args.num}")
    start = time.perf_counter()
    save_image_folder(args.output_dir, args.num, seed=args.seed, progress=args.progress, num_workers=args.workers)
    print(f"wrote {args.num} shapes images (seed {args.seed}) to {args.output_dir} in {time.perf_counter() - start:.1f} s")


def add_commands(sub: Any) -> None:
    """evaluate, pretokenize, pretokenize-merge, shapes: datasets in and out."""
    p = sub.add_parser("evaluate", help="PSNR, SSIM, codebook usage/perplexity, hole recall on a held-out set")
    p.add_argument("--data", default="shapes",
                   help=f"{SPEC_HELP} ('shapes': the held-out generator, seed --seed)")
    p.add_argument("--num", type=non_negative_int, default=1000, help="number of images (0 = all)")
    p.add_argument("--seed", type=non_negative_int, default=1, help="shapes seed (held-out = 1)")
    p.add_argument("--split", help="the split to score (default: test, then validation; a folder without split "
                   "folders is read whole; never the training images unless named)")
    p.add_argument("--image-column", default="image")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--strict-data", action="store_true", help="stop on an image that cannot be used (unreadable, "
                   "over --max-pixels, too small for the token grid) instead of skipping and naming it")
    add_pixel_budget(p)
    p.add_argument("--output", help="write the metrics JSON here")
    p.add_argument("--update-card", action="store_true", help="record the metrics in the model's README.md")
    add_background_option(p)
    add_common_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("pretokenize", help="a dataset of images -> a dataset of token ids")
    p.add_argument("--data", required=True, help=SPEC_HELP)
    p.add_argument("--output", required=True)
    p.add_argument("--format", choices=["arrow", "parquet"], default="arrow")
    p.add_argument("--image-column", default="image")
    p.add_argument("--split", help="the one split to write (default: every split, each a `datasets` split of the "
                   "output, named as in the source: train/, test/, validation/ folders; --streaming needs one)")
    p.add_argument("--num", type=positive_int, default=1000, help="shapes: number of images")
    p.add_argument("--seed", type=non_negative_int, default=0, help="shapes: seed")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per batch (default 64; on a GPU 4 micro-batches)")
    p.add_argument("--num-proc", type=positive_int, default=None)
    p.add_argument("--num-workers", type=non_negative_int, default=None,
                   help="decode in this many DataLoader workers and encode large batches here (default on a GPU: up to 8)")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped copies, marked in a 'flipped' column")
    p.add_argument("--skip-bad", action="store_true", help="skip images that cannot be used (undecodable, too small, over the pixel budget) and list them in "
                   "skipped_rows.json")
    add_pixel_budget(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the finished output folder as a Hub dataset repo")
    p.add_argument("--streaming", action="store_true", help="stream rows and write resumable parquet shards")
    p.add_argument("--shard-size", type=positive_int, default=10000, help="input rows per shard with --streaming")
    p.add_argument("--num-nodes", type=positive_int, help="--streaming: split the input across this many workers "
                   "(default: WORLD_SIZE from torchrun, SLURM_ARRAY_TASK_COUNT, or 1)")
    p.add_argument("--node-rank", type=non_negative_int, help="--streaming: this worker's part, 0..num-nodes-1 "
                   "(default: RANK, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local: this process and its workers; "
                   "ray: Ray Data actors write --streaming's resumable shards (pip install 'image-tokenizer[ray]')")
    p.add_argument("--ray-address", help="--engine ray: the cluster to join (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--actors", type=positive_int, help="--engine ray: tokenizer actors (default: one per GPU with "
                   "--gpus-per-actor, else CPU actors on 3/4 of the CPUs less one)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="--engine ray: GPUs each actor holds (default 0: CPU actors)")
    add_common_options(p)
    p.set_defaults(func=cmd_pretokenize)

    p = sub.add_parser("pretokenize-merge", help="check a node-sharded --streaming output and mark it complete")
    p.add_argument("output")
    p.set_defaults(func=cmd_pretokenize_merge)

    p = sub.add_parser("shapes", help="write a procedural shapes image folder (with metadata.jsonl)")
    p.add_argument("--num", type=positive_int, required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--workers", type=positive_int, default=1)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_shapes)
