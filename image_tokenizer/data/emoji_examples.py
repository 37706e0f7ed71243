"""A dozen held-out emoji bundled with the package (emoji_heldout.png and .json beside this file), so the demo
shows real images that nobody here drew on a machine without the emoji packages.

Six emoji of the test split, one from each of six Unicode groups, in both styles, at 64 px. They are written by
`python benchmarks/emoji_data.py --examples` from the emoji source itself. Credits: see CREDITS in emoji.py
(Noto images Apache-2.0; Twemoji graphics CC-BY 4.0, Twitter, Inc. and other contributors).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ..errors import DataError
from ..fileio import atomic_path, atomic_write_text

EXAMPLES_PNG = Path(__file__).with_name("emoji_heldout.png")
EXAMPLES_JSON = Path(__file__).with_name("emoji_heldout.json")
EXAMPLE_SEQUENCES = ("\U0001F604", "\U0001F405", "\U0001F348", "\U0001F5FB", "\U0001F38B", "\U0001FA96")  # held-out


def write_examples(resolution: int = 64) -> None:
    """Render the examples from the emoji source (needs the emoji packages) into one strip and its metadata."""
    from .emoji import CREDITS, STYLES, emoji_split, iter_emoji_images, read_emoji_test

    wanted = [e for e in read_emoji_test() if e.sequence in EXAMPLE_SEQUENCES]
    if any(emoji_split(e.sequence) != "test" for e in wanted) or len(wanted) != len(EXAMPLE_SEQUENCES):
        raise DataError("the bundled emoji examples must be held-out (test split) emoji of emoji-test.txt")
    rows = list(iter_emoji_images(wanted, resolution, STYLES))
    strip = Image.new("RGB", (resolution * len(rows), resolution))
    for index, row in enumerate(rows):
        strip.paste(row["image"], (index * resolution, 0))
    with atomic_path(EXAMPLES_PNG) as tmp:
        strip.save(tmp, format="PNG", optimize=True)
    tiles = [{k: row[k] for k in ("style", "sequence", "name", "group")} for row in rows]
    atomic_write_text(EXAMPLES_JSON, json.dumps({"resolution": resolution, "credits": CREDITS, "tiles": tiles},
                                                indent=1, ensure_ascii=False) + "\n")


def load_examples() -> tuple[list[Image.Image], list[dict]]:
    """The bundled held-out emoji as RGB images, and for each its style, sequence, name and group."""
    try:
        meta = json.loads(EXAMPLES_JSON.read_text(encoding="utf-8"))
        with Image.open(EXAMPLES_PNG) as strip:
            strip = strip.convert("RGB")
    except (OSError, ValueError) as error:
        raise DataError(f"the bundled emoji examples ({EXAMPLES_PNG.name}, {EXAMPLES_JSON.name}) are unreadable: {error}") from None
    size = meta["resolution"]
    images = [strip.crop((i * size, 0, (i + 1) * size, size)) for i in range(len(meta["tiles"]))]
    return images, meta["tiles"]
