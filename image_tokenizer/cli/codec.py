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

from ..config import background_name
from ..converters import FORMATS
from ..errors import CLIError, InvalidIdsError
from ..fileio import atomic_path, atomic_write_text
from ..image_processing import on_background
from ..metrics import psnr
from ..textfiles import read_json
from .common import (
    DEFAULT_MODEL,
    add_background_option,
    add_common_options,
    add_pixel_budget,
    encode_in_batches,
    load_prior,
    load_tokenizer,
    note_blank,
    positive_int,
    scale_sides,
)
from .files import manifest_path, output_names, read_images, write_manifest


def cmd_encode(args: argparse.Namespace) -> None:
    tokenizer = load_tokenizer(args.model, args.device)
    read = read_images(args.images, tokenizer.config, args.progress, args.skip_bad, args.max_pixels, args.native_size,
                       args.max_native_pixels)
    grids = encode_in_batches(tokenizer, read.images, args.batch_size, args.native_size, args.progress, args.max_native_pixels)
    if args.output is None or args.output.endswith(".json"):
        payload: dict[str, Any] = {
            "vocab_size": tokenizer.vocab_size,
            "images": [{"path": p, "grid": list(g.shape), "ids": g.tolist()} for p, g in zip(read.paths, grids)],
        }
        if read.skipped:
            payload["skipped"] = [{"path": p, "error": e} for p, e in read.skipped.items()]
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
        rows = [{"row": row, "path": path} for row, path in enumerate(read.paths)]
        print(f"rows of {args.output} by file: {write_manifest(manifest_path(args.output), rows, read.skipped)}", file=sys.stderr)
    else:
        raise CLIError(f"--output must end in .npy or .json, got {args.output!r}")
    if args.output:
        print(f"wrote ids of {len(grids)} image(s) to {args.output}", file=sys.stderr)


MAX_IDS_JSON_BYTES = 256 * 2**20  # about 200,000 grids of 16x16 ids; more belongs in a .npy file


def _read_ids(path: str, image_ndim: int = 2) -> list[np.ndarray]:
    """The ids of one image, or of several (an array of one more dimension than `image_ndim`, the rank of one
    image's ids in the tokenizer's layout), from a .npy or .json file."""
    source = Path(path)
    if not source.is_file():
        raise CLIError(f"{path}: no such ids file")
    if source.suffix == ".npy":
        try:
            array = np.load(source, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise CLIError(f"{path}: not a readable .npy array ({error})") from None
        return [array] if array.ndim <= image_ndim else list(array)
    if source.suffix == ".json":
        data = read_json(source, CLIError, max_bytes=MAX_IDS_JSON_BYTES)
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


def image_format(output: Path) -> str:
    """The PIL format an output's extension names (out.jpg -> JPEG); an extension PIL cannot write is refused."""
    from PIL import Image

    fmt = Image.registered_extensions().get(output.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CLIError(f"--output {output}: {output.suffix or 'no extension'} is not an image format PIL can write; "
                       "use .png (lossless), .jpg or .webp")
    return fmt


def cmd_decode(args: argparse.Namespace) -> None:
    tokenizer = load_tokenizer(args.model, args.device)
    grids = _read_ids(args.ids, tokenizer.layout.ndim)
    output = Path(args.output)
    fmt = image_format(output)
    targets = [output] if len(grids) == 1 else [output.with_name(f"{output.stem}_{i:04d}{output.suffix}") for i in range(len(grids))]
    for grid in grids:
        if grid.dtype.kind not in "iu":
            raise InvalidIdsError(f"{args.ids}: ids must be integers, got dtype {grid.dtype}")
    shapes = {g.shape for g in grids}
    try:
        if len(shapes) == 1 and len(grids) > 1:
            images = tokenizer.decode(np.stack(grids).astype(np.int64))
        else:
            images = [tokenizer.decode(g.astype(np.int64)) for g in grids]
    except InvalidIdsError as error:  # ids of the wrong length or range: name the file they came from
        raise InvalidIdsError(f"{args.ids}: {error}") from None
    for image, target in tqdm(list(zip(images, targets)), desc="writing", disable=not args.progress or len(grids) < 2):
        with atomic_path(target) as tmp:
            image.save(tmp, format=fmt)
    if len(targets) > 1:
        sources = _id_sources(args.ids, len(grids))
        rows = [{"output": t.name, "ids": args.ids, "row": i, **sources[i]} for i, t in enumerate(targets)]
        write_manifest(manifest_path(output), rows)
    print(f"wrote {len(targets)} image(s): {targets[0]}{' ...' if len(targets) > 1 else ''}", file=sys.stderr)


def _id_sources(ids_path: str, count: int) -> list[dict[str, Any]]:
    """The image file each row of an ids file was encoded from, where `encode` recorded it ({} otherwise)."""
    source = Path(ids_path)
    record = source if source.suffix == ".json" else manifest_path(source)
    try:
        data = read_json(record, CLIError, max_bytes=MAX_IDS_JSON_BYTES) if record.is_file() else {}
        paths = [item.get("path") for item in (data.get("images") or data.get("outputs") or [])]
    except (CLIError, AttributeError):  # a record we cannot read only loses the file names, never the images
        paths = []
    return [{"image": paths[i]} if i < len(paths) and paths[i] else {} for i in range(count)]


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from ..evaluation import count_blank
    from ..visualize import side_by_side

    tokenizer = load_tokenizer(args.model, args.device)
    read = read_images(args.images, tokenizer.config, args.progress, args.skip_bad, args.max_pixels)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # One background for every model: the model is given, and scored against, these same pixels.
    inputs = [on_background(image, tokenizer.config, args.background) for image in read.images]
    grids = encode_in_batches(tokenizer, inputs, args.batch_size, False, args.progress)
    outputs, rows = [], []
    for path, name, reference, grid in zip(read.paths, output_names(read.paths), inputs, grids):
        reconstruction = tokenizer.decode(grid)
        outputs.append(reconstruction)
        target = out_dir / f"{name}_reconstruction.png"
        with atomic_path(target) as tmp:
            reconstruction.save(tmp, format="PNG")
        rows.append({"output": target.name, "image": path, "blank": bool(count_blank(np.asarray(reference)[None])),
                     "psnr": round(float(psnr(np.asarray(reference), np.asarray(reconstruction))), 4)})
    with atomic_path(out_dir / "comparison.png") as tmp:
        side_by_side(inputs, outputs).save(tmp, format="PNG")
    background, blank = background_name(args.background), sum(row["blank"] for row in rows)
    write_manifest(out_dir / "reconstructions.json", rows, read.skipped, {"background": background, "blank_images": blank})
    note_blank(blank, len(rows), background)
    mean = np.mean([row["psnr"] for row in rows])
    print(f"reconstructed {len(rows)} image(s) on a {background} background into {out_dir}; mean PSNR {mean:.2f} dB; "
          f"{blank} blank (a single colour) (reconstructions.json: which file is which)")


def cmd_info(args: argparse.Namespace) -> None:
    """A tokenizer's or a prior's description, as JSON (a prior: layout, classes, sampling defaults, tokenizer)."""
    from ..checkpoint import PRIOR_LAYOUT_NAME, SAVED_FILES
    from ..hub import resolve_pretrained
    from ..prior.model import PRIOR_FILES
    from .prior import prior_info

    name = args.model or DEFAULT_MODEL
    directory = resolve_pretrained(name, allow_patterns=sorted(set(SAVED_FILES) | set(PRIOR_FILES)))
    if (directory / PRIOR_LAYOUT_NAME).is_file():
        print(json.dumps(prior_info(load_prior(str(directory), None, "cpu"), name), indent=2))
        return
    tokenizer = load_tokenizer(str(directory), "cpu")
    config = tokenizer.config
    info = {
        "model": name,
        "summary": repr(tokenizer),
        "resolution": config.resolution,
        "grid_size": list(config.grid_size),
        "layout": {**tokenizer.layout.to_dict(), "meaning": tokenizer.layout.describe()},
        "codebook_size": tokenizer.vocab_size,
        "codebook_dim": config.quantizer.codebook_dim,
        "vocab_len": len(tokenizer),
        "special_tokens": {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens},
        "parameters": sum(p.numel() for p in tokenizer.model.parameters()),
        "metrics": tokenizer.card_info.get("metrics", {}),
        "can_decode": not config.encoder_only,
    }
    if config.encoder_only:
        info["note"] = "encoder only: its source ships no decoder weights, so decode and reconstruct are refused"
    print(json.dumps(info, indent=2))


def cmd_convert(args: argparse.Namespace) -> None:
    """A published checkpoint (taming, LlamaGen, diffusers, Chameleon, Janus, Open-MAGVIT2, IBQ) -> a saved
    ImageTokenizer, written into a temporary folder beside --output and renamed into place (check_convert_output)."""
    from ..config import CONFIG_NAME
    from ..converters import convert_resolved, resolve_source
    from ..fileio import atomic_folder

    output = Path(args.output)
    source = resolve_source(args.src, revision=args.revision)
    check_convert_output(source, output, args.overwrite)
    tokenizer = convert_resolved(source, args.src, args.format, args.resolution, args.scales)
    with atomic_folder(output, keep_other_files=True, last=CONFIG_NAME) as folder:
        tokenizer.save_pretrained(folder, model_name=output.name)
    layout = tokenizer.config.layout
    tokens = f"{layout.grid_size[0]}x{layout.grid_size[1]}" if layout.kind == "grid" else f"{layout.ids_per_image} ({layout.kind})"
    print(f"converted {args.src} ({tokenizer.card_info['conversion']['format']}) -> {output}: {tokenizer.vocab_size} codes, "
          f"{tokens} tokens per {tokenizer.config.resolution}x{tokenizer.config.resolution} image"
          f"{', encoder only' if tokenizer.config.encoder_only else ''}", file=sys.stderr)


def check_convert_output(source: Path, output: Path, overwrite: bool) -> None:
    """Never clobber: the output may not be the source, lie inside it or hold it (resolved paths; a Hub repo's whole
    cache folder counts as the source), even with --overwrite; an existing non-empty output needs --overwrite, which
    replaces only the converted tokenizer's own files there and keeps every other file."""
    from ..checkpoint import SAVED_FILES
    from ..safe_paths import link_root, overlap

    if overlap(source, output) or overlap(link_root(source.resolve()), output):
        raise CLIError(f"--output {output} overlaps the source {source}; converting would overwrite what it reads, "
                       "so write somewhere else (--overwrite does not change this)")
    if (output.exists() or output.is_symlink()) and not output.is_dir():
        raise CLIError(f"--output {output} exists and is not a folder; name a new or existing folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise CLIError(f"--output {output} already holds files; pass --overwrite to replace the converted tokenizer's "
                       f"own files there ({', '.join(SAVED_FILES)}; other files are kept), or name a new folder")
    blocking = [name for name in SAVED_FILES if (output / name).is_dir() and not (output / name).is_symlink()]
    if blocking:
        raise CLIError(f"--output {output}: {blocking[0]} is a folder, where the converted tokenizer writes a file")


def add_commands(sub: Any) -> None:
    """encode, decode, reconstruct, info: the tokenizer itself."""
    p = sub.add_parser("encode", help="images -> token ids (.npy or .json; JSON on stdout by default)")
    p.add_argument("images", nargs="+", help="image files or folders (every image under them)")
    p.add_argument("--output", help="ids.npy (rows by file in ids.files.json) or ids.json")
    p.add_argument("--skip-bad", action="store_true", help="skip files that cannot be used (undecodable, too small, over "
                   "the pixel budget) and count them, instead of stopping")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--native-size", action="store_true", help="encode at native size (sides multiple of the downsampling factor)")
    add_pixel_budget(p, native=True)
    add_common_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="token ids (.npy/.json) -> PNG image(s)")
    p.add_argument("ids")
    p.add_argument("--output", required=True, help="out.png, .jpg, .webp (a batch writes out_0000.png, ... and "
                   "out.files.json, the ids row of each)")
    add_common_options(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("reconstruct", help="encode and decode images, writing reconstructions and a comparison grid")
    p.add_argument("images", nargs="+", help="image files or folders (every image under them)")
    p.add_argument("--output-dir", required=True, help="reconstructions, comparison.png, and reconstructions.json "
                   "(the input and PSNR of each)")
    p.add_argument("--skip-bad", action="store_true", help="skip files that cannot be used and count them, instead of stopping")
    p.add_argument("--batch-size", type=positive_int, default=64)
    add_background_option(p)
    add_pixel_budget(p)
    add_common_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("info", help="describe a tokenizer")
    p.add_argument("model", nargs="?", default=None)
    p.set_defaults(func=cmd_info)


def add_convert_command(sub: Any) -> None:
    """convert: published tokenizers in (listed after the prior's commands in the help)."""
    p = sub.add_parser("convert", help=f"a published tokenizer ({', '.join(FORMATS)}) -> our format")
    p.add_argument("src", help="a folder, a checkpoint file beside its config, or a Hub repo id (through the cache)")
    p.add_argument("--output", required=True, help="directory for the converted tokenizer")
    p.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="the source's format (default: "
                   "detected from its files)")
    p.add_argument("--resolution", type=positive_int, help="preprocessing resolution where the source does not fix one (LlamaGen, Emu3, Cosmos)")
    p.add_argument("--scales", type=scale_sides, help="VAR: the scale sides, coarse to fine, e.g. 1,2,3,4,6,9,13,18,24,32 "
                   "(default: the released 1,2,3,4,5,6,8,10,13,16; needed when the weights were trained with another count)")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty folder, replacing only "
                   "the converted tokenizer's own files there (never the source's)")
    p.set_defaults(func=cmd_convert)
