"""What the command groups share: the default models, loading them, reading images, argparse types and options."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import WHITE, parse_background
from ..devices import check_device
from ..errors import CLIError, ConfigError, InvalidRequestError
from ..hub import bundled_models
from ..image_processing import MAX_IMAGE_PIXELS, load_image
from ..tokenizer import MAX_NATIVE_PIXELS

if TYPE_CHECKING:
    from ..prior import ImagePrior
    from ..tokenizer import ImageTokenizer

DEFAULT_MODEL = "shapes-64"
DEFAULT_PRIOR = "shapes-64-prior"
EMOJI_MODEL = "emoji-64-small"  # the demo's real-image row


def load_tokenizer(name: str | None, device: str) -> ImageTokenizer:
    from ..tokenizer import ImageTokenizer

    if name is None:
        if DEFAULT_MODEL not in bundled_models():
            raise CLIError(f"no bundled model {DEFAULT_MODEL!r} in this install yet; pass --model DIR_OR_REPO")
        name = DEFAULT_MODEL
    return ImageTokenizer.from_pretrained(name, device=device)


def load_prior(name: str | None, tokenizer_name: str | None, device: str) -> ImagePrior:
    from ..prior import ImagePrior

    if name is None:
        if DEFAULT_PRIOR not in bundled_models():
            raise CLIError(f"no bundled prior {DEFAULT_PRIOR!r} in this install yet; pass --model DIR_OR_REPO")
        name = DEFAULT_PRIOR
    tokenizer = load_tokenizer(tokenizer_name, device) if tokenizer_name else None
    return ImagePrior.from_pretrained(name, tokenizer=tokenizer, device=device)


def sampling_kwargs(args: argparse.Namespace) -> dict:
    """The sampling options given on the command line; the prior's own defaults fill in the rest."""
    given = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    return {"seed": args.seed, "guidance_scale": args.guidance, **{k: v for k, v in given.items() if v is not None}}


def load_images(paths: Sequence[str], progress: bool, max_pixels: int | None = None) -> list:
    bar = tqdm(paths, desc="reading", unit="img", disable=not progress or len(paths) < 2)
    return [load_image(p, max_pixels) for p in bar]


def encode_in_batches(
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


def blank_below(image: Any, rows: int, tokenizer: ImageTokenizer) -> Any:
    """Black out the part of a decoded image below the kept token rows (what the prior did not see)."""
    array = np.asarray(image).copy()
    array[rows * (array.shape[0] // tokenizer.grid_size[0]) :] = 0
    from PIL import Image

    return Image.fromarray(array)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def scale_sides(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated positive integers, a multi-scale schedule such as 1,2,3,4 (checked further by
    the converter)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 64 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers such as 1,2,3,4, got {text[:100]!r}")
    return tuple(int(p) for p in parts)


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


def class_label(text: str) -> int | str:
    """argparse type: a class index (a number) or a class name (anything else)."""
    return int(text) if text.isdigit() else text


def background_colour(text: str) -> tuple[int, int, int]:
    """argparse type: white, black or R,G,B, the colour transparent pixels are composited onto."""
    try:
        return parse_background(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_background_option(p: argparse.ArgumentParser) -> None:
    """--background: one colour for transparency before both the model and the score, so models compare."""
    p.add_argument("--background", type=background_colour, default=WHITE, metavar="white|black|R,G,B",
                   help="composite transparent pixels onto this colour before the model and the score, whatever "
                   "the model's own alpha_background, so every model is scored on the same pixels (default white, "
                   "as browsers show PNGs)")


def note_blank(blank: int, total: int, background: str) -> None:
    """Say on stderr how many images are one colour after compositing (scored like any other, none dropped)."""
    if blank:
        print(f"note: {blank} of {total} image(s) are a single colour on the {background} background (e.g. line "
              "art of that colour); they are scored like the others; try another --background", file=sys.stderr)


def add_common_options(p: argparse.ArgumentParser, default_model: str = DEFAULT_MODEL) -> None:
    """--model, --device and --no-progress, shared by every command that loads a model."""
    p.add_argument("--model", help=f"bundled name, directory or Hub repo id (default {default_model})")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def add_pixel_budget(p: argparse.ArgumentParser, native: bool = False) -> None:
    """--max-pixels (every command that decodes images) and, with native, --max-native-pixels (native-size encoding)."""
    p.add_argument("--max-pixels", type=positive_int, default=None,  # None: image_processing's default budget
                   help=f"largest image to decode, in pixels (default {MAX_IMAGE_PIXELS:,}, PIL's bomb limit); "
                   "a larger one is refused as unreadable")
    if native:
        p.add_argument("--max-native-pixels", type=positive_int, default=MAX_NATIVE_PIXELS,
                       help=f"largest image to encode with --native-size (default {MAX_NATIVE_PIXELS:,})")


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """The prior's sampling keywords, shared by generate and complete."""
    p.add_argument("--tokenizer", help="tokenizer to decode with (default: the one the prior names)")
    p.add_argument("--class", dest="class_label", type=class_label, metavar="NAME|INDEX",
                   help="class name or index (see `info PRIOR`; a number is an index); default none/null")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--temperature", type=float, help="default: the prior's (its generation_config.json)")
    p.add_argument("--top-k", type=positive_int, help="default: the prior's")
    p.add_argument("--top-p", type=float, help="default: the prior's")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--scale", type=positive_int, default=2, help="nearest-neighbour enlargement of the grid")
