"""Splits as `datasets` has them, in every command (issue 38): a folder with split folders gives every split to
`pretokenize` (one `datasets` split each, named as on disk, in the card and pretokenize_info.json) unless --split
picks one; `evaluate` and training's held-out set use test, then validation, never silently the training images;
a split a folder lacks is an error naming the splits it has."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from PIL import Image

from image_tokenizer.cli import main
from image_tokenizer.errors import DataError

LAYOUT = {"train": 3, "test": 2}  # images per class folder in each split


def photo(path, seed=0, size=(16, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def split_folder(root, layout=LAYOUT, classes=("cats", "dogs")):
    """root/<split>/<class>/<i>.png for each split and class of the layout."""
    seed = 0
    for split, count in layout.items():
        for label in classes:
            for i in range(count):
                photo(root / split / label / f"{i}.png", seed=seed)
                seed += 1
    return root


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def pretokenize_cli(model_dir, data, out, *extra):
    return main(["pretokenize", "--model", str(model_dir), "--data", str(data), "--output", str(out), "--no-progress", *extra])


def card_splits(out) -> dict[str, object]:
    """The card's `configs: data_files`, split by split."""
    from image_tokenizer.model_card import read_front_matter

    configs = read_front_matter(out / "README.md")["configs"]
    return {entry["split"]: entry["path"] for entry in configs[0]["data_files"]}


def test_the_one_place_knows_each_sources_splits(tmp_path):
    from image_tokenizer.data.specs import dataset_splits, evaluation_split

    split_folder(tmp_path / "both")
    split_folder(tmp_path / "train_only", {"train": 2})
    photo(tmp_path / "flat" / "0.png")
    assert dataset_splits(str(tmp_path / "both")) == ["test", "train"]
    assert dataset_splits(str(tmp_path / "train_only")) == ["train"]
    assert dataset_splits(str(tmp_path / "flat")) is None and dataset_splits("shapes") is None  # one undivided set
    assert evaluation_split(str(tmp_path / "both"), None) == "test"
    assert evaluation_split(str(tmp_path / "flat"), None) == "train"  # the folder itself, all of it
    with pytest.raises(DataError, match=r"no 'test' or 'validation' split.*its splits are \['train'\]"):
        evaluation_split(str(tmp_path / "train_only"), None)
    with pytest.raises(DataError, match=r"no split 'validation'; its splits are \['train'\]"):
        evaluation_split(str(tmp_path / "train_only"), "validation")


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_pretokenize_writes_every_split_of_a_split_folder(tmp_path, model_dir, fmt):
    out = tmp_path / "tokens"
    assert pretokenize_cli(model_dir, split_folder(tmp_path / "photos"), out, "--format", fmt) == 0
    loaded = datasets.load_dataset(str(out)) if fmt == "parquet" else datasets.load_from_disk(str(out))
    assert isinstance(loaded, datasets.DatasetDict) and sorted(loaded) == ["test", "train"]
    for split, count in LAYOUT.items():
        rows = loaded[split]
        assert rows["file_name"] == [f"{split}/{c}/{i}.png" for c in ("cats", "dogs") for i in range(count)]
        assert rows.features["label"].names == ["cats", "dogs"] and rows["label"] == [0] * count + [1] * count
    info = json.loads((out / "pretokenize_info.json").read_text())
    assert info["splits"] == {"test": 4, "train": 6} and info["rows"] == 10
    assert sorted(card_splits(out)) == ["test", "train"]


def test_pretokenize_split_test_is_named_test_everywhere(tmp_path, model_dir):
    out = tmp_path / "tokens"
    assert pretokenize_cli(model_dir, split_folder(tmp_path / "photos"), out, "--split", "test", "--format", "parquet") == 0
    loaded = datasets.load_dataset(str(out))
    assert list(loaded) == ["test"] and len(loaded["test"]) == 4  # not a split called "train"
    assert list(card_splits(out)) == ["test"]
    assert json.loads((out / "pretokenize_info.json").read_text())["splits"] == {"test": 4}


def test_streaming_takes_one_split_at_a_time(tmp_path, model_dir, capsys):
    photos = split_folder(tmp_path / "photos")
    assert pretokenize_cli(model_dir, photos, tmp_path / "all", "--streaming") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--split" in error and "'test', 'train'" in error
    assert pretokenize_cli(model_dir, photos, tmp_path / "test", "--streaming", "--split", "test") == 0
    loaded = datasets.load_dataset(str(tmp_path / "test"))
    assert list(loaded) == ["test"] and len(loaded["test"]) == 4


def test_rewriting_a_multi_split_output_never_serves_the_old_rows(tmp_path, model_dir):
    out = tmp_path / "tokens"
    assert pretokenize_cli(model_dir, split_folder(tmp_path / "a"), out, "--format", "parquet") == 0
    assert len(datasets.load_dataset(str(out))["test"]) == 4
    assert pretokenize_cli(model_dir, split_folder(tmp_path / "b", {"train": 1, "test": 1}), out, "--format", "parquet",
                           "--overwrite") == 0
    loaded = datasets.load_dataset(str(out))
    assert len(loaded["test"]) == 2 and len(loaded["train"]) == 2


def evaluate(model_dir, data, *extra):
    return main(["evaluate", "--model", str(model_dir), "--data", str(data), "--num", "0", "--no-progress", *extra])


def test_evaluate_scores_the_test_split_by_default_and_says_so(tmp_path, model_dir, capsys):
    assert evaluate(model_dir, split_folder(tmp_path / "photos")) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "test" and metrics["num_images"] == 4
    assert evaluate(model_dir, tmp_path / "photos", "--split", "train") == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 6


def test_evaluate_never_scores_the_training_images_silently(tmp_path, model_dir, capsys):
    train_only = split_folder(tmp_path / "photos", {"train": 2})
    assert evaluate(model_dir, train_only) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no 'test' or 'validation' split" in error and "['train']" in error
    assert evaluate(model_dir, train_only, "--split", "validation") == 2
    assert "no split 'validation'; its splits are ['train']" in capsys.readouterr().err


def test_evaluate_reads_a_folder_without_split_folders_whole(tmp_path, model_dir, capsys):
    for i in range(3):
        photo(tmp_path / "flat" / f"{i}.png", seed=i)
    assert evaluate(model_dir, tmp_path / "flat") == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_images"] == 3 and metrics["split"] is None


def test_held_out_set_of_training_takes_the_test_split(tmp_path):
    from tests.helpers import tiny_config
    from training.train_tokenizer import TrainConfig, held_out_set

    photos = split_folder(tmp_path / "photos")
    config = TrainConfig(data=str(photos), eval_data=str(photos), eval_images=100)
    eval_set, described = held_out_set(config, tiny_config())
    assert len(eval_set.images) == 4 and "test" in described
    with pytest.raises(DataError, match=r"no split 'validation'; its splits are \['test', 'train'\]"):
        held_out_set(TrainConfig(data=str(photos), eval_data=str(photos), eval_split="validation"), tiny_config())


def test_a_prior_trains_on_the_train_split_of_a_multi_split_output(tmp_path, model_dir):
    from training.train_prior import load_token_dataset

    out = tmp_path / "tokens"
    assert pretokenize_cli(model_dir, split_folder(tmp_path / "photos"), out, "--format", "parquet") == 0
    assert len(load_token_dataset(str(out))) == 6  # not the 10 rows of train and test together
    assert len(load_token_dataset(str(out), held_out=True)) == 4
