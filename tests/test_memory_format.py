"""The network runs in channels_last end to end (weights, pixels, looked-up codes, every layer's output): oneDNN
and cuDNN convolutions are faster on it, and one layer that silently went back to NCHW would put a layout
conversion, and the slower NCHW kernels, behind every layer after it (benchmarks/results/op_profile_*.md)."""

from __future__ import annotations

import pytest
import torch

from image_tokenizer.modeling import VQModel


def record_layouts(model: torch.nn.Module) -> tuple[list[str], list]:
    """Forward hooks on every module: the names of those whose 4-D output is not channels_last."""
    names = {module: name for name, module in model.named_modules()}
    not_channels_last: list[str] = []

    def check(module, inputs, output):
        is_map = isinstance(output, torch.Tensor) and output.ndim == 4
        if is_map and not output.is_contiguous(memory_format=torch.channels_last):
            not_channels_last.append(names[module] or type(module).__name__)

    handles = [module.register_forward_hook(check) for module in model.modules()]
    return not_channels_last, handles


def test_weights_are_channels_last_and_stay_so_on_a_move_or_a_dtype_change(tokenizer):
    def layouts() -> set[bool]:
        return {p.is_contiguous(memory_format=torch.channels_last) for p in tokenizer.model.parameters() if p.ndim == 4}

    assert layouts() == {True}
    tokenizer.to("cpu", dtype=torch.bfloat16)
    assert layouts() == {True}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_layer_converts_back_to_nchw_when_encoding_or_decoding(tokenizer, images, dtype):
    tokenizer.to(dtype=dtype)
    assert any(isinstance(m, torch.nn.Conv2d) for m in tokenizer.model.decoder.modules())
    assert tokenizer.model.decoder.up[0].attn or tokenizer.model.decoder.up[1].attn  # attention is covered too
    not_channels_last, handles = record_layouts(tokenizer.model)
    try:
        ids = tokenizer.encode(images[:3])
        assert not_channels_last == [], f"encoder layers left channels_last: {not_channels_last}"
        tokenizer.decode(ids, output_type="pt")
        assert not_channels_last == [], f"decoder layers left channels_last: {not_channels_last}"
    finally:
        for handle in handles:
            handle.remove()


def test_looked_up_codes_are_channels_last(tokenizer):
    codes = tokenizer.model.quantizer.lookup(torch.randint(0, tokenizer.vocab_size, (2, 8, 8)))
    assert codes.shape == (2, tokenizer.model.quantizer.dim, 8, 8)
    assert codes.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_gives_the_ids_and_pixels_of_the_nchw_network(tokenizer, images, config):
    """The layout changes only float rounding: the same ids (up to rare near-ties) and pixels within 1e-5."""
    nchw = VQModel(config).eval()
    nchw.load_state_dict(tokenizer.model.state_dict())
    assert nchw.encoder.conv_in.weight.is_contiguous()
    pixels = torch.stack(tokenizer.preprocess(images)[0])
    with torch.inference_mode():
        ids = tokenizer.encode_pixels(pixels)
        nchw_ids = nchw.encode_ids(pixels.contiguous())
        assert (ids != nchw_ids).float().mean() < 0.005
        decoded = tokenizer.model.decode_ids(ids)
        nchw_decoded = nchw.decode_quantized(nchw.quantizer.lookup(ids).contiguous())
    assert not nchw_decoded.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(decoded, nchw_decoded, atol=1e-5, rtol=1e-5)
