import itertools
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BatchEncoding

from image_tokenizer import ImageTokenizer
from tests.helpers import tiny_config


def test_encode_accepts_every_input_form(tokenizer, images):
    array = images[0]
    pil = Image.fromarray(array)
    chw = torch.from_numpy(array).permute(2, 0, 1)
    from_np = tokenizer.encode(array)
    assert from_np.shape == (8, 8) and from_np.dtype == torch.long
    assert torch.equal(tokenizer.encode(pil), from_np)
    assert torch.equal(tokenizer.encode(chw), from_np)  # uint8 tensor, channels first
    assert torch.equal(tokenizer.encode(chw.float() / 255.0), from_np)  # float tensor in [0, 1]
    assert torch.equal(tokenizer.encode(array.astype(np.float32) / 255.0), from_np)
    batch = tokenizer.encode(images[:3])
    assert batch.shape == (3, 8, 8)
    assert torch.equal(tokenizer.encode(np.stack(images[:3])), batch)
    assert torch.equal(tokenizer.encode(torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in images[:3]])), batch)


def test_encode_is_deterministic_across_batch_sizes(tokenizer, images):
    together = tokenizer.encode(images)
    one_by_one = torch.stack([tokenizer.encode(image) for image in images])
    in_threes = torch.cat([tokenizer.encode(images[i : i + 3]) for i in range(0, len(images), 3)])
    assert torch.equal(together, one_by_one)
    assert torch.equal(together, in_threes)
    other = ImageTokenizer(tokenizer.config, tokenizer.model, micro_batch_size=3)
    assert torch.equal(other.encode(images), other.encode(images[::-1]).flip(0))


def test_every_micro_batch_reaches_the_model_in_channels_last(tokenizer, images, monkeypatch):
    layouts = []
    encode_ids = tokenizer.model.encode_ids

    def record(pixels):
        layouts.append((pixels.shape[0], pixels.is_contiguous(memory_format=torch.channels_last)))
        return encode_ids(pixels)

    monkeypatch.setattr(tokenizer.model, "encode_ids", record)
    size = tokenizer.micro_batch_for(*tokenizer.grid_size)
    assert size == 8  # on CPU
    tokenizer.encode(images[: size + 1])  # one full micro-batch, one padded
    assert layouts == [(size, True)] * 2


def test_a_pil_image_reaches_the_argmin_through_four_files_without_coming_back(tokenizer, images):
    """The walk from a PIL image to the codebook argmin: the tokenizer hands the image to the input boundary once,
    then the pixels to the model once. Files entered, in order, never repeat (returns aside), and at the argmin
    the call stack holds at most 4 of the package's files."""
    package = os.path.dirname(sys.modules["image_tokenizer"].__file__)
    entered, stack_at_lookup = [], []

    def trace(frame, event, arg):
        path = frame.f_code.co_filename
        if event != "call" or not path.startswith(package) or path.endswith("config.py"):
            return
        name = os.path.relpath(path, package)
        if name.startswith("modeling/quantiz") and not stack_at_lookup:
            caller, files = frame, []
            while caller is not None:
                if caller.f_code.co_filename.startswith(package):
                    files.append(os.path.relpath(caller.f_code.co_filename, package))
                caller = caller.f_back
            stack_at_lookup.extend(dict.fromkeys(reversed(files)))
        if not entered or entered[-1] != name:
            entered.append(name)

    sys.settrace(trace)
    try:
        tokenizer.encode(Image.fromarray(images[0]))
    finally:
        sys.settrace(None)
    assert len(stack_at_lookup) <= 4, stack_at_lookup
    assert stack_at_lookup[0] == "tokenizer.py" and "tensor_images.py" not in entered  # PIL never tries the tensor path
    calls_from_tokenizer = [b for a, b in itertools.pairwise(entered) if a == "tokenizer.py"]
    assert calls_from_tokenizer == ["inputs.py", "modeling/micro_batches.py"], entered


def test_decode_output_types(tokenizer, images):
    ids = tokenizer.encode(images[:2])
    pils = tokenizer.decode(ids)
    assert isinstance(pils, list) and len(pils) == 2 and pils[0].size == (16, 16) and pils[0].mode == "RGB"
    arrays = tokenizer.decode(ids, output_type="np")
    assert arrays.shape == (2, 16, 16, 3) and arrays.dtype == np.uint8
    tensors = tokenizer.decode(ids, output_type="pt")
    assert tensors.shape == (2, 3, 16, 16) and 0.0 <= tensors.min() and tensors.max() <= 1.0
    np.testing.assert_array_equal(np.asarray(pils[1]), arrays[1])
    single = tokenizer.decode(ids[0])
    assert isinstance(single, Image.Image)
    np.testing.assert_array_equal(np.asarray(single), arrays[0])
    flat = tokenizer.decode(ids[0].flatten().tolist())  # a plain list of h*w ids
    np.testing.assert_array_equal(np.asarray(flat), arrays[0])


def test_call_returns_batch_encoding_with_special_tokens(tokenizer, images):
    batch = tokenizer(images[:3], return_tensors="pt")
    assert isinstance(batch, BatchEncoding)
    ids = batch["input_ids"]
    assert ids.shape == (3, 8 * 8 + 2)
    assert (ids[:, 0] == tokenizer.boi_token_id).all() and (ids[:, -1] == tokenizer.eoi_token_id).all()
    assert torch.equal(ids[:, 1:-1], tokenizer.encode(images[:3]).reshape(3, -1))
    assert torch.equal(batch["attention_mask"], torch.ones_like(ids))
    plain = tokenizer(images[0], add_special_tokens=False)
    assert plain["input_ids"] == [tokenizer.encode(images[0]).flatten().tolist()]
    as_np = tokenizer(images[:2], return_tensors="np")
    assert isinstance(as_np["input_ids"], np.ndarray)
    recovered = tokenizer.batch_decode(ids, output_type="np")
    np.testing.assert_array_equal(recovered, tokenizer.decode(tokenizer.encode(images[:3]), output_type="np"))


def test_call_pads_native_size_batches(tokenizer):
    small, big = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 24, 3), np.uint8)
    batch = tokenizer([small, big], native_size=True, return_tensors="pt", padding=True)
    assert batch["input_ids"].shape == (2, 8 * 12 + 2)
    assert batch["attention_mask"][0].sum() == 8 * 8 + 2
    assert (batch["input_ids"][0, 8 * 8 + 2 :] == tokenizer.pad_token_id).all()


def test_text_tokenizer_keywords_mean_what_they_mean_in_transformers(tokenizer):
    from image_tokenizer import InvalidRequestError

    small, big = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 24, 3), np.uint8)
    unpadded = tokenizer([small, big], native_size=True)  # padding defaults to False, as in transformers
    assert [len(s) for s in unpadded["input_ids"]] == [66, 98]
    with pytest.raises(InvalidRequestError, match="pass padding=True"):
        tokenizer([small, big], native_size=True, return_tensors="pt")
    assert tokenizer.model_max_length == 66 and tokenizer.bos_token_id == tokenizer.boi_token_id
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<boi>", "<eoi>", "<pad>")
    padded = tokenizer([small], padding="max_length", max_length=70, return_tensors="pt")
    assert padded["input_ids"].shape == (1, 70) and int(padded["attention_mask"].sum()) == 66
    cut = tokenizer([small], truncation=True, max_length=10, return_tensors="pt")["input_ids"][0]
    assert len(cut) == 10 and cut[0] == tokenizer.boi_token_id and cut[-1] == tokenizer.eoi_token_id
    with pytest.raises(InvalidRequestError, match="longer than max_length 10"):
        tokenizer([small], padding="max_length", max_length=10)
    assert "attention_mask" not in tokenizer([small], return_attention_mask=False)
    with pytest.raises(InvalidRequestError, match="padding must be"):
        tokenizer([small], padding="sideways")


def test_native_size_batches_round_trip_through_batch_decode(tokenizer):
    images = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(2)]
    batch = tokenizer(images, native_size=True, return_tensors="pt")  # a 16x16 grid, not the trained 8x8
    decoded = tokenizer.batch_decode(batch["input_ids"], output_type="np")
    assert decoded.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(decoded, tokenizer.decode(tokenizer.encode(images, native_size=True), output_type="np"))
    wide = tokenizer([np.zeros((16, 32, 3), np.uint8)], native_size=True)["input_ids"]
    assert tokenizer.batch_decode(wide, grid_size=(8, 16))[0].size == (32, 16)


def test_batch_decode_takes_a_prior_sample_with_a_class_token_before_boi(tokenizer):
    ids = tokenizer.encode(np.zeros((16, 16, 3), np.uint8)).reshape(-1).tolist()
    class_token = len(tokenizer) + 2  # a prior's class token: not in the tokenizer's vocabulary
    sample = [class_token, tokenizer.boi_token_id, *ids, tokenizer.eoi_token_id]
    assert tokenizer.batch_decode([sample])[0].size == (16, 16)


def test_native_size_gives_a_bigger_grid(tokenizer):
    image = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    ids = tokenizer.encode(image, native_size=True)
    assert ids.shape == (16, 24)
    assert tokenizer.decode(ids).size == (48, 32)
    assert tokenizer.encode(image).shape == (8, 8)  # default: resized and centre-cropped to the resolution


def test_vocabulary_api(tokenizer):
    assert tokenizer.vocab_size == 64
    assert len(tokenizer) == 67
    assert (tokenizer.boi_token_id, tokenizer.eoi_token_id, tokenizer.pad_token_id) == (64, 65, 66)
    assert tokenizer.convert_ids_to_tokens([5, 17]) == ["<img_00005>", "<img_00017>"]
    assert tokenizer.convert_ids_to_tokens(64) == "<boi>"
    assert tokenizer.convert_tokens_to_ids(["<img_00042>", "<eoi>"]) == [42, 65]
    vocab = tokenizer.get_vocab()
    assert len(vocab) == 67 and vocab["<img_00063>"] == 63 and vocab["<pad>"] == 66
    codebook = tokenizer.codebook
    assert codebook.shape == (64, 4)
    assert torch.allclose(codebook.norm(dim=1), torch.ones(64))  # l2-normalised lookup by default


def test_encode_runs_without_autograd_and_follows_the_device(tokenizer, images):
    assert tokenizer.to("cpu") is tokenizer
    assert tokenizer.device.type == "cpu"
    ids = tokenizer.encode(images[0])
    assert not ids.requires_grad
    decoded = tokenizer.decode(ids, output_type="pt")
    assert not decoded.requires_grad


def test_quantizer_input_stays_fp32_under_bf16_autocast(tokenizer):
    pixels = torch.randn(2, 3, 16, 16)
    seen = {}
    handle = tokenizer.model.quantizer.register_forward_pre_hook(lambda m, args: seen.update(dtype=args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = tokenizer.model(pixels)
    handle.remove()
    assert seen["dtype"] == torch.float32
    assert out.quantizer.ids.dtype == torch.long


def test_repr_mentions_grid_and_codebook(tokenizer):
    text = repr(tokenizer)
    assert "grid=8x8" in text and "codebook_size=64" in text


def test_default_config_builds_a_64px_16x16_tokenizer():
    tok = ImageTokenizer()
    assert tok.grid_size == (16, 16) and tok.config.resolution == 64
    assert tiny_config().grid_size == (8, 8)


def test_half_precision_runs_the_encoder_and_decoder_while_ids_are_chosen_in_float32(tmp_path, tokenizer):
    from image_tokenizer import InvalidRequestError

    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    reference = tokenizer.encode(images)
    tokenizer.save_pretrained(tmp_path / "tok")
    half = ImageTokenizer.from_pretrained(tmp_path / "tok", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.model.quantizer.codebook.dtype == torch.float32
    ids = half.encode(images)
    assert (ids == reference).float().mean() > 0.9  # only near-ties move (random tiny weights have many)
    assert half.decode(ids, output_type="np").shape == (8, 16, 16, 3)
    assert ImageTokenizer.from_pretrained(tmp_path / "tok", torch_dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(InvalidRequestError, match="use torch.bfloat16 there"):
        tokenizer.to(torch.float16)  # on a CPU: refused clearly instead of crashing inside encode
    with pytest.raises(InvalidRequestError, match="dtype must be"):
        tokenizer.to(dtype=torch.int8)
