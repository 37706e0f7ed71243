"""`image-tokenizer` command line: encode, decode, reconstruct, info, shapes, demo.

User mistakes end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .devices import check_device
from .errors import CLIError, ImageTokenizerError, InvalidIdsError, InvalidRequestError
from .fileio import atomic_path, atomic_write_text
from .hub import bundled_models
from .image_processing import MAX_IMAGE_PIXELS, load_image, postprocess
from .metrics import psnr
from .tokenizer import MAX_NATIVE_PIXELS

DEFAULT_MODEL = "shapes-64"
DEFAULT_PRIOR = "shapes-64-prior"




def _load_tokenizer(name: str | None, device: str):
    from .tokenizer import ImageTokenizer

    if name is None:
        if DEFAULT_MODEL not in bundled_models():
            raise CLIError(f"no bundled model {DEFAULT_MODEL!r} in this install yet; pass --model DIR_OR_REPO")
        name = DEFAULT_MODEL
    return ImageTokenizer.from_pretrained(name, device=device)


def _load_prior(name: str | None, tokenizer_name: str | None, device: str):
    from .prior import ImagePrior

    if name is None:
        if DEFAULT_PRIOR not in bundled_models():
            raise CLIError(f"no bundled prior {DEFAULT_PRIOR!r} in this install yet; pass --model DIR_OR_REPO")
        name = DEFAULT_PRIOR
    tokenizer = _load_tokenizer(tokenizer_name, device) if tokenizer_name else None
    return ImagePrior.from_pretrained(name, tokenizer=tokenizer, device=device)


def _sampling_kwargs(args: argparse.Namespace) -> dict:
    """The sampling options given on the command line; the prior's own defaults fill in the rest."""
    given = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    return {"seed": args.seed, "guidance_scale": args.guidance, **{k: v for k, v in given.items() if v is not None}}


def _load_images(paths: Sequence[str], progress: bool, max_pixels: int | None = None) -> list:
    bar = tqdm(paths, desc="reading", unit="img", disable=not progress or len(paths) < 2)
    return [load_image(p, max_pixels) for p in bar]


def _encode_in_batches(
    tokenizer, images: list, batch_size: int, native_size: bool, progress: bool, max_native_pixels: int = MAX_NATIVE_PIXELS
) -> list[torch.Tensor]:
    grids: list[torch.Tensor] = []
    bar = tqdm(total=len(images), desc="encoding", unit="img", disable=not progress or len(images) < 2)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        encoded = tokenizer.encode(batch, native_size=native_size, max_native_pixels=max_native_pixels)
        grids.extend(list(encoded))
        bar.update(len(batch))
    bar.close()
    return grids


def cmd_encode(args: argparse.Namespace) -> None:
    tokenizer = _load_tokenizer(args.model, args.device)
    images = _load_images(args.images, args.progress, args.max_pixels)
    grids = _encode_in_batches(tokenizer, images, args.batch_size, args.native_size, args.progress, args.max_native_pixels)
    if args.output is None or args.output.endswith(".json"):
        payload = {
            "vocab_size": tokenizer.vocab_size,
            "images": [{"path": p, "grid": list(g.shape), "ids": g.tolist()} for p, g in zip(args.images, grids)],
        }
        text = json.dumps(payload)
        if args.output is None:
            print(text)
        else:
            atomic_write_text(args.output, text + "\n")
    elif args.output.endswith(".npy"):
        shapes = {tuple(g.shape) for g in grids}
        if len(shapes) > 1:
            raise CLIError(f"images gave grids of different sizes {sorted(shapes)}; write --output ids.json instead")
        dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32
        with atomic_path(args.output) as tmp, open(tmp, "wb") as handle:
            np.save(handle, torch.stack(grids).numpy().astype(dtype))
    else:
        raise CLIError(f"--output must end in .npy or .json, got {args.output!r}")
    if args.output:
        print(f"wrote ids of {len(grids)} image(s) to {args.output}", file=sys.stderr)


def _read_ids(path: str) -> list[np.ndarray]:
    source = Path(path)
    if not source.is_file():
        raise CLIError(f"{path}: no such ids file")
    if source.suffix == ".npy":
        try:
            array = np.load(source, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise CLIError(f"{path}: not a readable .npy array ({error})") from None
        return [array] if array.ndim <= 2 else list(array)
    if source.suffix == ".json":
        try:
            data = json.loads(source.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CLIError(f"{path}: not valid JSON ({error})") from None
        if isinstance(data, dict) and "images" in data:  # what `encode --output x.json` writes
            items = data["images"]
            if not isinstance(items, list) or not all(isinstance(i, dict) and "ids" in i for i in items):
                raise CLIError(f"{path}: 'images' must be a list of objects with an 'ids' field")
            return [_id_array(item["ids"], path) for item in items]
        if not isinstance(data, list):
            raise CLIError(f"{path}: expected a JSON array of ids or an object with 'images', got {type(data).__name__}")
        return [_id_array(data, path)]
    raise CLIError(f"{path}: ids must be a .npy or .json file")


def _id_array(data: object, path: str) -> np.ndarray:
    try:
        return np.asarray(data)
    except ValueError:
        raise CLIError(f"{path}: ids must form a rectangular array of integers") from None


def cmd_decode(args: argparse.Namespace) -> None:
    tokenizer = _load_tokenizer(args.model, args.device)
    grids = _read_ids(args.ids)
    output = Path(args.output)
    targets = [output] if len(grids) == 1 else [output.with_name(f"{output.stem}_{i:04d}{output.suffix}") for i in range(len(grids))]
    for grid in grids:
        if grid.dtype.kind not in "iu":
            raise InvalidIdsError(f"{args.ids}: ids must be integers, got dtype {grid.dtype}")
    shapes = {g.shape for g in grids}
    if len(shapes) == 1 and len(grids) > 1:
        images = tokenizer.decode(np.stack(grids).astype(np.int64))
    else:
        images = [tokenizer.decode(g.astype(np.int64)) for g in grids]
    for image, target in tqdm(list(zip(images, targets)), desc="writing", disable=not args.progress or len(grids) < 2):
        with atomic_path(target) as tmp:
            image.save(tmp, format="PNG")
    print(f"wrote {len(targets)} image(s): {targets[0]}{' ...' if len(targets) > 1 else ''}", file=sys.stderr)


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from .visualize import side_by_side

    tokenizer = _load_tokenizer(args.model, args.device)
    images = _load_images(args.images, args.progress)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grids = _encode_in_batches(tokenizer, images, args.batch_size, False, args.progress)
    inputs, outputs, scores = [], [], []
    for path, image, grid in zip(args.images, images, grids):
        reconstruction = tokenizer.decode(grid)
        pixels, _ = tokenizer.preprocess(image)
        reference = postprocess(pixels[0].unsqueeze(0), tokenizer.config.preprocessing, "pil")[0]
        inputs.append(reference)
        outputs.append(reconstruction)
        scores.append(float(psnr(np.asarray(reference), np.asarray(reconstruction))))
        with atomic_path(out_dir / f"{Path(path).stem}_reconstruction.png") as tmp:
            reconstruction.save(tmp, format="PNG")
    with atomic_path(out_dir / "comparison.png") as tmp:
        side_by_side(inputs, outputs).save(tmp, format="PNG")
    print(f"reconstructed {len(images)} image(s) into {out_dir}; mean PSNR {np.mean(scores):.2f} dB")


def cmd_info(args: argparse.Namespace) -> None:
    tokenizer = _load_tokenizer(args.model, "cpu")
    config = tokenizer.config
    info = {
        "model": args.model,
        "summary": repr(tokenizer),
        "resolution": config.resolution,
        "grid_size": list(config.grid_size),
        "codebook_size": tokenizer.vocab_size,
        "codebook_dim": config.quantizer.codebook_dim,
        "vocab_len": len(tokenizer),
        "special_tokens": {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens},
        "parameters": sum(p.numel() for p in tokenizer.model.parameters()),
        "metrics": tokenizer.card_info.get("metrics", {}),
    }
    print(json.dumps(info, indent=2))


def cmd_shapes(args: argparse.Namespace) -> None:
    from .data.shapes import save_image_folder

    if args.num < 1:
        raise CLIError(f"--num must be at least 1, got {args.num}")
    start = time.perf_counter()
    save_image_folder(args.output_dir, args.num, seed=args.seed, progress=args.progress, num_workers=args.workers)
    print(f"wrote {args.num} shapes images (seed {args.seed}) to {args.output_dir} in {time.perf_counter() - start:.1f} s")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """PSNR, SSIM, codebook usage/perplexity (and hole recall on shapes) on a held-out set, as JSON."""
    from .evaluation import evaluate_tokenizer, load_eval_set
    from .model_card import CARD_NAME, render_tokenizer_card

    tokenizer = _load_tokenizer(args.model, args.device)
    config = tokenizer.config
    images, masks, skipped = load_eval_set(
        args.data, config.resolution, config.preprocessing, num=args.num, seed=args.seed, split=args.split,
        image_column=args.image_column, strict=args.strict_data,
    )
    metrics = evaluate_tokenizer(tokenizer, images, masks, batch_size=args.batch_size, progress=args.progress)
    metrics["skipped_images"] = skipped
    metrics["data"] = args.data if args.data != "shapes" else f"shapes, seed {args.seed}"
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    if args.update_card:
        model_dir = Path(args.model or "")
        if not (model_dir / "config.json").is_file():
            raise CLIError("--update-card needs --model to be a local model directory")
        numbers = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items() if k != "data"}
        tokenizer.card_info.setdefault("metrics", {}).update({f"heldout_{k}": v for k, v in numbers.items()})
        tokenizer.card_info.setdefault("training", {})["held-out set"] = metrics["data"]
        atomic_write_text(model_dir / CARD_NAME, render_tokenizer_card(tokenizer, model_dir.name, tokenizer.card_info))
        print(f"updated {model_dir / CARD_NAME}", file=sys.stderr)


def cmd_pretokenize(args: argparse.Namespace) -> None:
    """A dataset of images -> a dataset of token ids, written atomically (arrow or parquet)."""
    from .pretokenize import (
        load_image_dataset,
        pretokenize,
        tokenizer_fingerprint,
        write_token_dataset,
    )

    tokenizer = _load_tokenizer(args.model, "cpu")
    if args.streaming:
        _pretokenize_streaming(args, tokenizer)
        return
    dataset = load_image_dataset(args.data, split=args.split, num=args.num, seed=args.seed)
    start = time.perf_counter()
    tokens, report = pretokenize(
        dataset, tokenizer, image_column=args.image_column, batch_size=args.batch_size, num_proc=args.num_proc,
        device=args.device, flip=args.flip, skip_bad=args.skip_bad, return_report=True, num_workers=args.num_workers,
    )
    elapsed = time.perf_counter() - start
    info = {
        "source": args.data,
        "model": args.model or DEFAULT_MODEL,
        "fingerprint": tokens._fingerprint,
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "rows": len(tokens),
        "flip": args.flip,
        "grid_size": list(tokenizer.grid_size),
        "vocab_size": tokenizer.vocab_size,
    }
    write_token_dataset(tokens, args.output, args.format, info, args.overwrite, report if args.skip_bad else None)
    rate = report["rows_in"] / max(elapsed, 1e-9)
    skipped = f", skipped {report['skipped']} unreadable (see {args.output}/skipped_rows.json)" if report["skipped"] else ""
    print(f"wrote {len(tokens)} rows to {args.output} ({args.format}) at {rate:.1f} images/s{skipped}")


def _pretokenize_streaming(args: argparse.Namespace, tokenizer) -> None:
    """--streaming: this worker's part (one node by default, or --num-nodes/--node-rank, torchrun, SLURM)."""
    import datasets

    from .pretokenize import load_image_dataset, pretokenize_streaming
    from .streaming import node_spec

    node = node_spec(args.num_nodes, args.node_rank)
    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"  # torchrun: one process per GPU
    if args.data.startswith("hf:"):
        stream = datasets.load_dataset(args.data[3:], split=args.split, streaming=True)
    else:
        stream = load_image_dataset(args.data, split=args.split, num=args.num, seed=args.seed)
    if node.num_nodes > 1:
        print(f"node {node.node_rank} of {node.num_nodes} (from {node.origin})", file=sys.stderr)
    summary = pretokenize_streaming(
        stream, tokenizer.to(device), args.output, image_column=args.image_column, shard_size=args.shard_size,
        batch_size=args.batch_size or 64, flip=args.flip, skip_bad=args.skip_bad, source=args.data,
        overwrite=args.overwrite, progress=args.progress, node=node,
    )
    where = f"node {node.node_rank} of {node.num_nodes}: " if node.num_nodes > 1 else ""
    print(f"{where}wrote {summary['shards']} parquet shard(s) of {summary['rows_in']} input rows to {args.output}/data")
    if node.num_nodes > 1:
        complete = (Path(args.output) / "pretokenize_info.json").is_file()
        print("all nodes done: the output is complete" if complete else
              "other nodes are still running; the last one to finish merges (or run image-tokenizer pretokenize-merge)")


def cmd_pretokenize_merge(args: argparse.Namespace) -> None:
    """Check that every node of a node-sharded pre-tokenization finished, and mark the output complete."""
    from .streaming import merge_nodes

    merged = merge_nodes(args.output)
    print(f"{args.output}: {merged.get('num_nodes', 1)} node(s), {merged['shards']} shards, {merged['rows_in']} input rows; "
          f"load with datasets.load_dataset('parquet', data_dir='{args.output}/data')")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def device_name(text: str) -> str:
    """argparse type: a torch device this machine has ('cpu', 'cuda', 'cuda:1', 'mps')."""
    try:
        check_device(text)
    except InvalidRequestError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def cmd_generate(args: argparse.Namespace) -> None:
    """Sample images from a prior and write them as one PNG grid (and the ids, when asked)."""
    from .visualize import image_grid

    prior = _load_prior(args.model, args.tokenizer, args.device)
    grid_size = tuple(args.grid) if args.grid else None
    ids = prior.generate(args.num, class_labels=args.class_label, batch_size=args.batch_size, output_type="ids",
                         grid_size=grid_size, **_sampling_kwargs(args))
    images = prior.tokenizer.decode(ids)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        image_grid(images, columns=min(args.columns, len(images)), scale=args.scale).save(tmp, format="PNG")
    if args.ids_output:
        atomic_write_text(Path(args.ids_output), json.dumps(ids.tolist()) + "\n")
    label = "" if args.class_label is None else f" of class {args.class_label} ({prior.layout.class_names[args.class_label]})"
    print(f"wrote {len(images)} generated images{label} ({ids.shape[1]}x{ids.shape[2]} tokens each) to {output}")


def cmd_complete(args: argparse.Namespace) -> None:
    """Keep the top rows of images' tokens and let the prior finish them; writes input | kept | completions."""
    from .visualize import image_grid

    prior = _load_prior(args.model, args.tokenizer, args.device)
    images = _load_images(args.images, args.progress)
    tokenizer = prior.tokenizer
    rows = args.rows if args.rows is not None else tokenizer.grid_size[0] // 2
    ids = tokenizer.encode(images)
    kept = ids.clone()
    kept[:, rows:] = 0
    tiles = []
    for index in range(len(images)):
        completions = prior.complete(ids[index : index + 1, :rows].repeat(args.samples, 1, 1), output_type="ids",
                                     class_labels=args.class_label, **_sampling_kwargs(args))
        tiles += [tokenizer.decode(ids[index]), _blank_below(tokenizer.decode(kept[index]), rows, tokenizer)]
        tiles += tokenizer.decode(completions)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        image_grid(tiles, columns=2 + args.samples, scale=args.scale).save(tmp, format="PNG")
    print(f"wrote {output}: per row, the reconstruction, its top {rows} token rows, then {args.samples} completions")


def _blank_below(image, rows: int, tokenizer):
    """Black out the part of a decoded image below the kept token rows (what the prior did not see)."""
    array = np.asarray(image).copy()
    array[rows * (array.shape[0] // tokenizer.grid_size[0]) :] = 0
    from PIL import Image

    return Image.fromarray(array)


def cmd_demo(args: argparse.Namespace) -> None:
    """The main job: reconstruct held-out shapes with the bundled model and write a side-by-side grid."""
    from .config import ImageTokenizerConfig, QuantizerConfig
    from .data.shapes import HELDOUT_SEED, generate
    from .tokenizer import ImageTokenizer
    from .visualize import side_by_side

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
        tokenizer = _load_tokenizer(args.model, args.device)
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


def _demo_prior(tokenizer, samples: list, out_dir: Path, args: argparse.Namespace) -> None:
    """Generation per class with guidance, and completion of half-images, with the bundled prior."""
    from .prior import ImagePrior
    from .visualize import image_grid

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
        tiles += [original, _blank_below(tokenizer.decode(ids), half, tokenizer), *tokenizer.decode(completions)]
    with atomic_path(out_dir / "completions.png") as tmp:
        image_grid(tiles, columns=5, scale=2).save(tmp, format="PNG")
    print(
        f"completed {len(originals)} half-images 3 ways in {time.perf_counter() - start:.1f} s: "
        f"{out_dir / 'completions.png'} (input | top half kept | 3 completions)"
    )


def cmd_convert(args: argparse.Namespace) -> None:
    """A published checkpoint (taming, LlamaGen, diffusers, Chameleon, Janus) -> a saved ImageTokenizer."""
    from .converters import convert

    tokenizer = convert(args.src, format=args.format, resolution=args.resolution, revision=args.revision)
    output = Path(args.output)
    tokenizer.save_pretrained(output, model_name=output.name)
    h, w = tokenizer.grid_size
    print(f"converted {args.src} ({tokenizer.card_info['conversion']['format']}) -> {output}: {tokenizer.vocab_size} codes, "
          f"{h}x{w} tokens per {tokenizer.config.resolution}x{tokenizer.config.resolution} image"
          f"{', encoder only' if tokenizer.config.encoder_only else ''}", file=sys.stderr)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (and exit status 2), like every other user mistake."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_common_options(p: argparse.ArgumentParser) -> None:
    """--model, --device and --no-progress, shared by every command that loads a model."""
    p.add_argument("--model", help=f"bundled name, directory or Hub repo id (default {DEFAULT_MODEL})")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """The prior's sampling keywords, shared by generate and complete."""
    p.add_argument("--tokenizer", help="tokenizer to decode with (default: the one the prior names)")
    p.add_argument("--class", dest="class_label", type=non_negative_int, help="class index (see `info`); default none/null")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--temperature", type=float, help="default: the prior's (its generation_config.json)")
    p.add_argument("--top-k", type=positive_int, help="default: the prior's")
    p.add_argument("--top-p", type=float, help="default: the prior's")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--scale", type=positive_int, default=2, help="nearest-neighbour enlargement of the grid")


def add_codec_commands(sub: Any) -> None:
    """encode, decode, reconstruct, info: the tokenizer itself."""
    p = sub.add_parser("encode", help="images -> token ids (.npy or .json; JSON on stdout by default)")
    p.add_argument("images", nargs="+")
    p.add_argument("--output", help="ids.npy or ids.json")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--native-size", action="store_true", help="encode at native size (sides multiple of the downsampling factor)")
    p.add_argument("--max-pixels", type=positive_int, default=MAX_IMAGE_PIXELS,
                   help=f"largest image to decode, in pixels (default {MAX_IMAGE_PIXELS:,}, PIL's bomb limit)")
    p.add_argument("--max-native-pixels", type=positive_int, default=MAX_NATIVE_PIXELS,
                   help=f"largest image to encode with --native-size (default {MAX_NATIVE_PIXELS:,})")
    add_common_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="token ids (.npy/.json) -> PNG image(s)")
    p.add_argument("ids")
    p.add_argument("--output", required=True, help="out.png (a batch writes out_0000.png, ...)")
    add_common_options(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("reconstruct", help="encode and decode images, writing reconstructions and a comparison grid")
    p.add_argument("images", nargs="+")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--batch-size", type=positive_int, default=64)
    add_common_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("info", help="describe a tokenizer")
    p.add_argument("model", nargs="?", default=None)
    p.set_defaults(func=cmd_info)


def add_data_commands(sub: Any) -> None:
    """evaluate, pretokenize, pretokenize-merge, shapes: datasets in and out."""
    p = sub.add_parser("evaluate", help="PSNR, SSIM, codebook usage/perplexity, hole recall on a held-out set")
    p.add_argument("--data", default="shapes", help="'shapes' (held-out generator), an image folder, a saved dataset, or hf:NAME")
    p.add_argument("--num", type=non_negative_int, default=1000, help="number of images (0 = all)")
    p.add_argument("--seed", type=non_negative_int, default=1, help="shapes seed (held-out = 1)")
    p.add_argument("--split", default="test")
    p.add_argument("--image-column", default="image")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--strict-data", action="store_true", help="stop on an unreadable image instead of skipping it")
    p.add_argument("--output", help="write the metrics JSON here")
    p.add_argument("--update-card", action="store_true", help="record the metrics in the model's README.md")
    add_common_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("pretokenize", help="a dataset of images -> a dataset of token ids")
    p.add_argument("--data", required=True, help="'shapes', an image folder, a saved dataset, or hf:NAME")
    p.add_argument("--output", required=True)
    p.add_argument("--format", choices=["arrow", "parquet"], default="arrow")
    p.add_argument("--image-column", default="image")
    p.add_argument("--split", default="train")
    p.add_argument("--num", type=positive_int, default=1000, help="shapes: number of images")
    p.add_argument("--seed", type=non_negative_int, default=0, help="shapes: seed")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per batch (default 64; on a GPU 4 micro-batches)")
    p.add_argument("--num-proc", type=positive_int, default=None)
    p.add_argument("--num-workers", type=non_negative_int, default=None,
                   help="decode in this many DataLoader workers and encode large batches here (default on a GPU: up to 8)")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped copies, marked in a 'flipped' column")
    p.add_argument("--skip-bad", action="store_true", help="skip undecodable images and list them in skipped_rows.json")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--streaming", action="store_true", help="stream rows and write resumable parquet shards")
    p.add_argument("--shard-size", type=positive_int, default=10000, help="input rows per shard with --streaming")
    p.add_argument("--num-nodes", type=positive_int, help="--streaming: split the input across this many workers "
                   "(default: WORLD_SIZE from torchrun, SLURM_ARRAY_TASK_COUNT, or 1)")
    p.add_argument("--node-rank", type=non_negative_int, help="--streaming: this worker's part, 0..num-nodes-1 "
                   "(default: RANK, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)")
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


def add_prior_commands(sub: Any) -> None:
    """generate and complete: sampling from a prior."""
    p = sub.add_parser("generate", help="sample images from a prior into a PNG grid")
    p.add_argument("--num", type=positive_int, default=16)
    p.add_argument("--output", default="generated.png")
    p.add_argument("--ids-output", help="also write the sampled ids as JSON")
    p.add_argument("--grid", type=positive_int, nargs=2, metavar=("H", "W"), help="token grid larger than trained: sliding window")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--columns", type=positive_int, default=8)
    add_sampling_options(p)
    add_common_options(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("complete", help="finish images from their top token rows with a prior")
    p.add_argument("images", nargs="+")
    p.add_argument("--rows", type=positive_int, help="token rows to keep (default half the grid)")
    p.add_argument("--samples", type=positive_int, default=4, help="completions per image")
    p.add_argument("--output", default="completions.png")
    add_sampling_options(p)
    add_common_options(p)
    p.set_defaults(func=cmd_complete)


def add_convert_and_demo_commands(sub: Any) -> None:
    """convert (published tokenizers in) and demo (the main job)."""
    p = sub.add_parser("convert", help="a published VQ tokenizer (taming, LlamaGen, diffusers, Chameleon, Janus) -> our format")
    p.add_argument("src", help="a folder, a checkpoint file beside its config, or a Hub repo id (through the cache)")
    p.add_argument("--output", required=True, help="directory for the converted tokenizer")
    p.add_argument("--format", default="auto", choices=["auto", "taming", "llamagen", "diffusers", "chameleon", "janus"])
    p.add_argument("--resolution", type=positive_int, help="preprocessing resolution where the source does not fix one (LlamaGen)")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="the main job: reconstruct held-out shapes with the bundled model")
    p.add_argument("--output-dir", default="demo_output")
    p.add_argument("--num", type=positive_int, default=8)
    add_common_options(p)
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The image-tokenizer command line: one sub-command per job, grouped as in the help."""
    parser = OneLineParser(prog="image-tokenizer", description="Turn images into token ids and back.")
    parser.add_argument("--version", action="version", version=f"image-tokenizer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_codec_commands(sub)
    add_data_commands(sub)
    add_prior_commands(sub)
    add_convert_and_demo_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a bad flag (already reported in one line)
        return stop.code if isinstance(stop.code, int) else 2
    if getattr(args, "progress", True) is False:
        import datasets

        datasets.disable_progress_bars()  # --no-progress means every bar, datasets' included
    try:
        args.func(args)
    except (ImageTokenizerError, OSError) as error:
        print(f"image-tokenizer {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("image-tokenizer: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
