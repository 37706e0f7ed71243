"""WebDataset tar shards (the `wds:PATTERN` spec): the shard files a pattern names, and their samples as rows.

Big image sets come as tar shards (`00000.tar` ... holding `KEY.jpg`, `KEY.txt`, `KEY.json` per sample), the
output of img2dataset and the format of LAION, DataComp and COYO. They are read by `datasets`' own webdataset
loader (streamed shard by shard with streaming=True); this module only expands the pattern and names the columns:
the sample's image becomes `image` (IMAGE_MEMBERS in order, else the first image member), `__key__`, `txt`,
`json` and every other member keep their names, and `__url__` (where the shard lay) is dropped. The Ray engine
reads the same tars with Ray's reader and turns its raw members into the same columns (`decode_member`).
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

from ..errors import DataError

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")  # the image member a sample's `image` column is taken from, first found
KEY, URL = "__key__", "__url__"
MAX_SHARDS = 1_000_000  # a brace pattern may name at most this many shards (`{0..99999999999}` is a mistake)
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_CHOICE = re.compile(r"\{([^{}]*,[^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """`shards/{00000..00002}.tar` -> the three names (zero-padded as written), `{a,b}` -> both; every brace
    of a pattern, left to right. More than MAX_SHARDS names is an error naming the pattern."""
    names = [pattern]
    while any("{" in name for name in names):
        expanded = []
        for name in names:
            candidates = [found for found in (_RANGE.search(name), _CHOICE.search(name)) if found is not None]
            found = min(candidates, key=lambda match: match.start(), default=None)  # the leftmost brace first
            if found is None:
                raise DataError(f"wds:{pattern}: unbalanced or empty braces; write {{00000..00099}} or {{a,b}}")
            if found.re is _RANGE:
                first, last = found.group(1), found.group(2)
                if int(last) - int(first) >= MAX_SHARDS:
                    raise DataError(f"wds:{pattern}: names more than {MAX_SHARDS:,} shards")
                width = len(first) if first.startswith("0") else 0
                choices = [str(number).zfill(width) for number in range(int(first), int(last) + 1)]
            else:
                choices = found.group(1).split(",")
            expanded += [name[: found.start()] + choice + name[found.end() :] for choice in choices]
            if len(expanded) > MAX_SHARDS:
                raise DataError(f"wds:{pattern}: names more than {MAX_SHARDS:,} shards")
        names = expanded
    return names


def webdataset_files(pattern: str) -> list[str]:
    """The tar shards a pattern names, in the pattern's order: braces expanded, then each local name that holds a
    glob (`*`, `?`, `[`) expanded in sorted order. A local shard that does not exist is an error naming it;
    `hf://` and other remote names are passed on for `datasets` (or Ray) to open."""
    files: list[str] = []
    for name in expand_braces(pattern):
        if "://" in name:
            files.append(name)
        elif any(char in name for char in "*?["):
            matches = sorted(glob.glob(name))
            if not matches:
                raise DataError(f"wds:{pattern}: no file matches {name}")
            files += matches
        elif not Path(name).is_file():
            raise DataError(f"wds:{pattern}: no shard {name}; check the path and the brace range")
        else:
            files.append(name)
    return files


def webdataset_dataset(pattern: str, streaming: bool = False) -> Any:
    """The samples of the shards as one `datasets` split (`train`): an IterableDataset read shard by shard with
    streaming, else a Dataset (the shards converted into `datasets`' cache once). Columns: see the module."""
    raw = _load(webdataset_files(pattern), pattern, streaming)
    return _columns(raw, image_member(raw.features or {}, pattern))


def webdataset_layout(pattern: str) -> tuple[list[str], str, Any]:
    """What the Ray engine needs before reading: the shard files, the image member, and the features of the
    columns webdataset_dataset gives (`datasets` infers them from the first shard's first samples)."""
    files = webdataset_files(pattern)
    raw = _load(files, pattern, streaming=True)
    member = image_member(raw.features or {}, pattern)
    return files, member, _columns(raw, member).features


def _load(files: list[str], pattern: str, streaming: bool) -> Any:
    import datasets

    try:
        return datasets.load_dataset("webdataset", data_files={"train": files}, split="train", streaming=streaming)
    except Exception as error:  # noqa: BLE001  (a tar that is not one, members without a shared key: one line)
        raise DataError(f"wds:{pattern}: cannot read as WebDataset shards ({type(error).__name__}: {error})") from None


def _columns(dataset: Any, member: str) -> Any:
    """The image member as `image`, without `__url__` (where the shard lay, not what it holds). A stream removes
    and renames through maps, which would decode every image on the way: they run on the undecoded cells, which
    are then typed as images again."""
    import datasets

    kind = dataset.features[member]
    dataset = dataset.cast_column(member, datasets.Image(decode=False))
    dataset = dataset.remove_columns([URL]) if URL in dataset.features else dataset
    dataset = dataset if member == "image" else dataset.rename_column(member, "image")
    return dataset.cast_column("image", kind)


def image_member(features: Any, pattern: str) -> str:
    """The member that holds each sample's image: the first of IMAGE_MEMBERS present, else the first member the
    loader typed as an image; none is an error naming the members found."""
    import datasets

    images = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    for name in IMAGE_MEMBERS:
        if name in images:
            return name
    if images:
        return images[0]
    raise DataError(f"wds:{pattern}: the samples hold no image member ({', '.join(IMAGE_MEMBERS)}); they hold "
                    f"{sorted(features)}")


def decode_member(member: str, value: Any) -> Any:
    """A raw member's bytes as `datasets`' webdataset loader decodes them (txt as text, json parsed, cls as int,
    ...: its own DECODERS, by the member's last extension); others stay bytes."""
    from datasets.packaged_modules.webdataset.webdataset import WebDataset

    decoder = WebDataset.DECODERS.get(member.rsplit(".", 1)[-1].lower())
    return value if value is None or decoder is None else decoder(value)
