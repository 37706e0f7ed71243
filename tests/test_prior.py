import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from image_tokenizer import (
    CheckpointError,
    ImagePrior,
    ImageTokenizer,
    InvalidIdsError,
    InvalidImageError,
    InvalidRequestError,
    TokenLayout,
)
from image_tokenizer.prior import SamplingOptions
from tests.helpers import tiny_config

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}


@pytest.fixture
def tok(tmp_path):
    torch.manual_seed(0)
    tokenizer = ImageTokenizer(tiny_config())
    tokenizer.save_pretrained(tmp_path / "tok")
    return ImageTokenizer.from_pretrained(tmp_path / "tok")


@pytest.fixture
def prior(tok, tmp_path):
    torch.manual_seed(0)
    layout = TokenLayout.for_tokenizer(tok, str(tmp_path / "tok"), class_names=["a", "b", "c"], class_label_column="kind")
    return ImagePrior.from_layout(layout, tokenizer=tok, **SIZES)


@pytest.fixture
def unconditional(tok, tmp_path):
    torch.manual_seed(0)
    return ImagePrior.from_layout(TokenLayout.for_tokenizer(tok, str(tmp_path / "tok")), tokenizer=tok, **SIZES)


def test_layout_ids_and_prefix(prior):
    layout = prior.layout
    assert (layout.codebook_size, layout.grid_size) == (64, (8, 8))
    assert (layout.boi_token_id, layout.eoi_token_id, layout.pad_token_id) == (64, 65, 66)
    assert layout.first_class_token_id == 67 and layout.null_class_token_id == 70 and layout.vocab_size == 71
    assert layout.non_image_token_ids == list(range(64, 71))
    assert layout.prefix(torch.tensor([0, 2]), 2).tolist() == [[67, 64], [69, 64]]
    assert layout.prefix(None, 1).tolist() == [[70, 64]]
    assert layout.sequence_length == 66
    assert prior.model.config.vocab_size == 71


def test_save_load_round_trip_and_strict_files(prior, tmp_path):
    files = prior.save_pretrained(tmp_path / "prior")
    assert {f.name for f in files} >= {"config.json", "model.safetensors", "generation_config.json", "prior_layout.json"}
    assert not list((tmp_path / "prior").glob("*.bin")) and not list((tmp_path / "prior").glob(".save-*"))
    loaded = ImagePrior.from_pretrained(tmp_path / "prior")  # the layout names the tokenizer; it loads lazily
    assert loaded.layout == prior.layout
    x = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        assert torch.equal(loaded.model(x).logits, prior.model(x).logits)
    assert torch.equal(
        loaded.generate(3, seed=1, output_type="ids", class_labels=[0, 1, 2]),
        prior.generate(3, seed=1, output_type="ids", class_labels=[0, 1, 2]),
    )
    (tmp_path / "prior" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        ImagePrior.from_pretrained(tmp_path / "prior")


def test_a_prior_stored_in_bfloat16_runs_in_float32_unless_asked(prior, tmp_path):
    prior.model.to(torch.bfloat16)
    prior.save_pretrained(tmp_path / "prior")
    x = torch.randint(0, 64, (2, 10))
    loaded = ImagePrior.from_pretrained(tmp_path / "prior")
    assert loaded.model.dtype == torch.float32
    with torch.no_grad():  # the stored values, exactly, now computed in float32
        assert torch.equal(loaded.model.model.embed_tokens.weight, prior.model.model.embed_tokens.weight.float())
        reference = prior.model.float()(x).logits
        assert torch.allclose(loaded.model(x).logits, reference, atol=1e-5)
    assert ImagePrior.from_pretrained(tmp_path / "prior", dtype="auto").model.dtype == torch.bfloat16
    assert ImagePrior.from_pretrained(tmp_path / "prior", dtype=torch.bfloat16).model.dtype == torch.bfloat16
    with pytest.raises(InvalidRequestError, match="dtype must be"):
        ImagePrior.from_pretrained(tmp_path / "prior", dtype=torch.int8)


def test_the_codebook_fingerprint_is_computed_on_the_cpu(tok):
    """A GPU can round the l2 normalisation differently; the fingerprint must not depend on where the codes live."""
    import hashlib

    from image_tokenizer.prior import codebook_sha256

    raw = tok.model.quantizer.codebook.detach().float().cpu()
    expected = torch.nn.functional.normalize(raw, dim=-1) if tok.model.quantizer.config.l2_normalize else raw
    assert codebook_sha256(tok) == hashlib.sha256(expected.contiguous().numpy().tobytes()).hexdigest()
    assert torch.equal(tok.model.quantizer.effective_codebook(device="cpu"), tok.codebook)


def test_a_device_this_machine_lacks_is_a_clear_error(prior, tmp_path, monkeypatch):
    prior.save_pretrained(tmp_path / "prior")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidRequestError, match="no CUDA GPU"):
        ImagePrior.from_pretrained(tmp_path / "prior", device="cuda")
    with pytest.raises(InvalidRequestError, match="not a device"):
        prior.to("gpu0")


def test_layout_file_with_unknown_fields_is_refused(prior, tmp_path):
    prior.save_pretrained(tmp_path / "prior")
    path = tmp_path / "prior" / "prior_layout.json"
    data = json.loads(path.read_text())
    data["surprise"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="unknown fields"):
        ImagePrior.from_pretrained(tmp_path / "prior")


def test_plain_transformers_loads_the_saved_prior_without_this_package(prior, tmp_path):
    prior.save_pretrained(tmp_path / "prior")
    x = torch.randint(0, 64, (1, 12))
    with torch.no_grad():
        expected = prior.model(x).logits[0, -1, :5].tolist()
    script = (
        "import sys, json, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'prior')!r})\n"
        f"x = torch.tensor({x.tolist()})\n"
        "out = m.generate(x[:, :2], max_new_tokens=4, do_sample=False)\n"
        "assert not any(name.startswith('image_tokenizer') for name in sys.modules)\n"
        "print(json.dumps({'logits': m(x).logits[0, -1, :5].tolist(), 'new': out[0, 2:].tolist(), "
        "'cls': type(m).__name__}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["cls"] == "LlamaForCausalLM"
    np.testing.assert_allclose(report["logits"], expected, rtol=1e-5, atol=1e-5)
    # its generation_config.json suppresses the special and class tokens for plain model.generate too
    assert all(0 <= t < 64 for t in report["new"])


def test_generate_is_seeded_and_leaves_global_rng_alone(prior):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = prior.generate(4, seed=7, output_type="ids")
    assert torch.equal(torch.rand(1), before)  # the caller's random stream is untouched
    b = prior.generate(4, seed=7, output_type="ids")
    c = prior.generate(4, seed=8, output_type="ids")
    assert a.shape == (4, 8, 8) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    images = prior.generate(2, seed=7, output_type="np")
    assert images.shape == (2, 16, 16, 3)


def test_generation_never_emits_special_or_class_tokens(prior):
    # Make the model love its special tokens: the constraint must still keep every sample inside the codebook.
    bias = torch.zeros(prior.layout.vocab_size)
    bias[prior.layout.non_image_token_ids] = 50.0
    handle = prior.model.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)
    try:
        ids = prior.generate(3, seed=0, output_type="ids", class_labels=1, guidance_scale=2.0)
        big = prior.generate(1, seed=0, output_type="ids", grid_size=(9, 10))
        done = prior.complete(ids[:, :3], output_type="ids", seed=0)
    finally:
        handle.remove()
    for grid in (ids, big, done):
        assert int(grid.min()) >= 0 and int(grid.max()) < 64


def test_guidance_changes_samples_and_uses_the_null_class(prior):
    plain = prior.generate(4, seed=3, class_labels=2, output_type="ids")
    guided = prior.generate(4, seed=3, class_labels=2, guidance_scale=4.0, output_type="ids")
    assert guided.shape == plain.shape and not torch.equal(plain, guided)
    # guidance toward the null class itself is no guidance at all
    assert torch.equal(prior.generate(2, seed=3, output_type="ids"), prior.generate(2, seed=3, guidance_scale=1.0, output_type="ids"))


def test_complete_keeps_the_given_rows(prior, tok):
    start = prior.generate(2, seed=0, output_type="ids")
    done = prior.complete(start[:, :3], output_type="ids", seed=5)
    assert done.shape == (2, 8, 8) and torch.equal(done[:, :3], start[:, :3])
    flat = prior.complete(start[0, :2].reshape(-1), output_type="ids", seed=5)  # one flat sequence of 2 rows
    assert flat.shape == (1, 8, 8) and torch.equal(flat[0, :2], start[0, :2])
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    from_image = prior.complete([image], output_type="ids", seed=5)  # encodes, keeps the top half
    assert torch.equal(from_image[0, :4], tok.encode(image)[:4])


def test_sliding_window_on_the_trained_grid_equals_cached_generation(prior):
    # Greedy decoding (top_k=1): the window sampler, which recomputes each context without a cache, must pick
    # exactly what transformers' KV-cached generate picks when the canvas is the trained grid.
    labels = torch.tensor([0, 2])
    cached = prior.generate(2, top_k=1, class_labels=labels, output_type="ids", seed=0)
    from image_tokenizer.prior.sampling import sample_sliding

    windowed = sample_sliding(prior.model, prior.layout, labels, 2, (8, 8), SamplingOptions(top_k=1))
    assert torch.equal(cached, windowed)


def test_sliding_window_makes_larger_images(prior):
    ids = prior.generate(2, seed=0, grid_size=(12, 16), output_type="ids", class_labels=[0, 1])
    assert ids.shape == (2, 12, 16)
    assert torch.equal(ids, prior.generate(2, seed=0, grid_size=(12, 16), output_type="ids", class_labels=[0, 1]))
    images = prior.generate(1, seed=0, grid_size=(12, 16), output_type="np")
    assert images.shape == (1, 24, 32, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"class_labels": 3}, InvalidRequestError, "class label 3 out of range"),
        ({"class_labels": [-1]}, InvalidRequestError, "out of range"),
        ({"class_labels": [0.5]}, InvalidRequestError, "integers"),
        ({"class_labels": [0, 1]}, InvalidRequestError, "2 class labels for 4 images"),
        ({"top_p": 0.0}, InvalidRequestError, "top_p"),
        ({"top_p": 1.5}, InvalidRequestError, "top_p"),
        ({"temperature": 0}, InvalidRequestError, "temperature"),
        ({"temperature": -1.0}, InvalidRequestError, "temperature"),
        ({"top_k": 0}, InvalidRequestError, "top_k"),
        ({"num_images": 0}, InvalidRequestError, "num_images"),
        ({"grid_size": (4, 8)}, InvalidRequestError, "at least the trained grid"),
        ({"output_type": "gif"}, InvalidRequestError, "output_type"),
    ],
)
def test_bad_sampling_arguments_fail_before_sampling(prior, monkeypatch, kwargs, error, match):
    monkeypatch.setattr(prior.model, "generate", lambda *a, **k: pytest.fail("sampling started"))
    arguments = {"num_images": 4, **kwargs}
    with pytest.raises(error, match=match):
        prior.generate(**arguments)


def test_sampling_keywords_are_one_checked_set(prior, monkeypatch):
    """generate and complete take the same sampling keywords (SamplingKwargs); a misspelt one is named."""
    monkeypatch.setattr(prior.model, "generate", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(InvalidRequestError, match="unknown keyword 'temprature'.*temperature, top_k, top_p, guidance_scale"):
        prior.generate(2, temprature=0.5)
    with pytest.raises(InvalidRequestError, match="unknown keyword 'topk'"):
        prior.complete(torch.zeros(1, 2, 8, dtype=torch.long), topk=5)
    with pytest.raises(InvalidRequestError, match="top_p"):
        prior.complete(torch.zeros(1, 2, 8, dtype=torch.long), top_p=2.0)


def test_sampling_defaults_live_in_generation_config_and_survive_save(prior, tmp_path):
    assert prior.sampling_defaults == SamplingOptions()  # a new prior samples the plain distribution
    prior.set_sampling_defaults(temperature=0.7, top_k=5)
    prior.save_pretrained(tmp_path / "prior")
    loaded = ImagePrior.from_pretrained(tmp_path / "prior", tokenizer=prior.tokenizer)
    assert loaded.sampling_defaults == SamplingOptions(temperature=0.7, top_k=5)
    saved = json.loads((tmp_path / "prior" / "generation_config.json").read_text())
    assert (saved["temperature"], saved["top_k"]) == (0.7, 5)  # what plain model.generate reads too
    assert "Sampling defaults (in `generation_config.json`" in (tmp_path / "prior" / "README.md").read_text()
    assert "temperature 0.7, top-k 5, top-p off." in (tmp_path / "prior" / "README.md").read_text()
    by_default = loaded.generate(3, seed=1, output_type="ids")
    assert torch.equal(by_default, loaded.generate(3, seed=1, temperature=0.7, top_k=5, output_type="ids"))
    assert not torch.equal(by_default, loaded.generate(3, seed=1, temperature=1.0, top_k=None, output_type="ids"))
    rows = torch.zeros(2, 4, 8, dtype=torch.long)
    assert torch.equal(loaded.complete(rows, seed=2, output_type="ids"),
                       loaded.complete(rows, seed=2, temperature=0.7, top_k=5, output_type="ids"))


def test_bad_sampling_defaults_are_refused(prior, tmp_path):
    with pytest.raises(InvalidRequestError, match="guidance_scale is not a default"):
        prior.set_sampling_defaults(guidance_scale=2.0)
    with pytest.raises(InvalidRequestError, match="unknown keyword 'temprature'"):
        prior.set_sampling_defaults(temprature=0.5)
    with pytest.raises(InvalidRequestError, match="temperature must be > 0"):
        prior.set_sampling_defaults(temperature=0.0)
    assert prior.sampling_defaults == SamplingOptions()  # nothing half-changed
    prior.save_pretrained(tmp_path / "prior")
    path = tmp_path / "prior" / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "top_p": 1.5}))
    with pytest.raises(CheckpointError, match=r"generation_config\.json: bad sampling default: top_p must be in"):
        ImagePrior.from_pretrained(tmp_path / "prior")


def test_guidance_on_an_unconditional_prior_is_refused(unconditional, monkeypatch):
    assert unconditional.generate(2, seed=0, output_type="ids").shape == (2, 8, 8)
    monkeypatch.setattr(unconditional.model, "generate", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(InvalidRequestError, match="unconditional"):
        unconditional.generate(2, guidance_scale=3.0)
    with pytest.raises(InvalidRequestError, match="unconditional"):
        unconditional.generate(2, class_labels=0)


def test_bad_prefixes_are_refused(prior, monkeypatch):
    monkeypatch.setattr(prior.model, "generate", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(InvalidIdsError, match="longer than the 8x8 grid"):
        prior.complete(torch.zeros(65, dtype=torch.long))
    with pytest.raises(InvalidIdsError, match="more than the grid's 8"):
        prior.complete(torch.zeros(1, 9, 8, dtype=torch.long))
    with pytest.raises(InvalidIdsError, match="leaves nothing"):
        prior.complete(torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(InvalidIdsError, match="whole rows"):
        prior.complete(torch.zeros(12, dtype=torch.long))
    with pytest.raises(InvalidIdsError, match="0..63"):
        prior.complete(torch.full((2, 8), 64))
    with pytest.raises(InvalidImageError, match="too small"):
        prior.complete(torch.zeros(2, 8))  # a float tensor is an image (0..1), as everywhere in the library
    with pytest.raises(InvalidIdsError, match="integers"):
        prior.complete(torch.zeros(2, 8, dtype=torch.bool))


def test_a_tokenizer_with_another_layout_is_refused(prior, tmp_path):
    torch.manual_seed(1)
    other = ImageTokenizer(tiny_config())  # same shapes, different codebook
    with pytest.raises(CheckpointError, match="codebook vectors differ"):
        prior.tokenizer = other
    bigger = ImageTokenizer(tiny_config(codebook_size=128))
    with pytest.raises(CheckpointError, match="codebook size 128 != 64"):
        ImagePrior(prior.model, prior.layout, tokenizer=bigger)


def test_cli_generate_and_complete(prior, unconditional, tmp_path, capsys):
    from PIL import Image

    from image_tokenizer.cli import main

    prior.save_pretrained(tmp_path / "prior")
    unconditional.save_pretrained(tmp_path / "uncond")
    out = tmp_path / "grid.png"
    assert main(["generate", "--model", str(tmp_path / "prior"), "--num", "4", "--class", "1", "--guidance", "2",
                 "--output", str(out), "--ids-output", str(tmp_path / "ids.json"), "--no-progress"]) == 0
    assert Image.open(out).size[0] > 16 and json.loads((tmp_path / "ids.json").read_text())
    assert "class 1 (b)" in capsys.readouterr().out
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(image)
    assert main(["complete", str(image), "--model", str(tmp_path / "prior"), "--samples", "2",
                 "--output", str(tmp_path / "done.png"), "--no-progress"]) == 0
    assert (tmp_path / "done.png").is_file()
    for argv, message in [
        (["--model", str(tmp_path / "prior"), "--class", "9"], "class label 9 out of range"),
        (["--model", str(tmp_path / "uncond"), "--guidance", "3"], "unconditional"),
        (["--model", str(tmp_path / "prior"), "--top-p", "0"], "top_p"),
        (["--model", str(tmp_path / "prior"), "--temperature", "0"], "temperature"),
    ]:
        assert main(["generate", *argv, "--output", str(tmp_path / "x.png")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_bundled_prior_matches_the_bundled_tokenizer():
    prior = ImagePrior.from_pretrained("shapes-64-prior")
    assert prior.layout.tokenizer == "shapes-64" and prior.layout.class_names == ["1", "2", "3", "4", "5"]
    ids = prior.generate(2, seed=0, class_labels=[0, 4], top_k=50, output_type="ids")
    assert ids.shape == (2, 16, 16) and int(ids.max()) < 4096
    assert prior.tokenizer.decode(ids[0]).size == (64, 64)  # the layout's codebook hash matches shapes-64
    assert prior.card_info["metrics"]["heldout_bits_per_token"] < 12  # log2(4096): better than uniform


def test_the_old_pilot_prior_is_refused_by_the_new_tokenizer(tmp_path):
    """The prior bundled before shapes-64 was retrained named 'shapes-64' but was trained on the pilot's ids
    (now shapes-64-small); loading it against today's shapes-64 must fail clearly, not sample garbage."""
    pilot = ImageTokenizer.from_pretrained("shapes-64-small")
    layout = TokenLayout.for_tokenizer(pilot, "shapes-64", ["1", "2", "3", "4", "5"], "num_shapes")
    assert layout.tokenizer_codebook_sha256.startswith("bee762bc59ab")  # the old bundled prior's recorded hash
    ImagePrior.from_layout(layout, tokenizer=pilot, **SIZES).save_pretrained(tmp_path / "old-prior")
    with pytest.raises(CheckpointError, match=r"codebook size 4096 != 1024.*trained on tokenizer 'shapes-64'"):
        _ = ImagePrior.from_pretrained(tmp_path / "old-prior").tokenizer  # loaded by the layout's name
    with pytest.raises(CheckpointError, match="codebook size 4096 != 1024"):
        ImagePrior.from_pretrained(tmp_path / "old-prior", tokenizer=ImageTokenizer.from_pretrained("shapes-64"))


def test_push_to_hub_uploads_one_commit_that_pulls_back_offline(prior, tok, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from huggingface_hub import HfApi

    from tests.test_hub import COMMIT, fill_cache

    commits = []

    def fake_create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        files = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        commits.append({"repo_id": repo_id, "files": files})
        return SimpleNamespace(oid=COMMIT)

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(HfApi, "create_commit", fake_create_commit)
    prior.push_to_hub("me/my-prior")
    (commit,) = commits
    assert sorted(commit["files"]) == sorted(["README.md", "config.json", "generation_config.json",
                                              "model.safetensors", "prior_layout.json"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fill_cache(tmp_path / "cache", "me/my-prior", commit["files"])
    pulled = ImagePrior.from_pretrained("me/my-prior", cache_dir=tmp_path / "cache", tokenizer=tok)
    assert torch.equal(pulled.generate(2, seed=0, output_type="ids"), prior.generate(2, seed=0, output_type="ids"))


def test_complete_takes_images_as_images_and_integer_arrays_as_ids(prior):
    h, w = prior.layout.grid_size
    side = h * prior.tokenizer.config.downsample_factor
    rgb = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    grey = rgb[:, :, 0]
    for image in (rgb, grey, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255):
        done = prior.complete(image, seed=0, output_type="ids")
        assert done.shape == (1, h, w)  # one completion of one image, not one per pixel row
        assert torch.equal(done[0, : h // 2], prior.tokenizer.encode(image)[: h // 2])
    ids = prior.tokenizer.encode(rgb)
    assert prior.complete(ids[None, :2].numpy().astype(np.int64), seed=0, output_type="ids").shape == (1, h, w)


def test_bad_class_labels_are_bad_ids_like_bad_prefix_ids(prior):
    # One kind of mistake, one class: ids out of range, whether image ids of a prefix or class labels.
    with pytest.raises(InvalidIdsError, match="class label 7 out of range"):
        prior.generate(2, class_labels=[7, 0], output_type="ids")
    with pytest.raises(InvalidIdsError, match="must be integers"):
        prior.generate(1, class_labels=[0.5], output_type="ids")
    with pytest.raises(InvalidIdsError, match="prefix ids must lie in"):
        prior.complete(torch.full((1, 8), 10**6), output_type="ids")
