"""Every bad input gets a specific, readable error (the message is checked, not just the type)."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from image_tokenizer import (
    CheckpointError,
    ImageLoadError,
    ImageTokenizer,
    ImageTokenizerError,
    InvalidIdsError,
    InvalidImageError,
    InvalidRequestError,
)
from image_tokenizer.image_processing import load_image, to_rgb


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ----- image files -----
def test_truncated_png(tmp_path, tokenizer):
    data = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.png: corrupt or truncated image"):
        tokenizer.encode(path)


def test_non_image_file(tmp_path, tokenizer):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not pixels")
    with pytest.raises(ImageLoadError, match=r"notes\.png: not an image file"):
        tokenizer.encode(str(path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.png: empty file \(0 bytes\)"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")


# ----- modes are converted, not rejected -----
def test_grayscale_becomes_grey_rgb():
    rgb = to_rgb(Image.fromarray(np.full((4, 4), 77, np.uint8)))
    assert rgb.mode == "RGB" and np.asarray(rgb)[0, 0].tolist() == [77, 77, 77]


def test_rgba_is_composited_on_the_background():
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 0] = (200, 100, 50, 255)  # opaque
    pixels[0, 1] = (200, 100, 50, 0)  # fully transparent
    rgb = np.asarray(to_rgb(Image.fromarray(pixels), background=(0, 0, 0)))
    assert rgb[0, 0].tolist() == [200, 100, 50] and rgb[0, 1].tolist() == [0, 0, 0]


def test_palette_image_keeps_its_colours():
    source = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)).convert("P")
    assert source.mode == "P"
    assert np.asarray(to_rgb(source)).tolist() == [[[255, 0, 0], [0, 0, 255]]]


def test_sixteen_bit_grey_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # a 16-bit PNG
    loaded = load_image(path)
    assert loaded.mode.startswith("I")
    assert np.asarray(to_rgb(loaded))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "LA"])
def test_every_mode_encodes(tokenizer, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    image = rgb.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    assert tokenizer.encode(image).shape == (8, 8)


# ----- wrong sizes, shapes and values -----
def test_image_too_small_for_the_grid(tokenizer):
    with pytest.raises(InvalidImageError, match=r"image 0 is 5x4, too small for the 8x8 token grid"):
        tokenizer.encode(np.zeros((4, 5, 3), np.uint8))


def test_native_size_needs_multiples_of_the_factor(tokenizer):
    with pytest.raises(InvalidImageError, match="multiples of the downsampling factor 2"):
        tokenizer.encode(np.zeros((17, 16, 3), np.uint8), native_size=True)


def test_float_images_out_of_range(tokenizer):
    with pytest.raises(InvalidImageError, match=r"float images must hold values in \[0, 1\], got \[-1, 1\]"):
        tokenizer.encode(np.linspace(-1, 1, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3))


def test_wrong_channel_count(tokenizer):
    with pytest.raises(InvalidImageError, match=r"got shape \(5, 16, 16\)"):
        tokenizer.encode(torch.zeros(5, 16, 16))


def test_unsupported_input_type(tokenizer):
    with pytest.raises(InvalidImageError, match="unsupported image input of type dict"):
        tokenizer.encode({"image": 1})


def test_evaluation_and_the_shapes_classifier_check_their_uint8_arrays_at_the_boundary(tokenizer):
    from image_tokenizer.evaluation import evaluate_tokenizer
    from image_tokenizer.shapes_classifier import ShapesClassifier, ShapesClassifierConfig

    floats = np.zeros((2, 16, 16, 3), np.float32)
    with pytest.raises(InvalidImageError, match=r"evaluate_tokenizer takes uint8 images \[N, H, W, 3\].*got float32 \(2, 16, 16, 3\)"):
        evaluate_tokenizer(tokenizer, floats)
    classifier = ShapesClassifier(ShapesClassifierConfig(channels=(8,), feature_dim=4))
    with pytest.raises(InvalidImageError, match=r"the shapes classifier takes uint8 images.*got uint8 \(2, 3, 16, 16\)"):
        classifier.embed(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))


# ----- ids -----
def test_ids_out_of_range(tokenizer):
    ids = torch.zeros(8, 8, dtype=torch.long)
    ids[2, 3] = 64
    with pytest.raises(InvalidIdsError, match=r"id 64 at position \(2, 3\) is a special token, not an image token: image token ids are 0..63"):
        tokenizer.decode(ids)
    ids[2, 3] = 1000
    with pytest.raises(InvalidIdsError, match="id 1000 at position .* is out of range"):
        tokenizer.decode(ids)


def test_negative_ids(tokenizer):
    ids = torch.zeros(2, 8, 8, dtype=torch.long)
    ids[1, 0, 0] = -1
    with pytest.raises(InvalidIdsError, match=r"id -1 at position \(1, 0, 0\) is negative"):
        tokenizer.decode(ids)


def test_float_ids(tokenizer):
    with pytest.raises(InvalidIdsError, match="ids must be integers, got dtype float32"):
        tokenizer.decode(np.zeros((8, 8), np.float32))
    with pytest.raises(InvalidIdsError, match="ids must be integers"):
        tokenizer.convert_ids_to_tokens([1.5])


def test_wrong_rank(tokenizer):
    with pytest.raises(InvalidIdsError, match=r"rank 1 .*, 2 .* or 3 .*; got shape \(1, 2, 8, 8\)"):
        tokenizer.decode(torch.zeros(1, 2, 8, 8, dtype=torch.long))
    with pytest.raises(InvalidIdsError, match="a flat id sequence must hold 64 image tokens"):
        tokenizer.decode(list(range(10)))


def test_unknown_token_string(tokenizer):
    with pytest.raises(InvalidIdsError, match=r"unknown token '<img_99999>'"):
        tokenizer.convert_tokens_to_ids("<img_99999>")


# ----- saved directories -----
@pytest.fixture
def saved(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def test_directory_missing_config(saved):
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config.json not found: a saved tokenizer directory needs config.json"):
        ImageTokenizer.from_pretrained(saved)


def test_directory_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors not found"):
        ImageTokenizer.from_pretrained(saved)


def test_vocab_disagreeing_with_codebook(saved):
    data = json.loads((saved / "vocab.json").read_text())
    data["codebook_size"] = 32
    data["special_tokens"] = {"<boi>": 32, "<eoi>": 33, "<pad>": 34}
    data.pop("vocab")
    data["vocab_size"] = 35
    (saved / "vocab.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="vocab.json says codebook_size 32 but config.json says 64"):
        ImageTokenizer.from_pretrained(saved)


def test_vocab_table_disagreeing_with_its_own_format(saved):
    data = json.loads((saved / "vocab.json").read_text())
    data["vocab"]["<img_00003>"] = 4
    (saved / "vocab.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="the 'vocab' table .* disagrees"):
        ImageTokenizer.from_pretrained(saved)


def test_codebook_file_of_the_wrong_shape(saved):
    save_file({"codebook": torch.zeros(32, 4)}, str(saved / "codebook.safetensors"))
    with pytest.raises(CheckpointError, match=r"holds a \(32, 4\) codebook but vocab.json and config.json describe 64 codes"):
        ImageTokenizer.from_pretrained(saved)


def test_mismatched_weights_name_file_and_key(saved):
    from safetensors.torch import load_file

    weights = load_file(str(saved / "model.safetensors"))
    weights["encoder.conv_in.weight"] = torch.zeros(3, 3, 3, 3)
    weights["extra.weight"] = torch.zeros(1)
    del weights["decoder.conv_out.bias"]
    save_file(weights, str(saved / "model.safetensors"))
    with pytest.raises(CheckpointError) as error:
        ImageTokenizer.from_pretrained(saved)
    message = str(error.value)
    assert "model.safetensors does not match" in message
    assert "missing keys [decoder.conv_out.bias]" in message
    assert "unexpected keys [extra.weight]" in message
    assert "encoder.conv_in.weight: file (3, 3, 3, 3) vs model (16, 3, 3, 3)" in message


def test_corrupt_weights_file(saved):
    (saved / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        ImageTokenizer.from_pretrained(saved)


def test_unknown_name_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a bundled model"):
        ImageTokenizer.from_pretrained(str(tmp_path / "missing" / "dir"))
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache while offline"):
        ImageTokenizer.from_pretrained("someone/not-cached", cache_dir=tmp_path / "cache")


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from image_tokenizer.fileio import atomic_write_text

    atomic_write_text(tmp_path / "a.json", "{}")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's 0600: saved models must be readable by other users


def declared_png(width: int, height: int, mode_bytes: bytes = b"\x08\x00") -> bytes:
    """A PNG whose header declares width x height but holds almost no data (a decompression bomb's signature)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">II", width, height) + mode_bytes + b"\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height, message", [
    (50000, 50000, "refused as a decompression bomb"),  # over PIL's error level
    (10000, 9500, "declares 10000x9500 = 95,000,000 pixels, over the pixel budget of 89,478,485"),  # PIL only warns
])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, tokenizer, width, height, message):
    from image_tokenizer.image_processing import decode_cell

    path = tmp_path / "bomb.png"
    path.write_bytes(declared_png(width, height))
    with pytest.raises(ImageLoadError, match=message):
        tokenizer.encode(str(path))
    with pytest.raises(ImageLoadError, match=message):
        tokenizer.encode(str(path), native_size=True)
    with pytest.raises(ImageLoadError, match=message):
        decode_cell({"bytes": path.read_bytes(), "path": None})  # pre-tokenization's decoder is the same guard


def test_cli_reports_a_bomb_in_one_line(tmp_path, tokenizer, capsys):
    from image_tokenizer.cli import main

    tokenizer.save_pretrained(tmp_path / "tok")
    (tmp_path / "bomb.png").write_bytes(declared_png(50000, 50000))
    assert main(["encode", str(tmp_path / "bomb.png"), "--model", str(tmp_path / "tok")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bomb.png" in err[0] and "decompression bomb" in err[0]


def test_pixel_budgets_are_arguments(tmp_path, tokenizer):
    from image_tokenizer.image_processing import load_image

    (tmp_path / "big.png").write_bytes(declared_png(4000, 3000))
    with pytest.raises(ImageLoadError, match="over the pixel budget of 1,000,000"):
        load_image(tmp_path / "big.png", max_pixels=1_000_000)
    wide = np.zeros((64, 4096 + 64, 3), np.uint8)  # 266,240 pixels: within the decode budget, over a small native one
    with pytest.raises(InvalidImageError, match="over the native-size budget of 100,000"):
        tokenizer.encode(wide, native_size=True, max_native_pixels=100_000)
    side = 64 // tokenizer.config.downsample_factor
    assert tokenizer.encode(wide[:, :64], native_size=True, max_native_pixels=100_000).shape == (side, side)


def test_a_file_name_too_long_for_the_filesystem_is_an_image_load_error(tokenizer):
    with pytest.raises(ImageLoadError, match="cannot be read"):
        tokenizer.encode("x" * 300 + ".png")


def _tamper_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("file, change, message", [
    ("config.json", lambda d: d["quantizer"].update(l2_normalize="false"), "quantizer.l2_normalize must be true or false"),
    ("config.json", lambda d: d["quantizer"].update(codebook_size=float(d["quantizer"]["codebook_size"])), "codebook_size must be an integer"),
    ("config.json", lambda d: d.update(quantizer=None), "field quantizer must be a JSON object"),
    ("config.json", lambda d: d.update(quantizer="big"), "field quantizer must be a JSON object"),
    ("config.json", lambda d: d["preprocessing"].update(image_mean=[float("nan")] * 3), "image_mean\\[\\] must be a finite number"),
    ("config.json", lambda d: d["preprocessing"].update(image_mean="abc"), "image_mean must be a list"),
    ("config.json", lambda d: d.update(ch=16384, norm_groups=32), "parameters .* over the limit"),
    ("config.json", lambda d: d.update(ch="64"), "field ch must be an integer"),
    ("vocab.json", lambda d: d.update(token_format="{0}{1}"), "token_format '\\{0\\}\\{1\\}' must hold exactly one positional field"),
    ("vocab.json", lambda d: d.update(token_format=123), "token_format must be a string"),
    ("vocab.json", lambda d: d.update(special_tokens=["<boi>", "<eoi>", "<pad>"]), "'special_tokens' must be a JSON object"),
])
def test_tampered_config_and_vocab_are_refused_naming_file_and_field(tmp_path, tokenizer, file, change, message):
    tokenizer.save_pretrained(tmp_path / "tok")
    _tamper_json(tmp_path / "tok" / file, change)
    with pytest.raises(CheckpointError if file == "vocab.json" else ImageTokenizerError, match=message) as caught:
        ImageTokenizer.from_pretrained(tmp_path / "tok")
    assert file in str(caught.value)


@pytest.mark.parametrize("file, change, message", [
    ("model.safetensors", lambda t: {k: v.long() if k.endswith("conv_in.weight") else v for k, v in t.items()}, "must be floating point"),
    ("model.safetensors", lambda t: {k: torch.full_like(v, float("nan")) if k.endswith("conv_in.bias") else v for k, v in t.items()}, "NaN"),
    ("model.safetensors", lambda t: {k: torch.zeros_like(v) for k, v in t.items()}, "every weight is zero"),
    ("codebook.safetensors", lambda t: {"codebook": torch.zeros_like(t["codebook"])}, "all .* code vectors are identical"),
    ("codebook.safetensors", lambda t: {"codebook": t["codebook"].long()}, "must be floating point"),
])
def test_tampered_weights_are_refused(tmp_path, tokenizer, file, change, message):
    from safetensors.torch import load_file

    tokenizer.save_pretrained(tmp_path / "tok")
    path = tmp_path / "tok" / file
    save_file({k: v.contiguous() for k, v in change(load_file(str(path))).items()}, str(path))
    with pytest.raises(CheckpointError, match=message) as caught:
        ImageTokenizer.from_pretrained(tmp_path / "tok")
    assert file in str(caught.value)


@pytest.mark.parametrize("make", [
    lambda: torch.rand(3, 16, 16, dtype=torch.bfloat16),
    lambda: torch.rand(3, 16, 16, dtype=torch.float16),
    lambda: torch.rand(3, 16, 16).to_sparse(),
    lambda: Image.new("La", (16, 16), (90, 200)),
    lambda: Image.new("LAB", (16, 16)),
])
def test_unusual_but_valid_images_are_encoded(tokenizer, make):
    assert tokenizer.encode(make()).shape == tokenizer.grid_size


@pytest.mark.parametrize("call, error, message", [
    (lambda t: t.encode(torch.empty(3, 16, 16, device="meta")), InvalidImageError, "meta tensor holds no data"),
    (lambda t: t.encode(torch.zeros(3, 16, 16, dtype=torch.complex64)), InvalidImageError, "complex tensors are not images"),
    (lambda t: t.decode(np.array([["a", "b"]])), InvalidIdsError, "ids must be integers, got dtype str"),
    (lambda t: t.decode(np.array([[b"a"]])), InvalidIdsError, "ids must be integers, got dtype bytes"),
    (lambda t: t.decode(np.array(["2020-01-01"], dtype="datetime64[D]")), InvalidIdsError, "got dtype datetime64"),
    (lambda t: t.decode(torch.empty(8, 8, dtype=torch.long, device="meta")), InvalidIdsError, "meta tensor"),
    (lambda t: t.batch_decode(None), InvalidIdsError, "expects a batch of id sequences"),
    (lambda t: t(np.zeros((16, 16, 3), np.uint8), return_tensors="mlx"), InvalidRequestError, "return_tensors must be"),
])
def test_wrong_kinds_of_input_raise_our_errors(tokenizer, call, error, message):
    with pytest.raises(error, match=message):
        call(tokenizer)


def test_empty_batches_give_empty_results_everywhere(tokenizer):
    """The choice: an empty batch is not an error; every entry point returns an empty batch of its own kind."""
    h, w = tokenizer.grid_size
    side = h * tokenizer.config.downsample_factor
    for empty in (np.zeros((0, side, side, 3), np.uint8), torch.zeros(0, 3, side, side), []):
        assert tokenizer.encode(empty).shape == (0, h, w)
        assert tokenizer(empty, return_tensors="pt")["input_ids"].shape == (0, h * w + 2)
        assert tokenizer(empty)["input_ids"] == []
    assert tokenizer.decode(np.zeros((0, h, w), np.int64)) == []
    assert tokenizer.decode(torch.zeros(0, h, w, dtype=torch.long), output_type="np").shape == (0, side, side, 3)
    assert tokenizer.batch_decode([]) == [] and tokenizer.batch_decode([], output_type="pt").shape == (0, 3, side, side)
    with pytest.raises(InvalidIdsError, match="empty id sequence"):
        tokenizer.decode([])  # one flat sequence with no ids is not an image


def test_a_flipped_byte_in_the_weights_is_caught_by_the_recorded_sha256(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    assert set(json.loads((tmp_path / "tok" / "config.json").read_text())["files_sha256"]) == {
        "model.safetensors", "codebook.safetensors", "vocab.json"}
    path = tmp_path / "tok" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # a low mantissa bit of the last weight: still a valid, finite float
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: its sha256 differs"):
        ImageTokenizer.from_pretrained(tmp_path / "tok")


def test_every_error_class_is_exported():
    import inspect

    import image_tokenizer
    from image_tokenizer import errors

    classes = {name for name, value in vars(errors).items() if inspect.isclass(value) and issubclass(value, Exception)}
    assert classes <= set(image_tokenizer.__all__)
    assert all(issubclass(getattr(image_tokenizer, name), image_tokenizer.ImageTokenizerError) for name in classes)
