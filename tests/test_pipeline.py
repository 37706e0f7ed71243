import numpy as np
import pytest
import torch
from transformers import pipeline

import image_tokenizer.pipeline  # noqa: F401  (registers the task)
from image_tokenizer import InvalidRequestError
from image_tokenizer.pipeline import ImageTokenizationPipeline


def test_pipeline_returns_the_same_ids_as_encode(tokenizer, images):
    tokenize = pipeline("image-tokenization", model=tokenizer, device="cpu")
    assert isinstance(tokenize, ImageTokenizationPipeline)
    assert tokenize.device == torch.device("cpu")
    outputs = tokenize(images[:3])
    assert len(outputs) == 3
    for out, image in zip(outputs, images[:3]):
        assert torch.equal(out["input_ids"], tokenizer.encode(image))
    single = tokenize(images[0])
    assert single["input_ids"].shape == (8, 8)


def test_pipeline_native_size_and_paths(tmp_path, tokenizer):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(path)
    tokenize = ImageTokenizationPipeline(model=tokenizer, device="cpu")
    assert tokenize(str(path), native_size=True)["input_ids"].shape == (8, 16)


def test_pipeline_loads_a_saved_tokenizer_by_path(tmp_path, tokenizer, images):
    tokenizer.save_pretrained(tmp_path / "tok")
    tokenize = ImageTokenizationPipeline(model=str(tmp_path / "tok"), device="cpu")
    assert torch.equal(tokenize(images[0])["input_ids"], tokenizer.encode(images[0]))


def test_pipeline_rejects_other_models():
    with pytest.raises(InvalidRequestError, match="needs an ImageTokenizer"):
        ImageTokenizationPipeline(model=torch.nn.Linear(2, 2))


def test_pipeline_by_folder_batches_generators_and_saves(tmp_path, tokenizer, images):
    tokenizer.save_pretrained(tmp_path / "tok")
    tokenize = pipeline("image-tokenization", model=str(tmp_path / "tok"), device="cpu")  # no network: a folder
    expected = tokenizer.encode(images[:5])
    batched = tokenize(images[:5], batch_size=2)
    assert all(torch.equal(out["input_ids"], e) for out, e in zip(batched, expected))
    streamed = list(tokenize((image for image in images[:3]), batch_size=2))  # a generator
    assert all(torch.equal(out["input_ids"], e) for out, e in zip(streamed, expected))
    tokenize.save_pretrained(tmp_path / "saved")
    assert torch.equal(ImageTokenizationPipeline(model=str(tmp_path / "saved"))(images[0])["input_ids"], expected[0])


def test_pipeline_without_a_model_uses_the_bundled_tokenizer_offline(monkeypatch):
    """transformers resolves model strings itself, so bundled names reach the pipeline as its task default:
    pipeline("image-tokenization") loads the bundled shapes-64 folder, with no Hub call."""
    from image_tokenizer import ImageTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenize = pipeline("image-tokenization")
    assert tokenize.image_tokenizer.config.quantizer.codebook_size == 4096
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    expected = ImageTokenizer.from_pretrained("shapes-64").encode(image)
    assert torch.equal(tokenize(image)["input_ids"], expected)
