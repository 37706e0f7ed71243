"""Cosmos converts from its TorchScript pair without running it. The golden folder tests/golden/cosmos/ holds a tiny
random-weight Cosmos discrete tokenizer exported by NVIDIA's own code (encoder.jit, decoder.jit) and what that code
computed from it (reference.safetensors: 8-bit pixels, pre-quantizer latent, FSQ ids and codes, reconstruction),
written by tests/golden/make_cosmos_golden.py, whose header names the repository and commit it ran."""

from __future__ import annotations

import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import image_tokenizer
from image_tokenizer import ConversionError, ImageTokenizer
from image_tokenizer.cli import main
from image_tokenizer.config import ImageTokenizerConfig, QuantizerConfig
from image_tokenizer.converters import cosmos
from image_tokenizer.converters.torchscript import read_torchscript
from image_tokenizer.modeling.cosmos import CosmosDecoder, CosmosEncoder, wavelet_patch, wavelet_unpatch

GOLDEN = Path(__file__).parent / "golden" / "cosmos"


def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "reference.safetensors"))


def test_archive_tensors_are_those_torch_jit_load_sees():
    for name in ("encoder.jit", "decoder.jit"):
        ours = read_torchscript(GOLDEN / name).tensors
        theirs = torch.jit.load(str(GOLDEN / name)).state_dict()  # runs the archive: only in this test
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype for k in ours)


def test_wavelet_patching_is_invertible_and_halves_each_side_per_step():
    x = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    patched = wavelet_patch(x, 4)
    assert patched.shape == (2, 48, 8, 12)
    torch.testing.assert_close(wavelet_unpatch(patched, 4), x, atol=1e-5, rtol=0)
    constant = wavelet_patch(torch.ones(1, 1, 4, 4), 2)  # a flat image has only a low-pass band: 2 * (1/sqrt(2))^2
    assert torch.allclose(constant[0, 0], torch.ones(2, 2)) and constant[0, 1:].abs().max() < 1e-6  # zero up to float rounding


def test_architecture_recovered_from_tensor_shapes_reproduces_the_publishers_latent_and_reconstruction():
    """Encoder + quant_conv give the publisher's pre-quantizer latent; post_quant_conv + decoder its reconstruction
    from the FSQ codes. The quantizer is left out here: this is the architecture alone."""
    encoder = cosmos.read_part(GOLDEN / "encoder.jit", cosmos.ENCODER_PARTS, "encoder_jit()")
    decoder = cosmos.read_part(GOLDEN / "decoder.jit", cosmos.DECODER_PARTS, "decoder_jit()")
    fields = cosmos.shape(encoder.tensors, GOLDEN)
    assert fields["patch_size"] == 4 and fields["downsample_levels"] == 0 and fields["ch_mult"] == (1, 1)
    config = ImageTokenizerConfig(architecture="cosmos", resolution=64, **fields,
                                  quantizer=QuantizerConfig(codebook_size=1000, codebook_dim=4))
    config = cosmos.place_attention(config, encoder.tensors, decoder.tensors, GOLDEN)
    ours_encoder, ours_decoder = CosmosEncoder(config).eval(), CosmosDecoder(config).eval()
    assert len(ours_encoder.down[1].attn) == 1 and len(ours_decoder.up[1].attn) == 0  # as in the archives

    def part(tree, prefix):
        return {k[len(prefix):]: v.float() for k, v in tree.tensors.items() if k.startswith(prefix) and "patcher" not in k}

    ours_encoder.load_state_dict(part(encoder, "encoder."))
    ours_decoder.load_state_dict(part(decoder, "decoder."))
    reference = golden()
    with torch.no_grad():
        qc, pqc = part(encoder, "quant_conv."), part(decoder, "post_quant_conv.")
        latent = torch.nn.functional.conv2d(ours_encoder(reference["pixels"].float() / 127.5 - 1), qc["weight"], qc["bias"])
        features = torch.nn.functional.conv2d(reference["codes"], pqc["weight"], pqc["bias"])
        torch.testing.assert_close(latent, reference["latent"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours_decoder(features), reference["reconstruction"], atol=1e-4, rtol=1e-4)


def test_a_pair_that_is_not_an_encoder_and_a_decoder_is_refused_naming_the_file(tmp_path):
    shutil.copy(GOLDEN / "encoder.jit", tmp_path / "encoder.jit")
    shutil.copy(GOLDEN / "encoder.jit", tmp_path / "decoder.jit")
    with pytest.raises(ConversionError, match=r"decoder\.jit: not a Cosmos decoder archive"):
        cosmos.load(tmp_path)
    (tmp_path / "decoder.jit").write_bytes(b"not a zip")
    with pytest.raises(ConversionError, match=r"decoder\.jit: not a TorchScript archive"):
        cosmos.load(tmp_path)


def test_an_archive_whose_pickle_names_code_is_refused_without_running_it(tmp_path):
    class Runs:
        def __reduce__(self):
            return (print, ("this must never run",))

    with zipfile.ZipFile(tmp_path / "encoder.jit", "w") as archive:
        archive.writestr("encoder/data.pkl", pickle.dumps(Runs(), protocol=2))
        archive.writestr("encoder/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(ConversionError, match=r"encoder\.jit: .*refusing the global __builtin__\.print"):
        read_torchscript(tmp_path / "encoder.jit")


def test_cosmos_converts_with_the_ids_and_reconstructions_of_nvidias_code(tmp_path):
    tok = image_tokenizer.convert(GOLDEN, resolution=64)  # auto-detected: a folder with encoder.jit and decoder.jit
    assert tok.config.architecture == "cosmos" and tok.grid_size == (16, 16)
    assert tok.config.preprocessing.alpha_background == (0, 0, 0)  # NVIDIA's read_image drops the alpha channel
    assert tok.config.quantizer.kind == "fsq" and tuple(tok.config.quantizer.levels) == (8, 5, 5, 5)
    reference = golden()
    ids = tok.encode(reference["pixels"].permute(0, 2, 3, 1).numpy())
    assert torch.equal(ids, reference["ids"]), f"{(ids != reference['ids']).float().mean():.2%} of ids differ"
    with torch.no_grad():
        decoded = tok.model.decode_ids(reference["ids"])
    torch.testing.assert_close(decoded, reference["reconstruction"], atol=1e-4, rtol=1e-4)
    card = tok.card_info["conversion"]
    assert card["format"] == "cosmos" and "NVIDIA Open Model License" in card["license"]
    assert "least significant" in card["ids"]


def test_cosmos_ids_are_fsq_digits_with_channel_0_least_significant():
    tok = image_tokenizer.convert(GOLDEN, format="cosmos", resolution=64)
    reference = golden()
    codes = reference["codes"]  # [B, 4, h, w] FSQ codes in [-1, 1], from NVIDIA's quantizer
    digits = (codes * torch.tensor([4, 2, 2, 2]).view(1, 4, 1, 1) + torch.tensor([4, 2, 2, 2]).view(1, 4, 1, 1)).round().long()
    expected = digits[:, 0] + 8 * digits[:, 1] + 40 * digits[:, 2] + 200 * digits[:, 3]
    assert torch.equal(expected, reference["ids"])
    with torch.no_grad():
        looked_up = tok.model.quantizer.lookup(reference["ids"])
    torch.testing.assert_close(looked_up.float(), codes, atol=0, rtol=0)


def test_cosmos_cli_writes_an_ordinary_tokenizer(tmp_path):
    out = tmp_path / "ours"
    assert main(["convert", str(GOLDEN), "--output", str(out), "--resolution", "64"]) == 0
    again = ImageTokenizer.from_pretrained(out)
    assert again.card_info["conversion"]["format"] == "cosmos"
    reference = golden()
    assert torch.equal(again.encode(reference["pixels"].permute(0, 2, 3, 1).numpy()), reference["ids"])
    assert "image-tokenizer convert" in (out / "README.md").read_text()
