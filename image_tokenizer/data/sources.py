"""Where images come from: the shapes generator, the emoji source, an image folder, or a `datasets` dataset.

Every source yields uint8 [H, W, 3] arrays at the tokenizer's resolution. An unreadable item raises a
DataError that names the file or row, so callers can skip-and-count it or stop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PreprocessingConfig
from ..errors import DataError, ImageLoadError, ImageTokenizerError
from ..image_processing import decode_cell, load_image, resize_and_crop, to_rgb
from .shapes import generate_arrays

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
FILE_NAME = "file_name"  # every row read from a folder: the image's path relative to the folder


class ImageSource:
    """Items as uint8 [H, W, 3] arrays at the training resolution."""

    def __len__(self) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def load(self, index: int) -> np.ndarray:
        raise NotImplementedError


class ArraySource(ImageSource):
    def __init__(self, images: np.ndarray, description: str):
        self.images = images
        self.description = description

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> str:
        return self.description

    def load(self, index: int) -> np.ndarray:
        return self.images[index]


class SubsetSource(ImageSource):
    """Some rows of another source (a training split, or its held-out part), in the order given."""

    def __init__(self, source: ImageSource, indices: list[int], label: str):
        self.source, self.indices, self.label = source, indices, label

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self) -> str:
        return f"{self.label}: {len(self.indices)} of {self.source.describe()}"

    def load(self, index: int) -> np.ndarray:
        return self.source.load(self.indices[index])


def split_source(source: ImageSource, fraction: float, seed: int) -> tuple[ImageSource, ImageSource]:
    """(training part, held-out part): a seeded random `fraction` of the rows is held out, the same every run."""
    order = np.random.default_rng(seed).permutation(len(source)).tolist()
    held = max(1, round(len(source) * fraction))
    if held >= len(source):
        raise DataError(f"eval_fraction {fraction} would hold out all {len(source)} images of {source.describe()}")
    return SubsetSource(source, sorted(order[held:]), "training part"), SubsetSource(source, sorted(order[:held]), "held-out part")


class FolderSource(ImageSource):
    """The images of one split of a folder (split_files); a folder without split folders is read whole. An image
    over max_pixels (None: the default budget) is unreadable."""

    def __init__(self, root: str | Path, resolution: int, preprocessing: PreprocessingConfig, split: str = "train",
                 max_pixels: int | None = None):
        self.root = Path(root)
        self.files = split_files(self.root, split, whole_without_splits=True)
        self.resolution, self.preprocessing, self.max_pixels = resolution, preprocessing, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        return f"image folder {self.root} ({len(self.files)} files)"

    def load(self, index: int) -> np.ndarray:
        try:
            image = load_image(self.files[index], self.max_pixels)
        except ImageLoadError as error:  # a DataError, so callers can skip-and-count it
            raise DataError(str(error)) from None
        return _prepare(image, self.resolution, self.preprocessing, str(self.files[index]))


class DatasetSource(ImageSource):
    """The images of a `datasets` dataset, each decoded by decode_cell under the pixel budget max_pixels."""

    def __init__(self, dataset: Any, image_column: str, resolution: int, preprocessing: PreprocessingConfig, name: str,
                 max_pixels: int | None = None):
        import datasets

        if image_column not in dataset.column_names:
            raise DataError(f"{name}: no column {image_column!r}; columns are {dataset.column_names}")
        if isinstance(dataset.features.get(image_column), datasets.Image):  # bytes or paths: decoded here, guarded
            dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.dataset, self.column, self.name = dataset, image_column, name
        self.resolution, self.preprocessing, self.max_pixels = resolution, preprocessing, max_pixels

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self) -> str:
        return f"dataset {self.name} ({len(self.dataset)} rows)"

    def load(self, index: int) -> np.ndarray:
        try:
            cell = self.dataset[index][self.column]
            image = None if cell is None else decode_cell(cell, self.max_pixels)
        except ImageTokenizerError as error:
            raise DataError(f"{self.name} row {index}: {error}") from None
        except Exception as error:  # noqa: BLE001  (an odd cell type or bytes PIL cannot read: one line)
            raise DataError(f"{self.name} row {index}: cannot decode image ({error})") from None
        if image is None:
            raise DataError(f"{self.name} row {index}: image is missing")
        return _prepare(image, self.resolution, self.preprocessing, f"{self.name} row {index}")


def _prepare(image: Any, resolution: int, preprocessing: PreprocessingConfig, where: str) -> np.ndarray:
    try:
        image = to_rgb(resize_and_crop(image, resolution, preprocessing), preprocessing.alpha_background)
    except ImageTokenizerError as error:
        raise DataError(f"{where}: {error}") from None
    return np.asarray(image, dtype=np.uint8)


def open_source(
    spec: str,
    resolution: int,
    preprocessing: PreprocessingConfig,
    *,
    num_shapes: int = 20000,
    seed: int = 0,
    split: str = "train",
    image_column: str = "image",
    num_workers: int = 1,
    max_pixels: int | None = None,
) -> ImageSource:
    """`shapes`, `emoji` (data/emoji.py, the `split` rendered at `resolution`), a folder of images, a dataset
    saved with save_to_disk, or `hf:NAME` for load_dataset; an image over max_pixels is unreadable."""
    if spec == "emoji":
        from .emoji import emoji_dataset

        return DatasetSource(emoji_dataset(split, resolution), "image", resolution, preprocessing, f"emoji {split}",
                             max_pixels)
    if spec == "shapes":
        images, _ = generate_arrays(num_shapes, seed=seed, num_workers=num_workers)
        if images.shape[1] != resolution:
            raise DataError(f"shapes images are {images.shape[1]}px but the model's resolution is {resolution}")
        return ArraySource(images, f"shapes generator, seed {seed}, {num_shapes} images")
    dataset = load_dataset_spec(spec, split)
    if dataset is not None:
        return DatasetSource(dataset, image_column, resolution, preprocessing, spec.removeprefix("hf:"), max_pixels)
    return FolderSource(Path(spec), resolution, preprocessing, split, max_pixels)


def image_files(root: str | Path) -> list[Path]:
    """Every image file under root, recursively, in sorted order."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def folder_splits(root: str | Path) -> dict[str, list[Path]]:
    """The image files of each split of a folder, as `datasets`' imagefolder splits it: `train/`, `test/`,
    `validation/` (and their synonyms) folders, or one `train` split when there are none."""
    from datasets.data_files import DataFilesDict, EmptyDatasetError, get_data_patterns

    root = Path(root)
    try:
        files = DataFilesDict.from_patterns(get_data_patterns(str(root)), base_path=str(root))
    except EmptyDatasetError:
        files = {}
    base = root.resolve()
    splits = {str(name): sorted(root / os.path.relpath(f, base) for f in found if Path(f).suffix.lower() in IMAGE_SUFFIXES)
              for name, found in files.items()}
    splits = {name: found for name, found in splits.items() if found}
    if not splits:
        raise DataError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return splits


def split_files(root: str | Path, split: str, whole_without_splits: bool = False) -> list[Path]:
    """The image files of one split; a split the folder lacks is an error naming those it has. With
    whole_without_splits, a folder that has no split folders is one set of images, whatever the split."""
    splits = folder_splits(root)
    if whole_without_splits and list(splits) == ["train"]:
        return splits["train"]
    if split not in splits:
        raise DataError(f"{root}: no split {split!r}; its splits are {sorted(splits)} (split folders such as train/ and test/)")
    return splits[split]


def image_folder_dataset(root: str | Path, split: str = "train") -> Any:
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


def load_dataset_spec(spec: str, split: str = "train", streaming: bool = False) -> Any:
    """`hf:NAME` (load_dataset, honouring HF_HUB_OFFLINE; an IterableDataset with streaming) or a folder
    written by save_to_disk -> a Dataset; None for an ordinary folder; a DataError for anything else."""
    import datasets

    if spec.startswith("hf:"):
        name = spec[3:]
        try:
            return datasets.load_dataset(name, split=split, streaming=streaming)
        except Exception as error:  # noqa: BLE001  (offline, missing, or a bad split: one readable line)
            raise DataError(f"cannot load dataset {name!r} split {split!r}: {error}") from None
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: not 'shapes', 'hf:NAME', an image folder, or a saved dataset")
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        dataset = datasets.load_from_disk(str(path))
        return dataset[split] if isinstance(dataset, datasets.DatasetDict) else dataset
    return None
