"""One home for each concept (issue 41): a dataset spec is parsed in data/specs.py, a pre-tokenization's settings
are one PretokenizeOptions, a prior's sizes one PriorConfig, and the CLI's converter formats are converters'."""

import json

import datasets
import pytest

from image_tokenizer import ConfigError, DataError, InvalidRequestError, PriorConfig, TokenLayout
from image_tokenizer.data.specs import load_splits, load_token_splits, parse_spec
from image_tokenizer.pretokenize import PretokenizeOptions, pretokenize


def test_every_spec_form_is_parsed_in_one_place(tmp_path):
    (tmp_path / "photos").mkdir()
    datasets.Dataset.from_dict({"x": [1]}).save_to_disk(str(tmp_path / "saved"))
    kinds = {text: parse_spec(text) for text in ("shapes", "emoji", "hf:me/photos", str(tmp_path / "photos"),
                                                 str(tmp_path / "saved"), "wds:shards/{00000..00009}.tar")}
    assert [spec.kind for spec in kinds.values()] == ["shapes", "emoji", "hub", "folder", "saved", "wds"]
    assert kinds["wds:shards/{00000..00009}.tar"].location == "shards/{00000..00009}.tar"
    assert kinds["hf:me/photos"].name == "me/photos" and kinds[str(tmp_path / "saved")].location == str(tmp_path / "saved")
    with pytest.raises(DataError, match=r"nowhere: not 'shapes', 'emoji', 'hf:NAME', 'wds:SHARDS', an image folder, or a saved dataset"):
        parse_spec(str(tmp_path / "nowhere"))


def test_a_spec_opens_as_datasets_with_declared_columns():
    shapes = load_splits("shapes", num=3, seed=1)
    assert list(shapes) == ["train"] and len(shapes["train"]) == 3
    assert isinstance(shapes["train"].features["image"], datasets.Image) and "num_shapes" in shapes["train"].features
    with pytest.raises(DataError, match="no split 'test'"):
        load_splits("shapes", "test")


def test_a_token_folder_of_parquet_files_is_one_split(tmp_path):
    (tmp_path / "tokens").mkdir()
    datasets.Dataset.from_dict({"input_ids": [[1, 2], [3, 4]]}).to_parquet(str(tmp_path / "tokens" / "part.parquet"))
    splits = load_token_splits(str(tmp_path / "tokens"))
    assert list(splits) == ["train"] and splits["train"]["input_ids"] == [[1, 2], [3, 4]]
    with pytest.raises(DataError, match="neither a save_to_disk dataset nor a folder of parquet files"):
        load_token_splits(str(tmp_path / "empty"))


def test_keywords_and_options_are_the_same_pretokenization(tmp_path, tokenizer, images):
    dataset = datasets.Dataset.from_dict({"image": images[:4]}, features=datasets.Features({"image": datasets.Image()}))
    options = PretokenizeOptions(flip=True, batch_size=2, load_from_cache_file=False)
    by_options = pretokenize(dataset, tokenizer, options, output_dir=str(tmp_path / "out"), format="parquet")
    by_keywords = pretokenize(dataset, tokenizer, flip=True, batch_size=2, load_from_cache_file=False)
    assert by_options["input_ids"] == by_keywords["input_ids"] and by_options["flipped"] == [False, True] * 4
    recorded = json.loads((tmp_path / "out" / "pretokenize_info.json").read_text())["options"]
    assert PretokenizeOptions.from_json(recorded) == PretokenizeOptions.build(options, {"output_dir": str(tmp_path / "out"),
                                                                                         "format": "parquet"})
    with pytest.raises(InvalidRequestError, match=r"unknown pretokenize option\(s\) \['flips'\]"):
        pretokenize(dataset, tokenizer, flips=True)
    with pytest.raises(InvalidRequestError, match="pass settings such as image_column= by name"):
        pretokenize(dataset, tokenizer, "image")


def test_a_prior_is_built_from_its_config_and_records_it(tokenizer):
    from image_tokenizer import ImagePrior

    layout = TokenLayout.for_tokenizer(tokenizer, "tok")
    config = PriorConfig(architecture="gpt2", hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    by_config = ImagePrior.from_layout(layout, config, tokenizer=tokenizer)
    by_keywords = ImagePrior.from_layout(layout, tokenizer=tokenizer, architecture="gpt2", hidden_size=16,
                                         num_hidden_layers=1, num_attention_heads=2)
    assert by_config.model.config.to_dict() == by_keywords.model.config.to_dict()
    assert (by_config.model.config.n_embd, by_config.model.config.n_layer) == (16, 1)
    assert PriorConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(ConfigError, match=r"unknown prior config field\(s\) \['hidden'\]"):
        ImagePrior.from_layout(layout, hidden=16)
    with pytest.raises(ConfigError, match="architecture must be 'llama' or 'gpt2'"):
        ImagePrior.from_layout(layout, architecture="mamba")
    with pytest.raises(ConfigError, match="multiple of num_attention_heads"):
        PriorConfig(hidden_size=30, num_attention_heads=4).validate()


def test_the_cli_offers_the_converters_formats():
    import argparse

    from image_tokenizer.cli import build_parser
    from image_tokenizer.converters import FORMATS

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    fmt = next(a for a in commands.choices["convert"]._actions if a.dest == "format")
    assert fmt.choices == ["auto", *FORMATS]
