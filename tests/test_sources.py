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
    assert ours.features == reference.features
    assert ours.column_names == reference.column_names
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
