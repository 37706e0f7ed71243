"""The tokenizer's own commands: encode, decode, reconstruct, info, and convert (published tokenizers in)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import CLIError, InvalidIdsError
from ..fileio import atomic_path, atomic_write_text
from ..image_processing import MAX_IMAGE_PIXELS, postprocess
from ..metrics import psnr
from ..tokenizer import MAX_NATIVE_PIXELS
from .common import add_common_options, encode_in_batches, load_images, load_tokenizer, positive_int


def cmd_encode(args: argparse.Namespace) -> None:
    tokenizer = load_tokenizer(args.model, args.device)
    images = load_images(args.images, args.progress, args.max_pixels)
    grids = encode_in_batches(tokenizer, images, args.batch_size, args.native_size, args.progress, args.max_native_pixels)
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
    tokenizer = load_tokenizer(args.model, args.device)
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
    from ..visualize import side_by_side

    tokenizer = load_tokenizer(args.model, args.device)
    images = load_images(args.images, args.progress)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grids = encode_in_batches(tokenizer, images, args.batch_size, False, args.progress)
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
    tokenizer = load_tokenizer(args.model, "cpu")
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


def cmd_convert(args: argparse.Namespace) -> None:
    """A published checkpoint (taming, LlamaGen, diffusers, Chameleon, Janus, Open-MAGVIT2, IBQ) -> a saved ImageTokenizer."""
    from ..converters import convert

    tokenizer = convert(args.src, format=args.format, resolution=args.resolution, revision=args.revision)
    output = Path(args.output)
    tokenizer.save_pretrained(output, model_name=output.name)
    h, w = tokenizer.grid_size
    print(f"converted {args.src} ({tokenizer.card_info['conversion']['format']}) -> {output}: {tokenizer.vocab_size} codes, "
          f"{h}x{w} tokens per {tokenizer.config.resolution}x{tokenizer.config.resolution} image"
          f"{', encoder only' if tokenizer.config.encoder_only else ''}", file=sys.stderr)


def add_commands(sub: Any) -> None:
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


def add_convert_command(sub: Any) -> None:
    """convert: published tokenizers in (listed after the prior's commands in the help)."""
    p = sub.add_parser("convert", help="a published tokenizer (taming, LlamaGen, diffusers, Chameleon, Janus, "
                       "Open-MAGVIT2, IBQ, Emu3, Cosmos) -> our format")
    p.add_argument("src", help="a folder, a checkpoint file beside its config, or a Hub repo id (through the cache)")
    p.add_argument("--output", required=True, help="directory for the converted tokenizer")
    p.add_argument("--format", default="auto", choices=["auto", "taming", "llamagen", "diffusers", "chameleon", "janus",
                                                            "open-magvit2", "ibq", "emu3", "cosmos"])
    p.add_argument("--resolution", type=positive_int, help="preprocessing resolution where the source does not fix one (LlamaGen, Emu3, Cosmos)")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.set_defaults(func=cmd_convert)
