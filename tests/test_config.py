import json

import pytest

from image_tokenizer import ConfigError, ImageTokenizerConfig, QuantizerConfig
from tests.helpers import tiny_config


def test_config_round_trips_through_json(tmp_path):
    config = tiny_config(l2_normalize=False, use_ema=True, dead_code_threshold=0.5)
    config.save(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["grid_size"] == [8, 8]
    assert data["library_version"]
    assert data["quantizer"]["use_ema"] is True
    loaded = ImageTokenizerConfig.load(tmp_path)
    assert loaded == config


def test_grid_and_downsampling():
    config = ImageTokenizerConfig(resolution=64, ch_mult=(1, 2, 2))
    assert config.downsample_factor == 4
    assert config.grid_size == (16, 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"resolution": 30, "ch_mult": (1, 2, 2)}, "not divisible by the downsampling factor 4"),
        ({"ch": 20, "norm_groups": 32}, "not divisible by norm_groups=32"),
        ({"attn_resolutions": (7,)}, "attn_resolutions [7] never occur"),
        ({"in_channels": 1}, "must be 3"),
        ({"dropout": 1.5}, "dropout must be in [0, 1)"),
    ],
)
def test_impossible_configs_fail_at_construction(kwargs, message):
    with pytest.raises(ConfigError) as error:
        ImageTokenizerConfig(**kwargs)
    assert message in str(error.value)


def test_codebook_of_zero_is_rejected():
    with pytest.raises(ConfigError, match="codebook_size must be at least 1, got 0"):
        QuantizerConfig(codebook_size=0)


def test_unknown_field_is_an_error_naming_it(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"resolutoin": 64}))
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['resolutoin'\]"):
        ImageTokenizerConfig.load(tmp_path)


def test_nested_dicts_are_accepted():
    config = ImageTokenizerConfig(quantizer={"codebook_size": 32, "codebook_dim": 4})
    assert config.quantizer.codebook_size == 32


def test_inconsistent_grid_in_file_is_rejected(tmp_path):
    data = tiny_config().to_dict()
    data["grid_size"] = [4, 4]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="grid_size"):
        ImageTokenizerConfig.load(tmp_path)
