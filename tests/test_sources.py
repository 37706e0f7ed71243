import json

import datasets
import numpy as np
import pytest
from PIL import Image

from image_tokenizer.data.shapes import save_image_folder
from image_tokenizer.data.sources import DataError, image_folder_dataset


def test_folder_dataset_matches_datasets_imagefolder(tmp_path):
    folder = save_image_folder(tmp_path / "shapes", 6, seed=3, progress=False)
    ours = image_folder_dataset(folder)
    reference = datasets.load_dataset("imagefolder", data_dir=str(folder), split="train")
    assert ours.column_names == [*reference.column_names, "file_name"]
    assert ours["file_name"] == sorted(p.name for p in folder.glob("*.png"))
    ours = ours.remove_columns("file_name")
    assert ours.features == reference.features
    for row in range(6):
        a, b = ours[row], reference[row]
        assert np.array_equal(np.asarray(a.pop("image")), np.asarray(b.pop("image")))
        assert a == b


def test_class_subfolders_become_a_label_column(tmp_path):
    for name, value in [("cats", 0), ("dogs", 255)]:
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (4, 4), (value, 0, 0)).save(tmp_path / name / f"{i}.png")
    dataset = image_folder_dataset(tmp_path)
    assert dataset.features["label"].names == ["cats", "dogs"]
    assert dataset["label"] == [0, 0, 1, 1]
    assert np.asarray(dataset[3]["image"])[0, 0, 0] == 255


def test_metadata_without_an_entry_for_an_image_is_an_error(tmp_path):
    for i in range(2):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "0.png", "caption": "a"}) + "\n")
    with pytest.raises(DataError, match="no entry for 1 image"):
        image_folder_dataset(tmp_path)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no image files"):
        image_folder_dataset(tmp_path)


def photo_tree(root, layout):
    """Write small PNGs at root/<relative path> for each path in layout."""
    for index, relative in enumerate(layout):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (index * 10 % 256, 0, 0)).save(root / relative)


def test_split_folders_are_splits_and_leaf_folders_are_classes(tmp_path):
    photo_tree(tmp_path, [f"{split}/{label}/{i}.png" for split in ("train", "test") for label in ("a", "b") for i in range(3)])
    test = image_folder_dataset(tmp_path, split="test")
    assert len(test) == 6
    assert test.features["label"].names == ["a", "b"]
    assert all(name.startswith("test/") for name in test["file_name"])
    assert len(image_folder_dataset(tmp_path)) == 6  # the default split is train, without the test images
    with pytest.raises(DataError, match="no split 'validation'.*'test', 'train'"):
        image_folder_dataset(tmp_path, split="validation")


def test_a_single_train_folder_names_classes_by_their_leaf_folder(tmp_path):
    photo_tree(tmp_path, [f"train/{label}/{i}.png" for label in ("people", "cats") for i in range(2)])
    dataset = image_folder_dataset(tmp_path)
    assert dataset.features["label"].names == ["cats", "people"]
    assert dataset["file_name"] == ["train/cats/0.png", "train/cats/1.png", "train/people/0.png", "train/people/1.png"]


def test_metadata_csv_columns_come_along_with_the_file_name(tmp_path):
    photo_tree(tmp_path, ["x.png", "y.png"])
    (tmp_path / "metadata.csv").write_text("file_name,caption\nx.png,a cat\ny.png,a dog\n")
    dataset = image_folder_dataset(tmp_path)
    assert dataset["caption"] == ["a cat", "a dog"]
    assert dataset["file_name"] == ["x.png", "y.png"]


def test_training_and_evaluation_read_one_split_of_a_split_folder(tmp_path):
    from image_tokenizer.config import PreprocessingConfig
    from image_tokenizer.data.sources import open_source

    photo_tree(tmp_path / "split", [f"{split}/{i}.png" for split in ("train", "test") for i in range(2 if split == "test" else 3)])
    photo_tree(tmp_path / "plain", [f"{i}.png" for i in range(4)])
    assert len(open_source(str(tmp_path / "split"), 16, PreprocessingConfig(), split="test")) == 2
    assert len(open_source(str(tmp_path / "split"), 16, PreprocessingConfig(), split="train")) == 3
    assert len(open_source(str(tmp_path / "plain"), 16, PreprocessingConfig(), split="train")) == 4  # one set of images
    with pytest.raises(DataError, match="no split 'test': it has no split folders"):  # as pretokenize refuses it
        open_source(str(tmp_path / "plain"), 16, PreprocessingConfig(), split="test")
