"""A photo's EXIF orientation is applied wherever it is decoded, so every path sees the pixels `datasets` sees."""

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from image_tokenizer import ImageLoadError
from image_tokenizer.image_processing import decode_cell, load_image

ORIENTATION = 0x0112


def rotated_jpeg(path, width=24, height=16):
    """A JPEG whose pixels are stored landscape with EXIF orientation 6 (show rotated 90 degrees clockwise)."""
    ramp = np.linspace(0, 255, width * height).reshape(height, width).astype(np.uint8)
    pixels = np.stack([ramp, ramp[::-1], np.full_like(ramp, 80)], axis=-1)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(pixels).save(path, format="JPEG", exif=exif, quality=95)
    return path


def test_a_file_opens_upright_as_datasets_opens_it(tmp_path):
    path = rotated_jpeg(tmp_path / "photo.jpg")
    cell = datasets.Dataset.from_dict({"image": [str(path)]}).cast_column("image", datasets.Image())[0]["image"]
    ours = load_image(path)
    assert ours.size == cell.size == (16, 24)
    assert np.array_equal(np.asarray(ours), np.asarray(cell.convert(ours.mode)))
    undecoded = {"bytes": path.read_bytes(), "path": str(path)}
    assert np.array_equal(np.asarray(decode_cell(undecoded)), np.asarray(ours))


def test_encode_of_a_path_equals_encode_of_the_datasets_image(tmp_path, tokenizer):
    path = rotated_jpeg(tmp_path / "photo.jpg")
    image = datasets.Dataset.from_dict({"image": [str(path)]}).cast_column("image", datasets.Image())[0]["image"]
    assert torch.equal(tokenizer.encode(str(path)), tokenizer.encode(image))


def test_an_image_over_the_pixel_budget_is_named_as_such(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(path)
    with pytest.raises(ImageLoadError, match="over the pixel budget") as caught:
        load_image(path, max_pixels=1000)
    assert "corrupt" not in str(caught.value)
