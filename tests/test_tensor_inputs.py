"""Arrays and tensors of pixels skip PIL (one batch, on the device) and give exactly the PIL path's ids."""

import numpy as np
import pytest
import torch
from PIL import Image

import image_tokenizer.inputs as inputs_module
from image_tokenizer import ImageTokenizer, InvalidImageError, InvalidRequestError
from image_tokenizer.tensor_images import pil_resize
from tests.helpers import tiny_config


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(11, 16, 16, 3), dtype=np.uint8)


def _pil_ids(tokenizer: ImageTokenizer, arrays: np.ndarray) -> torch.Tensor:
    return tokenizer.encode([Image.fromarray(a) for a in arrays])


def _forbid_pil(monkeypatch):
    monkeypatch.setattr(inputs_module, "to_pil_list", lambda *a, **k: pytest.fail("went through PIL"))


def test_uint8_and_float_batches_skip_pil_and_match_it(tokenizer, batch, monkeypatch):
    expected = _pil_ids(tokenizer, batch)
    _forbid_pil(monkeypatch)
    channels_first = torch.from_numpy(batch).permute(0, 3, 1, 2)
    assert torch.equal(tokenizer.encode(batch), expected)
    assert torch.equal(tokenizer.encode(channels_first), expected)
    assert torch.equal(tokenizer.encode(channels_first.float() / 255), expected)
    assert torch.equal(tokenizer.encode(channels_first.to(torch.float64) / 255), expected)
    assert torch.equal(tokenizer.encode(batch.astype(np.float32) / 255), expected)
    assert torch.equal(tokenizer.encode(batch[3]), expected[3])  # one image: [h, w]
    assert torch.equal(tokenizer.encode(channels_first[3]), expected[3])


def test_grey_arrays_skip_pil_and_match_it(tokenizer, batch, monkeypatch):
    grey = batch[..., 0]
    expected = tokenizer.encode([Image.fromarray(g) for g in grey])
    _forbid_pil(monkeypatch)
    assert torch.equal(tokenizer.encode(grey[..., None]), expected)
    assert torch.equal(tokenizer.encode(grey[0]), expected[0])
    assert torch.equal(tokenizer.encode(torch.from_numpy(grey).unsqueeze(1)), expected)


@pytest.mark.parametrize("resample", ["bicubic", "bilinear", "box", "lanczos"])
@pytest.mark.parametrize(("source", "target"), [((32, 32), (16, 16)), ((24, 40), (16, 27)), ((9, 50), (16, 89)), ((16, 16), (23, 23))])
def test_device_resize_is_pillow_bit_for_bit(resample, source, target):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, *source, 3), dtype=np.uint8)
    filters = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
               "box": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}
    expected = np.stack([np.asarray(Image.fromarray(a).resize(target[::-1], filters[resample])) for a in images])
    resized = pil_resize(torch.from_numpy(images).permute(0, 3, 1, 2), target, resample).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(resized, expected)


@pytest.mark.parametrize("resize_mode", ["resize", "resize_center_crop", "center_crop"])
def test_batches_of_another_size_are_resized_on_the_device_like_pil(resize_mode, monkeypatch):
    config = tiny_config()
    config.preprocessing.resize_mode = resize_mode
    torch.manual_seed(0)
    tokenizer = ImageTokenizer(config)
    images = np.random.default_rng(2).integers(0, 256, size=(5, 24, 37, 3), dtype=np.uint8)
    expected = _pil_ids(tokenizer, images)
    _forbid_pil(monkeypatch)
    assert torch.equal(tokenizer.encode(images), expected)


def test_inputs_the_fast_path_does_not_cover_take_the_pil_path(tokenizer, batch):
    rgba = np.concatenate([batch, np.full((*batch.shape[:3], 1), 128, np.uint8)], axis=-1)
    assert torch.equal(tokenizer.encode(rgba), _pil_ids(tokenizer, rgba))  # alpha: composited by PIL
    wide = (batch.astype(np.uint16) * 257)
    assert torch.equal(tokenizer.encode(wide), _pil_ids(tokenizer, batch))  # 16-bit: rescaled by the PIL path
    assert tokenizer.encode(batch[:0]).shape == (0, 8, 8)  # an empty batch: empty ids


def test_bad_float_batches_are_still_named_by_image(tokenizer, batch):
    floats = batch.astype(np.float32) / 255
    floats[2, 0, 0, 0] = np.nan
    with pytest.raises(InvalidImageError, match="image 2: contains NaN"):
        tokenizer.encode(floats)
    with pytest.raises(InvalidImageError, match=r"image 0: float images must hold values in \[0, 1\]"):
        tokenizer.encode(torch.from_numpy(batch).permute(0, 3, 1, 2).float())
    with pytest.raises(InvalidImageError, match="too small for the 8x8 token grid"):
        tokenizer.encode(np.zeros((2, 4, 4, 3), np.uint8))


def test_micro_batch_is_fixed_per_device_and_size(tokenizer, monkeypatch):
    assert tokenizer.micro_batch_for(64, 64) == 8  # CPU, whatever the size
    monkeypatch.setattr(ImageTokenizer, "device", property(lambda self: torch.device("cuda")))
    assert tokenizer.micro_batch_for(64, 64) == 256  # a 2**20-pixel budget on a GPU
    assert tokenizer.micro_batch_for(256, 256) == 16
    assert tokenizer.micro_batch_for(4096, 4096) == 1
    fixed = ImageTokenizer(tokenizer.config, tokenizer.model, micro_batch_size=5)
    assert fixed.micro_batch_for(64, 64) == 5


def test_decoding_uses_the_micro_batch_of_the_images_it_makes(tokenizer, monkeypatch):
    """Id grids are sized as the images they decode to (grid x downsampling factor), so a GPU's pixel budget
    holds for decoding as for encoding."""
    monkeypatch.setattr(ImageTokenizer, "device", property(lambda self: torch.device("cuda")))
    sizes = []
    record = lambda chunk: sizes.append(chunk.shape[0]) or chunk
    monkeypatch.setattr(tokenizer.model, "decode_ids", record)
    monkeypatch.setattr(tokenizer.model, "encode_ids", record)
    tokenizer._run_model("decode_ids", torch.zeros(5000, 8, 8, dtype=torch.long), pad=False)
    tokenizer._run_model("encode_ids", torch.zeros(5000, 3, 16, 16), pad=False)
    assert tokenizer.micro_batch_for(16, 16) == 4096 and sizes == [4096, 904, 4096, 904]


def test_ids_do_not_depend_on_the_callers_batching_for_any_micro_batch(tokenizer, batch):
    for micro_batch in (None, 1, 3, 8):
        tok = ImageTokenizer(tokenizer.config, tokenizer.model, micro_batch_size=micro_batch)
        together = tok.encode(batch)
        assert torch.equal(together, torch.cat([tok.encode(batch[i : i + 4]) for i in range(0, len(batch), 4)]))
        assert torch.equal(together, torch.stack([tok.encode(image) for image in batch]))


def test_compile_keeps_ids_and_images(tokenizer, batch):
    """tok.compile() wraps encode and decode in torch.compile with static micro-batch shapes (the eager
    backend here, so the suite stays fast; the inductor speed is in benchmarks/throughput.py)."""
    ids = tokenizer.encode(batch)
    images = tokenizer.decode(ids[:3], output_type="np")
    assert tokenizer.compile(backend="eager", force=True) is tokenizer and tokenizer.compiled
    assert torch.equal(tokenizer.encode(batch), ids)
    assert np.array_equal(tokenizer.decode(ids[:3], output_type="np"), images)


def test_compile_on_a_cpu_warns_and_stays_eager(tokenizer):
    """Compiled calls measured slower than eager on a CPU (benchmarks/results/compile_cpu_*.md), so there compile()
    says so and changes nothing, unless forced."""
    with pytest.warns(UserWarning, match="does nothing on a CPU"):
        assert tokenizer.compile() is tokenizer
    assert not tokenizer.compiled


def test_bad_device_dtype_and_micro_batch_are_clear_errors(tokenizer):
    with pytest.raises(InvalidRequestError, match="no CUDA GPU|has 1 CUDA GPU"):
        tokenizer.to("cuda:7")
    with pytest.raises(InvalidRequestError, match="'gpu0' is not a device"):
        tokenizer.to("gpu0")
    with pytest.raises(InvalidRequestError, match="dtype must be"):
        tokenizer.to(dtype=torch.int8)
    with pytest.raises(InvalidRequestError, match="micro_batch_size must be a positive integer"):
        ImageTokenizer(tokenizer.config, tokenizer.model, micro_batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidRequestError, match="float16 convolutions are slow or missing on CPU"):
            tokenizer.to(torch.float16)
