"""Issue 37, rows 1 and 7: nothing outside the source folder is read, and nothing of the user's is overwritten.

Each attack is a tiny source that would convert without the check: the file outside is a valid part of the model,
so the only thing standing between it and the converted output is the refusal. A Hugging Face cache is faked as
huggingface_hub lays it out, snapshot files being symlinks into the repo's blobs/."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import image_tokenizer
from image_tokenizer import CheckpointError, ConversionError, ImagePrior, ImageTokenizer, TokenLayout
from image_tokenizer.cli import main
from tests.helpers import tiny_config
from tests.hostile import PEAK_LIMIT
from tests.test_convert import diffusers_reference, janus_reference, janus_to_llamagen, write_taming_log
from tests.test_convert_cosmos import GOLDEN as COSMOS_GOLDEN
from tests.test_convert_seed_voken import write_ibq_release

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OUR_FILES = ["config.json", "model.safetensors", "codebook.safetensors", "vocab.json", "README.md"]


# ----- builders -----
def contents(folder: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under `folder`, links not followed: a file's bytes, a link's target."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            elif path.is_file():
                found[key] = ("file", path.read_bytes())
    return found


def janus_folder(folder: Path) -> Path:
    janus_reference().save_pretrained(folder)
    return folder


def shard(folder: Path, second: Path, name: str) -> None:
    """Split a transformers folder's model.safetensors in two: the encoder beside the index, the rest in `second`,
    which the index calls `name`. With `second` inside the folder, this is an ordinary sharded checkpoint."""
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    first = {k: v for k, v in state.items() if k.startswith("encoder.")}
    save_file(first, str(folder / "model-00001-of-00002.safetensors"))
    second.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v for k, v in state.items() if k not in first}, str(second))
    weight_map = {k: "model-00001-of-00002.safetensors" if k in first else name for k in state}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def fill_linked_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """A Hub repo in the cache as huggingface_hub writes it: blobs/<sha256>, snapshots/<commit>/<name> a relative
    symlink to its blob, refs/main. Returns the snapshot folder."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (storage / "blobs").mkdir()
    for file in sorted(folder.iterdir()):
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(COMMIT)
    return snapshot


def link_out(folder: Path, name: str, outside: Path) -> None:
    """Move folder/name to `outside` and leave a symlink to it in its place."""
    outside.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(folder / name, outside)
    (folder / name).symlink_to(outside)


# ----- 1. nothing outside the folder -----
@pytest.mark.parametrize("entry", ["absolute", "dotdot"])
def test_a_weight_map_entry_outside_a_local_folder_is_refused_naming_index_and_entry(tmp_path, hostile, entry):
    src = janus_folder(tmp_path / "src")
    outside = tmp_path / "private" / "weights.safetensors"
    shard(src, outside, str(outside) if entry == "absolute" else "../private/weights.safetensors")
    before = contents(tmp_path / "private")
    outcome = hostile.call("image_tokenizer.converters:convert", str(src))
    assert outcome.refused("ConversionError"), outcome.traceback
    assert "model.safetensors.index.json: weight_map entry" in outcome.message and "lies outside" in outcome.message
    assert "\n" not in outcome.message and len(outcome.message) < 1000
    assert outcome.peak_bytes < PEAK_LIMIT
    assert contents(tmp_path / "private") == before
    # the same folder with the second shard moved inside converts: the refusal is about where, not what
    shutil.move(outside, src / "model-00002-of-00002.safetensors")
    index = json.loads((src / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: v if v.startswith("model-") else "model-00002-of-00002.safetensors"
                           for k, v in index["weight_map"].items()}
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    assert image_tokenizer.convert(src).vocab_size == 64


def test_a_cached_hub_repo_whose_files_link_into_its_blobs_converts(tmp_path):
    src = janus_folder(tmp_path / "src")
    shard(src, src / "model-00002-of-00002.safetensors", "model-00002-of-00002.safetensors")
    fill_linked_cache(tmp_path / "cache", "someone/janus", src)
    tok = image_tokenizer.convert("someone/janus", cache_dir=tmp_path / "cache")
    local = image_tokenizer.convert(src)
    assert torch.equal(tok.model.quantizer.codebook, local.model.quantizer.codebook)


@pytest.mark.parametrize("entry", ["dotdot", "absolute", "another repo's blob"])
def test_a_weight_map_entry_outside_a_cached_hub_snapshot_is_refused(tmp_path, entry):
    src = janus_folder(tmp_path / "src")
    shard(src, src / "model-00002-of-00002.safetensors", "model-00002-of-00002.safetensors")
    other = janus_folder(tmp_path / "other")
    other_snapshot = fill_linked_cache(tmp_path / "cache", "someone/private", other)
    snapshot = fill_linked_cache(tmp_path / "cache", "someone/janus", src)
    second = snapshot / "model-00002-of-00002.safetensors"
    if entry == "dotdot":  # snapshots/x.safetensors: inside the repo's cache folder, outside its snapshot
        name = "../model-00002-of-00002.safetensors"
        shutil.copy(second, snapshot.parent / "model-00002-of-00002.safetensors")
    elif entry == "absolute":
        name = str(tmp_path / "src" / "model-00002-of-00002.safetensors")
    else:  # a snapshot file linking to a blob of another cached repo
        name = "model-00002-of-00002.safetensors"
        second.unlink()
        blob = (other_snapshot / "model.safetensors").resolve()
        second.symlink_to(os.path.relpath(blob, second.parent))  # ../../../models--someone--private/blobs/<sha>
        assert second.is_file()
    index = snapshot / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {k: name if v.startswith("model-00002") else v for k, v in data["weight_map"].items()}
    index.unlink()
    index.write_text(json.dumps(data))
    with pytest.raises(ConversionError, match="lies outside") as refused:
        image_tokenizer.convert("someone/janus", cache_dir=tmp_path / "cache")
    assert "\n" not in str(refused.value)
    if entry != "another repo's blob":
        assert "weight_map entry" in str(refused.value)


def _janus(folder: Path) -> None:
    janus_folder(folder)


def _diffusers(folder: Path) -> None:
    diffusers_reference().save_pretrained(folder)


def _taming(folder: Path) -> None:
    write_taming_log(folder, diffusers_reference())


def _ibq(folder: Path) -> None:
    write_ibq_release(folder)


def _cosmos(folder: Path) -> None:
    folder.mkdir()
    for name in ("encoder.jit", "decoder.jit"):
        shutil.copy(COSMOS_GOLDEN / name, folder / name)


def _llamagen(folder: Path) -> None:
    folder.mkdir()
    torch.save({"ema": janus_to_llamagen(janus_reference().state_dict(), 2)}, folder / "vq.pt")
    (folder / "config.json").write_text(json.dumps({"codebook_size": 64, "codebook_embed_dim": 8}))


@pytest.mark.parametrize(("build", "name"), [
    (_janus, "config.json"), (_janus, "model.safetensors"), (_diffusers, "diffusion_pytorch_model.safetensors"),
    (_diffusers, "config.json"), (_taming, "checkpoints/last.ckpt"),
    (_taming, "configs/2020-11-09T13-31-51-project.yaml"), (_ibq, "ibq_16384.ckpt"),
    (_ibq, "imagenet_ibqgan_16384.yaml"), (_cosmos, "decoder.jit"), (_llamagen, "config.json"),
])
def test_a_symlink_out_of_the_source_folder_is_refused(tmp_path, build, name):
    build(tmp_path / "src")
    link_out(tmp_path / "src", name, tmp_path / "private" / Path(name).name)
    with pytest.raises(ConversionError, match="lies outside") as refused:
        image_tokenizer.convert(tmp_path / "src", resolution=64 if build is _cosmos else None)
    assert Path(name).name in str(refused.value) and "\n" not in str(refused.value)


def test_a_source_readme_linked_outside_is_refused(tmp_path):
    _janus(tmp_path / "src")
    (tmp_path / "private.md").write_text("---\nlicense: secret\n---\n")
    (tmp_path / "src" / "README.md").symlink_to(tmp_path / "private.md")
    with pytest.raises(ConversionError, match=r"README\.md .*lies outside"):
        image_tokenizer.convert(tmp_path / "src")


def test_a_symlink_that_stays_inside_the_folder_is_read(tmp_path):
    src = janus_folder(tmp_path / "src")
    (src / "weights").mkdir()
    shutil.move(src / "model.safetensors", src / "weights" / "model.safetensors")
    (src / "model.safetensors").symlink_to(Path("weights") / "model.safetensors")
    assert image_tokenizer.convert(src).vocab_size == 64


@pytest.mark.parametrize("name", ["model.safetensors", "vocab.json", "README.md"])
def test_a_saved_folder_with_a_file_linked_outside_is_refused(tmp_path, name):
    ImageTokenizer(tiny_config()).save_pretrained(tmp_path / "tok")
    link_out(tmp_path / "tok", name, tmp_path / "private" / name)
    with pytest.raises(CheckpointError, match=f"{name} .*lies outside"):
        ImageTokenizer.from_pretrained(tmp_path / "tok")


# ----- 7. never clobber -----
def test_convert_refuses_an_existing_folder_then_overwrite_replaces_only_its_own_files(tmp_path, capsys):
    src = janus_folder(tmp_path / "src")
    out = tmp_path / "out"
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "notes.txt").write_text("mine")
    (out / "config.json").write_text('{"mine": true}')
    (tmp_path / "shared-card.md").write_text("my card, kept elsewhere")
    (out / "README.md").symlink_to(tmp_path / "shared-card.md")
    before, card_before = contents(out), (tmp_path / "shared-card.md").read_bytes()
    capsys.readouterr()
    assert main(["convert", str(src), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds files; pass --overwrite" in err and err.count("\n") == 1
    assert contents(out) == before
    assert main(["convert", str(src), "--output", str(out), "--overwrite"]) == 0
    after = contents(out)
    assert {k: v for k, v in after.items() if k in (".git", ".git/HEAD", "notes.txt")} == \
        {k: v for k, v in before.items() if k in (".git", ".git/HEAD", "notes.txt")}
    assert all(after[name][0] == "file" for name in OUR_FILES)  # the README link was replaced, not written through
    assert (tmp_path / "shared-card.md").read_bytes() == card_before
    assert ImageTokenizer.from_pretrained(out).vocab_size == 64
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary folder left beside it


@pytest.mark.parametrize("where", ["itself", "inside", "its parent", "a link to it"])
def test_convert_never_writes_into_or_over_its_source_even_with_overwrite(tmp_path, capsys, where):
    src = janus_folder(tmp_path / "src")
    before = contents(tmp_path)
    out = {"itself": src, "inside": src / "converted", "its parent": tmp_path, "a link to it": tmp_path / "link"}[where]
    if where == "a link to it":
        out.symlink_to(src)
        before = contents(tmp_path)
    capsys.readouterr()
    assert main(["convert", str(src), "--output", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "overlaps the source" in err and err.count("\n") == 1
    assert contents(tmp_path) == before
    assert image_tokenizer.convert(src).vocab_size == 64  # still convertible


def test_convert_over_its_source_is_refused_in_one_line_under_the_memory_bound(tmp_path, hostile):
    src = janus_folder(tmp_path / "src")
    before = contents(src)
    outcome = hostile.call("image_tokenizer.cli:main", ["convert", str(src), "--output", str(src), "--overwrite"])
    assert outcome.result == 2 and outcome.stderr.count("\n") == 1 and "overlaps the source" in outcome.stderr
    assert outcome.peak_bytes < PEAK_LIMIT
    assert contents(src) == before


def test_convert_into_a_cached_hub_repo_is_refused(tmp_path, capsys, monkeypatch):
    src = janus_folder(tmp_path / "src")
    snapshot = fill_linked_cache(tmp_path / "cache", "someone/janus", src)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    before = contents(tmp_path / "cache")
    capsys.readouterr()
    for out in (snapshot, snapshot.parent.parent / "blobs", snapshot.parent.parent / "converted"):
        assert main(["convert", "someone/janus", "--output", str(out), "--overwrite"]) == 2
        assert "overlaps the source" in capsys.readouterr().err
    assert contents(tmp_path / "cache") == before


def test_a_failed_conversion_leaves_no_output_and_no_temporary_folder(tmp_path, capsys):
    src = janus_folder(tmp_path / "src")
    (src / "model.safetensors").write_bytes(b"not safetensors")
    assert main(["convert", str(src), "--output", str(tmp_path / "out")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def prior_for(tok: ImageTokenizer, name: str) -> ImagePrior:
    layout = TokenLayout.for_tokenizer(tok, name)
    return ImagePrior.from_layout(layout, tokenizer=tok, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)


@pytest.mark.parametrize("kind", ["tokenizer", "prior"])
def test_save_pretrained_replaces_a_symlink_never_its_target_and_keeps_other_files(tmp_path, kind):
    torch.manual_seed(0)
    tok = ImageTokenizer(tiny_config())
    model = tok if kind == "tokenizer" else prior_for(tok, "tok")
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "user").mkdir()
    for name in ("README.md", "config.json"):
        (tmp_path / "user" / name).write_text(f"the user's {name}")
        (folder / name).symlink_to(tmp_path / "user" / name)
    (folder / "notes.txt").write_text("mine")
    user_before = contents(tmp_path / "user")
    written = model.save_pretrained(folder)
    assert contents(tmp_path / "user") == user_before
    assert (folder / "notes.txt").read_text() == "mine"
    assert all(p.is_file() and not p.is_symlink() for p in written)
    loaded = type(model).from_pretrained(folder, **({} if kind == "tokenizer" else {"tokenizer": tok}))
    assert loaded is not None


def test_save_pretrained_refuses_a_folder_that_holds_the_other_kind_of_model(tmp_path):
    torch.manual_seed(0)
    tok = ImageTokenizer(tiny_config())
    tok.save_pretrained(tmp_path / "tok")
    prior = prior_for(tok, str(tmp_path / "tok"))
    prior.save_pretrained(tmp_path / "prior")
    tok_before, prior_before = contents(tmp_path / "tok"), contents(tmp_path / "prior")
    with pytest.raises(CheckpointError, match="holds another kind of saved model"):
        prior.save_pretrained(tmp_path / "tok")
    with pytest.raises(CheckpointError, match="holds another kind of saved model"):
        tok.save_pretrained(tmp_path / "prior")
    assert contents(tmp_path / "tok") == tok_before and contents(tmp_path / "prior") == prior_before


def test_a_prior_from_the_hub_may_not_name_a_local_folder_as_its_tokenizer(tmp_path):
    """A downloaded prior's layout names a tokenizer path on this machine: refused before anything there is read;
    the same prior in one's own folder, or with tokenizer= given, still works."""
    from image_tokenizer import CheckpointError, ImageTokenizer
    from image_tokenizer.prior import ImagePrior, TokenLayout
    from tests.helpers import tiny_config
    from tests.test_hub import fill_cache

    torch.manual_seed(0)
    tok = ImageTokenizer(tiny_config())
    tok.save_pretrained(tmp_path / "private-tok")
    layout = TokenLayout.for_tokenizer(tok, str(tmp_path / "private-tok"))
    ImagePrior.from_layout(layout, tokenizer=tok, hidden_size=16, num_hidden_layers=1, num_attention_heads=1).save_pretrained(tmp_path / "prior")
    files = {p.name: p.read_bytes() for p in (tmp_path / "prior").iterdir()}
    fill_cache(tmp_path / "cache", "someone/prior", files)
    pulled = ImagePrior.from_pretrained("someone/prior", cache_dir=tmp_path / "cache")
    with pytest.raises(CheckpointError, match="names the local path .* as its tokenizer"):
        pulled.generate(1, seed=0)
    assert ImagePrior.from_pretrained("someone/prior", cache_dir=tmp_path / "cache", tokenizer=tok).generate(1, seed=0)
    assert ImagePrior.from_pretrained(tmp_path / "prior").tokenizer.vocab_size == tok.vocab_size
