"""Dataset specs: the strings that `--data` (and every Python call that reads images by name) takes, parsed and
opened here and nowhere else.

- `shapes` (kind shapes): the generator, `num` images from `seed`, one undivided set; columns `image` and the
  shapes metadata (`num_shapes`, `type_counts`, `hole_pixels`, ...).
- `emoji` (emoji): data/emoji.py at `resolution`, splits `train` and `test`; columns `image`, `style`,
  `sequence`, `name`, `group`, `subgroup`.
- `hf:NAME` (hub): `datasets.load_dataset(NAME)`, honouring HF_HUB_OFFLINE (an IterableDataset with streaming);
  its own columns.
- a folder written by save_to_disk (saved): `datasets.load_from_disk`, a DatasetDict's keys its splits; its own
  columns.
- a folder of images (folder): `datasets`' own imagefolder loader (split folders, the leaf folders as a `label`
  ClassLabel, metadata.jsonl/.csv columns), plus `file_name`, the image's path inside the folder.
- `wds:PATTERN` (wds): WebDataset tar shards (`shards/{00000..00099}.tar`, a glob, or `hf://datasets/...`) through
  `datasets`' own webdataset loader, one undivided set read shard by shard when streamed; the samples' image (jpg,
  jpeg, png, webp, else the first image extension) becomes `image`, and `__key__`, the caption (`txt`), the `json`
  metadata and any other member come through as columns (webdataset.py).

Every result is a `datasets.Dataset` (or IterableDataset) whose `features` declare its columns. Which splits a
spec has and which one a command takes follow the rules of data/splits.py: `dataset_splits`, `check_split`,
`pretokenize_splits` (every split, or the one named) and `evaluation_split` (named, else test, then validation).
A pre-tokenized dataset (the prior's data) is read by `load_token_splits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .splits import UNDIVIDED, folder_layout, held_out_split, named_split, split_files

SPEC_HELP = "'shapes', 'emoji', an image folder, a saved dataset, hf:NAME, or wds:SHARDS (WebDataset tars, e.g. 'wds:shards/{00000..00099}.tar')"
KINDS = ("shapes", "emoji", "hub", "saved", "folder", "wds")
FILE_NAME = "file_name"  # every row read from a folder: the image's path relative to the folder
TOKEN_INFO_NAME = "pretokenize_info.json"  # pretokenize/rows.INFO_NAME: the mark of a complete pre-tokenization


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed spec: its text as given, its kind (one of KINDS) and its location (the Hub name, or the folder)."""

    text: str
    kind: str
    location: str = ""

    @property
    def name(self) -> str:
        """How a message names the dataset: a Hub dataset by its name, anything else as given."""
        return self.location if self.kind == "hub" else self.text


def parse_spec(spec: str | DatasetSpec) -> DatasetSpec:
    """The one reading of a spec string (see the module's table); anything else is a DataError naming the forms."""
    if isinstance(spec, DatasetSpec):
        return spec
    if spec in ("shapes", "emoji"):
        return DatasetSpec(spec, spec)
    if spec.startswith("hf:"):
        return DatasetSpec(spec, "hub", spec[3:])
    if spec.startswith("wds:"):
        return DatasetSpec(spec, "wds", spec[4:])
    path = Path(spec)
    if saved_dataset(path):
        return DatasetSpec(spec, "saved", spec)
    if path.is_dir():
        return DatasetSpec(spec, "folder", spec)
    raise DataError(f"{spec}: not 'shapes', 'emoji', 'hf:NAME', 'wds:SHARDS', an image folder, or a saved dataset")


def saved_dataset(path: Path) -> bool:
    """Whether a folder holds a Dataset or a DatasetDict written by save_to_disk."""
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


# ----- which splits a spec has, and which one a command takes -----
def dataset_splits(spec: str | DatasetSpec) -> list[str] | None:
    """The named splits of a spec, sorted; None for one undivided set (shapes, a folder without split folders, a
    saved single Dataset), which `datasets` calls `train`."""
    spec = parse_spec(spec)
    if spec.kind in ("shapes", "wds"):
        return None
    if spec.kind == "emoji":
        from .emoji import SPLITS

        return sorted(SPLITS)
    import datasets

    if spec.kind == "hub":
        try:
            return sorted(datasets.get_dataset_split_names(spec.location))
        except Exception as error:  # noqa: BLE001  (offline, missing, gated: one readable line)
            raise DataError(f"cannot list the splits of dataset {spec.location!r}: {error}") from None
    if spec.kind == "saved":
        return sorted(datasets.load_from_disk(spec.location)) if (Path(spec.location) / "dataset_dict.json").is_file() else None
    splits, divided = folder_layout(spec.location)
    return sorted(splits) if divided else None


def check_split(spec: str | DatasetSpec, split: str) -> str:
    """The split asked for, when the spec has it; else an error naming the splits it has. An undivided source has
    one split, `train`; a Hub dataset names its own mistakes when it is loaded."""
    spec = parse_spec(spec)
    return split if spec.kind == "hub" else named_split(spec.text, split, dataset_splits(spec))


def pretokenize_splits(spec: str | DatasetSpec, split: str | None) -> list[str]:
    """The splits a pre-tokenization writes: the one named (checked), or every split of the spec."""
    if split is not None:
        return [check_split(spec, split)]
    return dataset_splits(spec) or [UNDIVIDED]


def evaluation_split(spec: str | DatasetSpec, split: str | None, flag: str = "split") -> str:
    """The split an evaluation scores: the one named (checked), else test, then validation; an undivided source is
    read whole (as `train`). A source with neither is an error naming its splits: scoring a tokenizer on the
    images it trained on would overstate it. `flag` names the setting in that error (eval_split in training)."""
    if split is not None:
        return check_split(spec, split)
    return held_out_split(dataset_splits(spec), parse_spec(spec).text, flag)


# ----- a spec as datasets -----
def load_splits(
    spec: str | DatasetSpec, split: str | None = None, *, num: int = 1000, seed: int = 0, streaming: bool = False,
    resolution: int = 64,
) -> Any:
    """Every split of a spec (or the one named) as a `datasets.DatasetDict` keyed by split name (an
    IterableDatasetDict for a streamed `hf:NAME` or `wds:SHARDS`). `num` and `seed` choose the shapes images,
    `resolution` the emoji's size; `streaming` streams a Hub dataset or WebDataset shards (one shard at a time). A split the spec lacks is an error naming those it has."""
    import datasets

    spec = parse_spec(spec)
    parts = {name: _open_split(spec, name, num, seed, streaming, resolution) for name in pretokenize_splits(spec, split)}
    streamed = any(isinstance(part, datasets.IterableDataset) for part in parts.values())
    return (datasets.IterableDatasetDict if streamed else datasets.DatasetDict)(parts)


def load_split(
    spec: str | DatasetSpec, split: str = UNDIVIDED, *, num: int = 1000, seed: int = 0, streaming: bool = False,
    resolution: int = 64,
) -> Any:
    """One split of a spec (see load_splits) as a `datasets.Dataset` (or IterableDataset)."""
    return load_splits(spec, split, num=num, seed=seed, streaming=streaming, resolution=resolution)[split]


def _open_split(spec: DatasetSpec, split: str, num: int, seed: int, streaming: bool, resolution: int) -> Any:
    """One split, already checked against the spec's splits."""
    import datasets

    if spec.kind == "shapes":
        from .shapes import to_dataset

        return to_dataset(num, seed=seed)
    if spec.kind == "emoji":
        from .emoji import emoji_dataset

        return emoji_dataset(split, resolution)
    if spec.kind == "hub":
        try:
            return datasets.load_dataset(spec.location, split=split, streaming=streaming)
        except Exception as error:  # noqa: BLE001  (offline, missing, or a bad split: one readable line)
            raise DataError(f"cannot load dataset {spec.location!r} split {split!r}: {error}") from None
    if spec.kind == "wds":
        from .webdataset import webdataset_dataset

        return webdataset_dataset(spec.location, streaming)
    if spec.kind == "saved":
        dataset = datasets.load_from_disk(spec.location)
        return dataset[named_split(spec.text, split, sorted(dataset))] if isinstance(dataset, datasets.DatasetDict) else dataset
    return image_folder_dataset(spec.location, split)


def image_folder_dataset(root: str | Path, split: str = UNDIVIDED) -> Any:
    """An image folder read by `datasets`' own imagefolder loader: split folders, a `label` ClassLabel named by
    the leaf folders (when there are two or more), and metadata.jsonl/.csv columns; plus a `file_name` column
    (the path relative to root) on every row, so a token row always leads back to its file."""
    import datasets

    root = Path(root).resolve()
    expected = split_files(root, split)  # also the error for a folder without images or without that split
    try:
        dataset = datasets.load_dataset("imagefolder", data_dir=str(root), split=split)
    except Exception as error:  # noqa: BLE001  (a malformed metadata file, ...: one readable line)
        raise DataError(f"{root}: cannot read as an image folder ({error})") from None
    paths = [Path(cell["path"]) for cell in dataset.cast_column("image", datasets.Image(decode=False))["image"]]
    missing = sorted(set(expected) - set(paths))
    if missing:  # imagefolder drops an image its metadata does not list; we say so instead
        raise DataError(f"{root}: the metadata file has no entry for {len(missing)} image(s), e.g. "
                        f"{missing[0].relative_to(root).as_posix()}")
    return dataset.add_column(FILE_NAME, [path.relative_to(root).as_posix() for path in paths])


# ----- a pre-tokenized dataset (the prior's data) -----
def load_token_splits(spec: str) -> dict[str, Any]:
    """A pre-tokenized dataset's splits, {name: Dataset}: a folder written by save_to_disk (a DatasetDict's splits,
    or one), a complete `pretokenize` output (the splits its card lists: parquet files or streamed shards), or a
    folder of parquet files (one split, `train`)."""
    import datasets

    folder = Path(spec)
    if saved_dataset(folder):
        loaded = datasets.load_from_disk(str(folder))
    elif (folder / "README.md").is_file() and (folder / TOKEN_INFO_NAME).is_file():
        loaded = datasets.load_dataset(str(folder))  # the card lists each split's files, and nothing else
    else:
        files = sorted(str(p) for p in folder.rglob("*.parquet")) if folder.is_dir() else []
        if not files:
            raise DataError(f"{spec}: neither a save_to_disk dataset nor a folder of parquet files")
        loaded = datasets.load_dataset("parquet", data_files=files, split=UNDIVIDED)
    return dict(loaded) if isinstance(loaded, dict) else {UNDIVIDED: loaded}


def token_layout(spec: str) -> Any:
    """The id layout (layouts.IdLayout) a pre-tokenized dataset's pretokenize_info.json records, so a reader knows
    what each row's input_ids are; None when the folder has no such record (a plain parquet folder, or an output
    written before layouts, whose rows are grids). A malformed record is DataError naming the file."""
    from ..errors import CheckpointError
    from ..layouts import layout_from_dict
    from ..textfiles import read_json_object

    path = Path(spec) / TOKEN_INFO_NAME
    if not path.is_file():
        return None
    info = read_json_object(path, DataError)
    if "layout" not in info:
        return None
    layout = info["layout"]
    shape, scales = (layout.get("shape"), layout.get("scales")) if isinstance(layout, dict) else (None, None)
    grid = scales[-1:] * 2 if isinstance(scales, list) and scales else shape[:2] if isinstance(shape, list) else None
    if not (isinstance(grid, list) and len(grid) == 2):
        raise DataError(f"{path}: field 'layout' names no grid (a shape [h, w, ...] or scales); got {str(layout)[:200]}")
    try:
        return layout_from_dict(layout, tuple(grid), str(path))
    except CheckpointError as error:
        raise DataError(str(error)) from None
