"""The prior's training data: pre-tokenized datasets (a saved dataset, a `pretokenize` output, parquet files), the
shapes set tokenized and cached in parts, and the checks that the rows fit the tokenizer (grid, recorded layout,
columns) and name their classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from image_tokenizer import ImageTokenizer, TokenLayout
from training.config_cli import TrainingError

if TYPE_CHECKING:
    from training.train_prior import PriorTrainConfig


def load_token_dataset(path: str, held_out: bool = False) -> Any:
    """A pre-tokenized dataset (data/specs.load_token_splits: a save_to_disk folder, a `pretokenize` output, or a
    folder of parquet files). Of an output with several splits, `train` (data/splits.py decides), or with held_out
    its test, then validation split; an output of one split is that split, whatever its name."""
    from image_tokenizer.data.specs import load_token_splits
    from image_tokenizer.data.splits import held_out_split, named_split
    from image_tokenizer.errors import DataError

    try:
        loaded = load_token_splits(path)
    except DataError as error:
        raise TrainingError(str(error)) from None
    splits = sorted(loaded)
    if len(splits) == 1:
        return loaded[splits[0]]
    return loaded[held_out_split(splits, path, "eval_data") if held_out else named_split(path, "train", splits)]


INIT_MODEL_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
CACHE_PART_IMAGES = 20000  # images per cached token part: raising num_train_images encodes only the new images


def shapes_tokens(config: PriorTrainConfig, tokenizer: ImageTokenizer, split: str) -> Any:
    """Shapes images pre-tokenized with the tokenizer, cached in parts under output_dir/tokens/<split>/ (a part
    is reused when the tokenizer, seed, image range and flip setting are the same)."""
    import datasets

    train = split == "train"
    count, seed = (config.num_train_images, config.train_seed) if train else (config.eval_images, config.eval_seed)
    flip = config.flip_augment and train
    folder = Path(config.output_dir) / "tokens" / split
    device = config.tokenize_device or ("cuda" if torch.cuda.is_available() else None)
    parts = [shapes_token_part(folder, tokenizer, seed, start, min(CACHE_PART_IMAGES, count - start), flip, config.num_proc, device)
             for start in range(0, count, CACHE_PART_IMAGES)]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def shapes_token_part(folder: Path, tokenizer: ImageTokenizer, seed: int, start: int, count: int, flip: bool,
                      num_proc: int | None, device: str | None = None) -> Any:
    """Images start .. start+count-1 of the shapes set `seed`, tokenized (cached in folder/images-<start>-<end>)."""
    import datasets

    from image_tokenizer.data.shapes import to_dataset
    from image_tokenizer.pretokenize import pretokenize, tokenizer_fingerprint, write_token_dataset

    key = {"tokenizer_sha256": tokenizer_fingerprint(tokenizer), "seed": seed, "start": start, "images": count, "flip": flip}
    part = folder / f"images-{start:07d}-{start + count:07d}"
    info_file = part / "pretokenize_info.json"
    if info_file.is_file() and json.loads(info_file.read_text()).get("key") == key:
        return datasets.load_from_disk(str(part))
    images = to_dataset(count, seed=seed, start=start)
    keep = ["image", "num_shapes", "type_counts"]
    images = images.remove_columns([c for c in images.column_names if c not in keep])
    tokens = pretokenize(images, tokenizer, num_proc=num_proc, flip=flip, device=device)
    info = {"fingerprint": tokens._fingerprint, "key": key, "source": f"shapes seed {seed}, images {start}..{start + count - 1}",
            "rows": len(tokens)}
    write_token_dataset(tokens, str(part), "arrow", info, overwrite=True, report=None)
    return datasets.load_from_disk(str(part))


def prepare_data(config: PriorTrainConfig, tokenizer: ImageTokenizer) -> tuple[Any, Any]:
    if config.data == "shapes":
        return shapes_tokens(config, tokenizer, "train"), shapes_tokens(config, tokenizer, "eval")
    train = load_token_dataset(config.data)
    if config.eval_data:
        return train, load_token_dataset(config.eval_data, held_out=True)
    split = train.train_test_split(test_size=config.eval_fraction, seed=config.seed)
    return split["train"], split["test"]


def check_tokens(dataset: Any, layout: TokenLayout, label_column: str | None, name: str) -> None:
    """Every row is a full grid of this tokenizer's ids, and the label column exists."""
    missing = [c for c in ["input_ids"] + ([label_column] if label_column else []) if c not in dataset.column_names]
    if missing:
        raise TrainingError(f"{name} data has no column(s) {missing}; columns are {dataset.column_names}")
    if "grid_h" in dataset.column_names:
        grids = set(zip(dataset["grid_h"], dataset["grid_w"]))
        if grids != {layout.grid_size}:
            raise TrainingError(f"{name} data has grids {sorted(grids)}; the tokenizer's grid is {layout.grid_size}")


def check_recorded_layout(path: str, tokenizer: ImageTokenizer) -> None:
    """A pre-tokenized dataset that records its id layout (pretokenize_info.json) must hold this tokenizer's."""
    from image_tokenizer.data.specs import token_layout
    from image_tokenizer.errors import DataError

    try:
        recorded = token_layout(path)
    except DataError as error:
        raise TrainingError(str(error)) from None
    if recorded is not None and recorded != tokenizer.layout:
        raise TrainingError(f"{path}: its rows hold {recorded.kind} ids ({recorded.describe()}); the tokenizer "
                            f"{tokenizer.layout.kind} ids ({tokenizer.layout.describe()}): pre-tokenize with this tokenizer")


def class_names(dataset: Any, label_column: str | None, values: list) -> list[str]:
    """Names of the class tokens: a ClassLabel feature's own names ('cat', 'dog'), else the values as text."""
    import datasets

    feature = dataset.features.get(label_column) if label_column else None
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(int(v)) for v in values]
    return [str(v) for v in values]
