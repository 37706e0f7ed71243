"""ImageTokenizerConfig.architecture and the settings of the Emu3 and Cosmos families: old config.json files load
as "vqgan", each family's settings belong to it alone, and the level sides follow the halving levels."""

from __future__ import annotations

import json

import pytest
import torch

from image_tokenizer import ConfigError, ImageTokenizer, ImageTokenizerConfig


def test_a_config_json_written_before_the_architecture_field_loads_as_vqgan(tmp_path):
    data = ImageTokenizerConfig().to_dict()
    for name in ("architecture", "temporal_downsample_factor", "attention_heads", "patch_size", "downsample_levels"):
        data.pop(name)
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = ImageTokenizerConfig.load(tmp_path)
    assert config.architecture == "vqgan" and config.downsample_factor == 4 and config.patch_size == 1


@pytest.mark.parametrize("fields, message", [
    ({"architecture": "vqgan3"}, "architecture must be one of"),
    ({"patch_size": 4}, "Cosmos settings"),
    ({"temporal_downsample_factor": 4}, "Emu3 settings"),
    ({"architecture": "cosmos", "patch_size": 3}, "power of two"),
    ({"architecture": "cosmos", "downsample_levels": 4}, "downsample_levels must be in 0..3"),
    ({"architecture": "emu3", "temporal_downsample_factor": 3}, "power of two"),
])
def test_family_settings_are_checked(fields, message):
    with pytest.raises(ConfigError, match=message):
        ImageTokenizerConfig(**fields)


def test_cosmos_sides_count_wavelet_patches_and_only_the_halving_levels():
    config = ImageTokenizerConfig(architecture="cosmos", resolution=64, ch=32, ch_mult=(1, 1, 1), patch_size=4,
                                  downsample_levels=1)
    assert config.downsample_factor == 8 and config.grid_size == (8, 8)
    assert config.level_resolutions == [16, 8, 8]
    assert config.decoder_level_resolutions == [8, 8, 4]  # Cosmos's decoder counts as if every level halved


@pytest.mark.parametrize("architecture, extra", [
    ("cosmos", {"patch_size": 4, "downsample_levels": 0}),
    ("emu3", {"temporal_downsample_factor": 4, "attention_heads": 2, "attn_resolutions": (8,)}),
])
def test_each_family_encodes_decodes_saves_and_loads(tmp_path, architecture, extra):
    config = ImageTokenizerConfig(architecture=architecture, resolution=16, ch=32, ch_mult=(1, 2), z_channels=8,
                                  quantizer={"codebook_size": 64, "codebook_dim": 8, "l2_normalize": False}, **extra)
    tok = ImageTokenizer(config)
    images = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8).numpy()
    ids = tok.encode(images)
    assert ids.shape == (2, *config.grid_size)
    assert tok.decode(ids, output_type="pt").shape == (2, 3, 16, 16)
    tok.save_pretrained(tmp_path / "tok")
    again = ImageTokenizer.from_pretrained(tmp_path / "tok")
    assert again.config.architecture == architecture and torch.equal(again.encode(images), ids)
