"""Training's and evaluation's images: a dataset spec (data/specs.py) as an ImageSource, read item by item.

Every source yields uint8 [H, W, 3] arrays at the tokenizer's resolution. An unreadable item raises a
DataError that names the file or row, so callers can skip-and-count it or stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import PreprocessingConfig
from ..errors import DataError, ImageLoadError, ImageTokenizerError
from ..image_processing import decode_cell, load_image, resize_and_crop, to_rgb
from .shapes import generate_arrays
from .specs import DatasetSpec, image_folder_dataset, load_split, parse_spec  # noqa: F401  (image_folder_dataset: re-exported)
from .splits import IMAGE_SUFFIXES, folder_layout, named_split


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
    """The images of one split of a folder (split_files; a folder without split folders is one split, `train`).
    An image over max_pixels (None: the default budget), or with a side under min_side, is unreadable."""

    def __init__(self, root: str | Path, resolution: int, preprocessing: PreprocessingConfig, split: str = "train",
                 max_pixels: int | None = None, min_side: int = 1):
        self.root = Path(root)
        files, divided = folder_layout(self.root)
        self.files = files[named_split(str(self.root), split, sorted(files) if divided else None)]
        self.split = split if divided else None  # None: the folder has no split folders and is read whole
        self.resolution, self.preprocessing, self.max_pixels = resolution, preprocessing, max_pixels
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        split = f", split {self.split}" if self.split else ""
        return f"image folder {self.root}{split} ({len(self.files)} files)"

    def load(self, index: int) -> np.ndarray:
        try:
            image = load_image(self.files[index], self.max_pixels)
        except ImageLoadError as error:  # a DataError, so callers can skip-and-count it
            raise DataError(str(error)) from None
        check_side(image, self.min_side, str(self.files[index]))
        return _prepare(image, self.resolution, self.preprocessing, str(self.files[index]))


class DatasetSource(ImageSource):
    """The images of a `datasets` dataset, each decoded by decode_cell under the pixel budget max_pixels."""

    def __init__(self, dataset: Any, image_column: str, resolution: int, preprocessing: PreprocessingConfig, name: str,
                 max_pixels: int | None = None, min_side: int = 1):
        import datasets

        if image_column not in dataset.column_names:
            raise DataError(f"{name}: no column {image_column!r}; columns are {dataset.column_names}")
        if isinstance(dataset.features.get(image_column), datasets.Image):  # bytes or paths: decoded here, guarded
            dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.dataset, self.column, self.name = dataset, image_column, name
        self.resolution, self.preprocessing, self.max_pixels = resolution, preprocessing, max_pixels
        self.min_side = min_side

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
        check_side(image, self.min_side, f"{self.name} row {index}")
        return _prepare(image, self.resolution, self.preprocessing, f"{self.name} row {index}")


def check_side(image: Any, min_side: int, where: str) -> None:
    """An image with a side under min_side (the tokenizer's token grid) is refused, as `encode` refuses it,
    rather than scaled up from a few pixels."""
    width, height = image.size
    if min(width, height) < min_side:
        raise DataError(f"{where}: {width}x{height}, too small for the {min_side}x{min_side} token grid of this "
                        f"tokenizer (each side needs at least {min_side} pixels)")


def _prepare(image: Any, resolution: int, preprocessing: PreprocessingConfig, where: str) -> np.ndarray:
    try:
        image = to_rgb(resize_and_crop(image, resolution, preprocessing), preprocessing.alpha_background)
    except ImageTokenizerError as error:
        raise DataError(f"{where}: {error}") from None
    return np.asarray(image, dtype=np.uint8)


def open_source(
    spec: str | DatasetSpec,
    resolution: int,
    preprocessing: PreprocessingConfig,
    *,
    num_shapes: int = 20000,
    seed: int = 0,
    split: str = "train",
    image_column: str = "image",
    num_workers: int = 1,
    max_pixels: int | None = None,
    min_side: int = 1,
) -> ImageSource:
    """A dataset spec (data/specs.py) as an ImageSource: the shapes generator's arrays (`num_shapes` from `seed`,
    made by `num_workers` processes), an image folder's files of `split`, or the rows of `split` of any other spec
    (emoji rendered at `resolution`, a saved dataset, `hf:NAME`). An image over max_pixels, or with a side under
    min_side, is unreadable. The split must be one the spec has (data/splits.py)."""
    parsed = parse_spec(spec)
    if parsed.kind == "shapes":
        images, _ = generate_arrays(num_shapes, seed=seed, num_workers=num_workers)
        if images.shape[1] != resolution:
            raise DataError(f"shapes images are {images.shape[1]}px but the model's resolution is {resolution}")
        return ArraySource(images, f"shapes generator, seed {seed}, {num_shapes} images")
    if parsed.kind == "folder":  # the files themselves: no imagefolder pass over a folder that may be large
        return FolderSource(Path(parsed.location), resolution, preprocessing, split, max_pixels, min_side)
    dataset = load_split(parsed, split, resolution=resolution)
    name = f"emoji {split}" if parsed.kind == "emoji" else parsed.name
    return DatasetSource(dataset, image_column, resolution, preprocessing, name, max_pixels, min_side)


def image_files(root: str | Path) -> list[Path]:
    """Every image file under root, recursively, in sorted order."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
