"""`wds:PATTERN` specs: WebDataset tar shards through `datasets`' own webdataset loader, as every reader sees them
(pretokenize, evaluate, training's data)."""

from __future__ import annotations

import datasets
import pytest

from image_tokenizer import DataError, PretokenizeError
from image_tokenizer.data.specs import load_split, parse_spec
from image_tokenizer.data.webdataset import MAX_SHARDS, expand_braces
from image_tokenizer.pretokenize import pretokenize
from tests.helpers import write_webdataset


def test_brace_patterns_expand_in_order_with_their_zero_padding():
    assert expand_braces("s/{00008..00011}.tar") == ["s/00008.tar", "s/00009.tar", "s/00010.tar", "s/00011.tar"]
    assert expand_braces("{a,b}/{1..2}.tar") == ["a/1.tar", "a/2.tar", "b/1.tar", "b/2.tar"]
    with pytest.raises(DataError, match="more than"):
        expand_braces("{0..99999999999}.tar")  # refused before a single name is made
    assert MAX_SHARDS >= 100_000


def test_shards_read_as_one_split_with_image_key_caption_and_metadata(tmp_path):
    keys = write_webdataset(tmp_path, shards=2, per_shard=3)
    spec = f"wds:{tmp_path}/{{00000..00001}}.tar"
    assert parse_spec(spec).kind == "wds"
    rows = load_split(spec)
    assert isinstance(rows, datasets.Dataset) and set(rows.column_names) == {"image", "__key__", "txt", "json"}
    assert isinstance(rows.features["image"], datasets.Image) and rows["__key__"] == keys
    assert rows[4]["txt"] == f"caption {keys[4]}" and rows[4]["json"] == {"width": 20, "source": keys[4]}
    streamed = load_split(f"wds:{tmp_path}/*.tar", streaming=True)  # a glob; read shard by shard
    assert isinstance(streamed, datasets.IterableDataset) and [row["__key__"] for row in streamed] == keys


def test_a_missing_shard_is_named(tmp_path):
    write_webdataset(tmp_path, shards=2, per_shard=1)
    with pytest.raises(DataError, match="00002.tar"):
        load_split(f"wds:{tmp_path}/{{00000..00002}}.tar")


def test_an_undecodable_sample_is_a_row_error_skipped_under_skip_bad(tmp_path, tokenizer):
    keys = write_webdataset(tmp_path, shards=2, per_shard=3, bad=("000010001",))
    spec = f"wds:{tmp_path}/{{00000..00001}}.tar"
    with pytest.raises(PretokenizeError, match=r"row 4 \(000010001.png\): cannot decode image"):
        pretokenize(spec, tokenizer)
    tokens, report = pretokenize(spec, tokenizer, skip_bad=True, return_report=True)
    assert tokens["__key__"] == [key for key in keys if key != "000010001"] and report["skipped"] == 1
    shards = pretokenize(spec, tokenizer, skip_bad=True, streaming=True, output_dir=str(tmp_path / "out"), shard_size=4,
                         progress=False)
    assert shards["input_ids"] == tokens["input_ids"] and shards["source_index"] == tokens["source_index"]


def test_evaluation_and_training_read_shards_as_any_spec(tmp_path, config):
    from image_tokenizer.data.sources import open_source
    from image_tokenizer.evaluation import load_eval_set

    write_webdataset(tmp_path, shards=2, per_shard=2, bad=("000000001",))
    spec = f"wds:{tmp_path}/{{00000..00001}}.tar"
    held_out = load_eval_set(spec, config.resolution, config.preprocessing, num=0)
    assert held_out.images.shape == (3, 16, 16, 3) and held_out.skipped == 1 and "000000001.png" in held_out.skipped_errors[0]
    assert len(open_source(spec, config.resolution, config.preprocessing)) == 4
