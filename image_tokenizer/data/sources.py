"""Where images come from: the shapes generator, the emoji source, an image folder, or a `datasets` dataset.

Every source yields uint8 [H, W, 3] arrays at the tokenizer's resolution. An unreadable item raises a
DataError that names the file or row, so callers can skip-and-count it or stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import PreprocessingConfig
from ..errors import DataError, ImageLoadError, ImageTokenizerError
from ..image_processing import load_image, resize_and_crop, to_rgb
from .shapes import generate_arrays

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}




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
    def __init__(self, root: str | Path, resolution: int, preprocessing: PreprocessingConfig):
        self.root = Path(root)
        self.files = image_files(self.root)
        if not self.files:
            raise DataError(f"{self.root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
        self.resolution, self.preprocessing = resolution, preprocessing

    def __len__(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        return f"image folder {self.root} ({len(self.files)} files)"

    def load(self, index: int) -> np.ndarray:
        try:
            image = load_image(self.files[index])
        except ImageLoadError as error:  # a DataError, so callers can skip-and-count it
            raise DataError(str(error)) from None
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
        except Exception as error:  # noqa: BLE001  (the Image feature raises PIL/OS errors for undecodable bytes)
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
    """`shapes`, `emoji` (data/emoji.py, the `split` rendered at `resolution`), a folder of images, a dataset
    saved with save_to_disk, or `hf:NAME` for load_dataset."""
    if spec == "emoji":
        from .emoji import emoji_dataset

        return DatasetSource(emoji_dataset(split, resolution), "image", resolution, preprocessing, f"emoji {split}")
    if spec == "shapes":
        images, _ = generate_arrays(num_shapes, seed=seed, num_workers=num_workers)
        if images.shape[1] != resolution:
            raise DataError(f"shapes images are {images.shape[1]}px but the model's resolution is {resolution}")
        return ArraySource(images, f"shapes generator, seed {seed}, {num_shapes} images")
    dataset = load_dataset_spec(spec, split)
    if dataset is not None:
        return DatasetSource(dataset, image_column, resolution, preprocessing, spec.removeprefix("hf:"))
    return FolderSource(Path(spec), resolution, preprocessing)


def image_files(root: str | Path) -> list[Path]:
    """Every image file under root, recursively, in sorted order."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_folder_dataset(root: str | Path) -> Any:
    """An image folder as a `datasets.Dataset` with the imagefolder layout: an `image` column (paths, decoded
    lazily), the columns of a metadata.jsonl joined on `file_name`, or else a `label` ClassLabel when the
    images sit in two or more class subfolders.

    Same columns as `load_dataset("imagefolder", data_dir=root)`, built directly: that loader resolves
    its file patterns with dozens of recursive globs, about 2 ms per image, longer than tokenizing it."""
    import json

    import datasets

    root = Path(root)
    files = image_files(root)
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    columns: dict[str, list] = {"image": [str(p) for p in files]}
    metadata = root / "metadata.jsonl"
    if metadata.is_file():
        rows: dict[str, dict] = {}
        for number, line in enumerate(metadata.read_text().splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                    rows[str(record.pop("file_name"))] = record
                except (json.JSONDecodeError, KeyError, AttributeError):
                    raise DataError(f"{metadata} line {number}: not a JSON object with a file_name") from None
        keys = [p.relative_to(root).as_posix() for p in files]
        missing = [key for key in keys if key not in rows]
        if missing:
            raise DataError(f"{metadata}: no entry for {len(missing)} image(s), e.g. {missing[0]}")
        names = list(dict.fromkeys(name for key in keys for name in rows[key]))
        for name in names:
            columns[name] = [rows[key].get(name) for key in keys]
        return datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())
    parents = [p.parent.relative_to(root).as_posix() for p in files]
    classes = sorted(set(parents))
    features = {"image": datasets.Image()}
    if len(classes) > 1:
        columns["label"] = [classes.index(parent) for parent in parents]
        features["label"] = datasets.ClassLabel(names=classes)
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


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
