"""The "magvit2" architecture (Open-MAGVIT2's encoder and decoder) as a config choice: selected by
`ImageTokenizerConfig.architecture`, validated, saved, and equal to the publisher's modules where the PyPI
package `open-magvit2` is importable (`pip install --no-deps open-magvit2`; its model modules need only torch and
einops). The full conversion with ids is in test_convert_seed_voken.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from image_tokenizer import ConfigError, ImageTokenizer, ImageTokenizerConfig
from image_tokenizer.modeling import VQModel
from image_tokenizer.modeling.magvit2 import Magvit2Decoder, Magvit2Encoder, depth_to_space
from tests.test_memory_format import record_layouts


def magvit2_config(**overrides) -> ImageTokenizerConfig:
    settings = {"architecture": "magvit2", "resolution": 32, "ch": 32, "ch_mult": (1, 2, 2), "num_res_blocks": 1,
                "z_channels": 8, "use_mid_attention": False, "use_quant_conv": False, "use_post_quant_conv": False,
                "quantizer": {"codebook_size": 64, "codebook_dim": 8}}
    return ImageTokenizerConfig(**{**settings, **overrides})


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(torch.randn(p.shape, generator=generator) * (0.2 if p.ndim > 1 else 0.1) + base)
    return model.eval()


def test_architecture_defaults_to_vqgan_and_old_config_files_still_load(tmp_path):
    assert ImageTokenizerConfig().architecture == "vqgan"
    old = ImageTokenizerConfig().to_dict()
    del old["architecture"]  # config.json written before the field existed
    assert ImageTokenizerConfig.from_dict(old).architecture == "vqgan"
    config = magvit2_config()
    config.save(tmp_path)
    assert ImageTokenizerConfig.load(tmp_path) == config


@pytest.mark.parametrize("overrides, message", [
    ({"architecture": "vit"}, "architecture must be one of"),
    ({"use_mid_attention": True}, "no attention"),
    ({"attn_resolutions": (8,)}, "no attention"),
    ({"use_quant_conv": True}, "use_quant_conv"),
    ({"dropout": 0.1}, "no dropout"),
])
def test_impossible_magvit2_configs_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        magvit2_config(**overrides)


def test_the_architecture_field_chooses_the_encoder_and_decoder():
    model = VQModel(magvit2_config())
    assert isinstance(model.encoder, Magvit2Encoder) and isinstance(model.decoder, Magvit2Decoder)
    assert model.quant_conv is None and model.post_quant_conv is None
    assert not any("attn" in name for name, _ in model.named_modules())
    assert model.decoder.up[1].upsample.conv1.out_channels == 4 * 64  # depth-to-space needs 4x the channels


def test_depth_to_space_is_the_dcr_order_of_the_published_weights():
    """Output pixel (2y+i, 2x+j) of channel c is input channel (2i+j)*C + c at (y, x) (torch's pixel_shuffle
    would take channel 4c + 2i + j instead)."""
    x = torch.arange(2 * 8 * 3 * 3, dtype=torch.float).reshape(2, 8, 3, 3)
    out = depth_to_space(x)
    assert out.shape == (2, 2, 6, 6)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                assert torch.equal(out[:, c, i::2, j::2], x[:, (2 * i + j) * 2 + c])
    assert torch.equal(depth_to_space(x.contiguous(memory_format=torch.channels_last)), out)


def test_a_magvit2_tokenizer_batches_deterministically_runs_channels_last_and_round_trips(tmp_path):
    torch.manual_seed(0)
    tok = ImageTokenizer(magvit2_config())
    randomize(tok.model)
    images = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(3)]
    not_channels_last, handles = record_layouts(tok.model)
    try:
        ids = tok.encode(images)
        decoded = tok.decode(ids, output_type="pt")
    finally:
        for handle in handles:
            handle.remove()
    assert not_channels_last == [], f"layers left channels_last: {not_channels_last}"
    assert ids.shape == (3, 8, 8) and decoded.shape[-2:] == (32, 32)
    assert torch.equal(tok.encode(images[1]), ids[1])  # alone or in a batch: the same ids
    tok.save_pretrained(tmp_path / "tok")
    again = ImageTokenizer.from_pretrained(tmp_path / "tok")
    assert again.config.architecture == "magvit2"
    assert torch.equal(again.encode(images), ids)


def test_encoder_and_decoder_equal_open_magvit2s_own_modules():
    improved = pytest.importorskip("open_magvit2.taming.modules.diffusionmodules.improved_model",
                                   reason="open-magvit2 is not installed (pip install --no-deps open-magvit2)")
    dd = {"ch": 32, "out_ch": 3, "in_channels": 3, "num_res_blocks": 2, "z_channels": 18, "ch_mult": [1, 2, 2],
          "resolution": 32}
    theirs_encoder, theirs_decoder = randomize(improved.Encoder(**dd)), randomize(improved.Decoder(**dd), seed=1)
    config = magvit2_config(num_res_blocks=2, z_channels=18, quantizer={"codebook_size": 64, "codebook_dim": 18})
    encoder, decoder = Magvit2Encoder(config).eval(), Magvit2Decoder(config).eval()
    encoder.load_state_dict(theirs_encoder.state_dict(), strict=True)  # the published names, key for key
    decoder.load_state_dict(theirs_decoder.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    codes = torch.randint(0, 2, (2, 18, 8, 8), generator=torch.Generator().manual_seed(3)).float() * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), theirs_encoder(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(decoder(codes), theirs_decoder(codes), atol=1e-4, rtol=1e-4)
