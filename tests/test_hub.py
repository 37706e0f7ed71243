"""Saving, loading and the Hub, all offline: pulls come from a pre-filled Hugging Face cache."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi

from image_tokenizer import CheckpointError, ImageTokenizer
from image_tokenizer.hub import bundled_models
from tests.helpers import tiny_config

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_cache(cache_dir: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT, ref: str = "main") -> None:
    """Lay files out exactly as huggingface_hub's cache does: snapshots/<commit>/..., refs/<branch>."""
    storage = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / ref).write_text(commit)


def test_save_then_load_gives_identical_ids_and_images(tmp_path, tokenizer, images):
    written = tokenizer.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in written) == sorted(
        ["config.json", "model.safetensors", "codebook.safetensors", "vocab.json", "README.md"]
    )
    assert not list((tmp_path / "tok").glob(".*.tmp"))  # atomic writes leave no temporaries behind
    loaded = ImageTokenizer.from_pretrained(tmp_path / "tok")
    ids = tokenizer.encode(images)
    assert torch.equal(loaded.encode(images), ids)
    np.testing.assert_array_equal(loaded.decode(ids, output_type="np"), tokenizer.decode(ids, output_type="np"))
    assert loaded.config == tokenizer.config
    assert loaded.get_vocab() == tokenizer.get_vocab()


def test_saved_vocabulary_is_usable_without_this_package(tmp_path, tokenizer):
    from safetensors.numpy import load_file

    tokenizer.save_pretrained(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    assert vocab["codebook_size"] == 64 and vocab["grid_size"] == [8, 8]
    assert vocab["vocab"]["<img_00042>"] == 42 and vocab["special_tokens"]["<boi>"] == 64
    codebook = load_file(str(tmp_path / "codebook.safetensors"))["codebook"]
    assert codebook.shape == (64, 4)
    normalised = codebook / np.linalg.norm(codebook, axis=1, keepdims=True)
    assert vocab["codebook_normalization"] == "l2"
    np.testing.assert_allclose(normalised, tokenizer.codebook.numpy(), rtol=1e-6, atol=1e-6)


def test_model_card_records_metrics_and_survives_a_round_trip(tmp_path, tokenizer):
    tokenizer.card_info = {"metrics": {"psnr_db": 31.5, "codebook_usage": 0.97}, "training": {"data": "shapes 20k"}}
    tokenizer.save_pretrained(tmp_path, model_name="me/tiny")
    card = (tmp_path / "README.md").read_text()
    assert "library_name: image-tokenizer" in card
    assert "| psnr_db | 31.5 |" in card and "shapes 20k" in card
    assert 'ImageTokenizer.from_pretrained("me/tiny")' in card
    assert ImageTokenizer.from_pretrained(tmp_path).card_info == tokenizer.card_info


def test_pull_through_a_prefilled_cache_offline(tmp_path, tokenizer, images, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer.save_pretrained(tmp_path / "saved")
    files = {p.name: p.read_bytes() for p in (tmp_path / "saved").iterdir()}
    fill_cache(tmp_path / "cache", "someone/tiny-tokenizer", files)
    pulled = ImageTokenizer.from_pretrained("someone/tiny-tokenizer", cache_dir=tmp_path / "cache")
    assert torch.equal(pulled.encode(images), tokenizer.encode(images))
    by_commit = ImageTokenizer.from_pretrained("someone/tiny-tokenizer", cache_dir=tmp_path / "cache", revision=COMMIT)
    assert torch.equal(by_commit.encode(images[0]), tokenizer.encode(images[0]))
    again = ImageTokenizer.from_pretrained("someone/tiny-tokenizer", cache_dir=tmp_path / "cache", local_files_only=True)
    assert again.vocab_size == 64


def test_push_uploads_one_commit_that_pulls_back(tmp_path, tokenizer, images, monkeypatch):
    """Capture the upload calls huggingface_hub would make, replay them into a cache, pull back offline."""
    captured: dict = {"repos": [], "commits": []}

    def fake_create_repo(self, repo_id, **kwargs):
        captured["repos"].append((repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id)

    def fake_create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        files = {}
        for op in operations:
            source = op.path_or_fileobj
            files[op.path_in_repo] = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
        captured["commits"].append({"repo_id": repo_id, "message": commit_message, "files": files, **kwargs})
        return SimpleNamespace(oid=COMMIT, commit_url=f"https://example.invalid/{repo_id}/commit/{COMMIT}")

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "create_commit", fake_create_commit)
    info = tokenizer.push_to_hub("me/pushed-tokenizer", commit_message="first upload", private=True)
    assert info.oid == COMMIT
    assert captured["repos"] == [("me/pushed-tokenizer", {"private": True, "exist_ok": True})]
    (commit,) = captured["commits"]
    assert commit["message"] == "first upload" and commit["create_pr"] is False
    assert sorted(commit["files"]) == ["README.md", "codebook.safetensors", "config.json", "model.safetensors", "vocab.json"]
    assert b'from_pretrained("me/pushed-tokenizer")' in commit["files"]["README.md"]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fill_cache(tmp_path / "cache", "me/pushed-tokenizer", commit["files"])
    pulled = ImageTokenizer.from_pretrained("me/pushed-tokenizer", cache_dir=tmp_path / "cache")
    assert torch.equal(pulled.encode(images), tokenizer.encode(images))


def test_bundled_names_resolve_first(tmp_path, tokenizer, monkeypatch, images):
    from image_tokenizer import hub

    fake_pretrained = tmp_path / "pretrained"
    tokenizer.save_pretrained(fake_pretrained / "tiny-bundled")
    monkeypatch.setattr(hub, "PRETRAINED_DIR", fake_pretrained)
    assert bundled_models() == ["tiny-bundled"]
    loaded = ImageTokenizer.from_pretrained("tiny-bundled")
    assert torch.equal(loaded.encode(images[0]), tokenizer.encode(images[0]))


def test_a_saved_folder_named_like_a_bundled_model_is_loaded_not_shadowed(tmp_path, tokenizer, monkeypatch, images):
    from image_tokenizer import hub

    fake_pretrained = tmp_path / "pretrained"
    tokenizer.save_pretrained(fake_pretrained / "tiny-bundled")
    monkeypatch.setattr(hub, "PRETRAINED_DIR", fake_pretrained)
    torch.manual_seed(7)
    mine = ImageTokenizer(tiny_config())
    monkeypatch.chdir(tmp_path)
    mine.save_pretrained("tiny-bundled")  # the user's own folder, in the working directory
    loaded = ImageTokenizer.from_pretrained("tiny-bundled")
    assert torch.equal(loaded.encode(images[0]), mine.encode(images[0]))
    assert not torch.equal(loaded.model.quantizer.codebook, tokenizer.model.quantizer.codebook)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # without a local folder of that name, the bundled one
    assert torch.equal(ImageTokenizer.from_pretrained("tiny-bundled").model.quantizer.codebook, tokenizer.model.quantizer.codebook)


def test_overwriting_a_save_keeps_a_loadable_directory(tmp_path, images):
    first = ImageTokenizer(tiny_config())
    first.save_pretrained(tmp_path)
    torch.manual_seed(1)
    second = ImageTokenizer(tiny_config())
    second.save_pretrained(tmp_path)
    loaded = ImageTokenizer.from_pretrained(tmp_path)
    assert torch.equal(loaded.encode(images), second.encode(images))


def test_loading_never_unpickles(tmp_path, tokenizer):
    """A pickle file named like our weights is refused: only safetensors are read."""
    tokenizer.save_pretrained(tmp_path)
    torch.save(tokenizer.model.weights_state_dict(), tmp_path / "model.safetensors")
    from image_tokenizer import CheckpointError

    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        ImageTokenizer.from_pretrained(tmp_path)
    shutil.rmtree(tmp_path)


def test_push_without_the_hub_is_a_hub_error(tmp_path, tokenizer, monkeypatch):
    import importlib

    from huggingface_hub import HfApi

    from image_tokenizer import HubError

    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 is set"):  # the suite runs offline
        tokenizer.push_to_hub("me/tiny")
    transport = next(importlib.import_module(m) for m in ("httpx2", "httpx") if importlib.util.find_spec(m))

    def unreachable(self, *args, **kwargs):
        raise transport.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(HfApi, "create_repo", unreachable)
    with pytest.raises(HubError, match="the Hub is unreachable"):
        tokenizer.push_to_hub("me/tiny")


def test_a_missing_repo_while_online_does_not_claim_offline_mode(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: the Hub is unreachable
    with pytest.raises(CheckpointError) as caught:
        ImageTokenizer.from_pretrained("someone/nothing-here", cache_dir=tmp_path / "cache")
    assert "HF_HUB_OFFLINE" not in str(caught.value) and "could not be reached" in str(caught.value)


def test_save_pretrained_with_push_to_hub_saves_locally_and_uploads_one_commit(tmp_path, tokenizer, monkeypatch):
    from image_tokenizer import ImagePrior, TokenLayout

    commits = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(HfApi, "create_commit", lambda self, repo_id, operations, **kwargs: commits.append(
        (repo_id, sorted(op.path_in_repo for op in operations))) or SimpleNamespace(oid=COMMIT))
    tokenizer.save_pretrained(tmp_path / "tok", push_to_hub=True, repo_id="me/tok")
    assert (tmp_path / "tok" / "config.json").is_file()
    prior = ImagePrior.from_layout(TokenLayout.for_tokenizer(tokenizer, "me/tok"), tokenizer=tokenizer,
                                   hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    prior.save_pretrained(tmp_path / "prior", push_to_hub=True, repo_id="me/prior")  # the same Hub layer
    assert commits == [
        ("me/tok", ["README.md", "codebook.safetensors", "config.json", "model.safetensors", "vocab.json"]),
        ("me/prior", ["README.md", "config.json", "generation_config.json", "model.safetensors", "prior_layout.json"]),
    ]
    assert type(tokenizer).push_to_hub is type(prior).push_to_hub  # written once
