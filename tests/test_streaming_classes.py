"""Streaming pre-tokenization keeps what the map path keeps: class names, and a quiet progress display;
`pretokenize` itself accepts an IterableDataset and writes shards as the streaming path does."""

import datasets
import numpy as np
import pytest

from image_tokenizer import InvalidRequestError
from image_tokenizer.pretokenize import pretokenize, pretokenize_streaming


@pytest.fixture
def labelled(images):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cats", "people"])})
    return datasets.Dataset.from_dict({"image": images[:4], "label": [0, 1, 1, 0]}, features=features)


def test_streamed_shards_keep_the_class_label_feature(tmp_path, tokenizer, labelled, capsys):
    pretokenize_streaming(labelled.to_iterable_dataset(), tokenizer, str(tmp_path / "out"), shard_size=2, progress=False)
    tokens = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert tokens.features["label"] == datasets.ClassLabel(names=["cats", "people"])
    assert tokens["label"] == [0, 1, 1, 0]
    assert "Creating parquet" not in capsys.readouterr().err  # no bar per shard


def test_pretokenize_writes_an_iterable_dataset_as_shards(tmp_path, tokenizer, labelled):
    expected = pretokenize(labelled, tokenizer, load_from_cache_file=False)
    tokens, report = pretokenize(labelled.to_iterable_dataset(), tokenizer, output_dir=str(tmp_path / "out"),
                                 return_report=True)
    assert sorted((tmp_path / "out" / "data").glob("*.parquet"))
    assert tokens["input_ids"] == expected["input_ids"] and tokens["label"] == expected["label"]
    assert tokens.features["label"].names == ["cats", "people"]
    assert report["rows_in"] == 4 and report["skipped"] == 0
    with pytest.raises(InvalidRequestError, match="output_dir"):
        pretokenize(labelled.to_iterable_dataset(), tokenizer)
    assert np.array_equal(tokens["source_index"], [0, 1, 2, 3])
