"""Where images come from: the shapes generator, an image folder, or a `datasets` dataset.

Every source yields uint8 [H, W, 3] arrays at the tokenizer's resolution. An unreadable item raises a
DataError that names the file or row, so callers can skip-and-count it or stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import PreprocessingConfig
from ..errors import ImageTokenizerError
from ..image_processing import load_image, resize_and_crop, to_rgb
from .shapes import generate_arrays

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class DataError(ImageTokenizerError):
    """Training data that cannot be used (missing, empty, or unreadable under --strict-data)."""


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


class FolderSource(ImageSource):
    def __init__(self, root: str | Path, resolution: int, preprocessing: PreprocessingConfig):
        self.root = Path(root)
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise DataError(f"{self.root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
        self.resolution, self.preprocessing = resolution, preprocessing

    def __len__(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        return f"image folder {self.root} ({len(self.files)} files)"

    def load(self, index: int) -> np.ndarray:
        image = load_image(self.files[index])
        return _prepare(image, self.resolution, self.preprocessing, str(self.files[index]))


class DatasetSource(ImageSource):
    def __init__(self, dataset: Any, image_column: str, resolution: int, preprocessing: PreprocessingConfig, name: str):
        if image_column not in dataset.column_names:
            raise DataError(f"{name}: no column {image_column!r}; columns are {dataset.column_names}")
        self.dataset, self.column, self.name = dataset, image_column, name
        self.resolution, self.preprocessing = resolution, preprocessing

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self) -> str:
        return f"dataset {self.name} ({len(self.dataset)} rows)"

    def load(self, index: int) -> np.ndarray:
        try:
            image = self.dataset[index][self.column]
        except Exception as error:  # the Image feature raises PIL/OS errors for undecodable bytes
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
) -> ImageSource:
    """`shapes`, a folder of images, a dataset saved with save_to_disk, or `hf:NAME` for load_dataset."""
    if spec == "shapes":
        images, _ = generate_arrays(num_shapes, seed=seed, num_workers=num_workers)
        if images.shape[1] != resolution:
            raise DataError(f"shapes images are {images.shape[1]}px but the model's resolution is {resolution}")
        return ArraySource(images, f"shapes generator, seed {seed}, {num_shapes} images")
    dataset = load_dataset_spec(spec, split)
    if dataset is not None:
        return DatasetSource(dataset, image_column, resolution, preprocessing, spec.removeprefix("hf:"))
    return FolderSource(Path(spec), resolution, preprocessing)


def load_dataset_spec(spec: str, split: str = "train") -> Any:
    """`hf:NAME` (load_dataset, honouring HF_HUB_OFFLINE) or a folder written by save_to_disk -> a Dataset;
    None for an ordinary folder; a DataError for anything else."""
    import datasets

    if spec.startswith("hf:"):
        name = spec[3:]
        try:
            return datasets.load_dataset(name, split=split)
        except Exception as error:  # offline, missing, or a bad split: one readable line
            raise DataError(f"cannot load dataset {name!r} split {split!r}: {error}") from None
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: not 'shapes', 'hf:NAME', an image folder, or a saved dataset")
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        dataset = datasets.load_from_disk(str(path))
        return dataset[split] if isinstance(dataset, datasets.DatasetDict) else dataset
    return None
