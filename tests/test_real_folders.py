"""Folders of real photos through pretokenize: imagefolder's splits and class names, every per-image failure
skipped and counted under skip_bad (or stopping the run, naming the row and the file)."""


import datasets
import numpy as np
import pytest
from PIL import Image

from image_tokenizer.cli import main
from image_tokenizer.pretokenize import PretokenizeError, pretokenize


def photo(path, size=(20, 20), seed=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_pretokenize_reads_only_the_split_asked_with_leaf_class_names(tmp_path, model_dir):
    for seed, (split, label) in enumerate([(s, c) for s in ("train", "test") for c in ("a", "b")]):
        for i in range(3):
            photo(tmp_path / "photos" / split / label / f"{i}.png", seed=seed * 3 + i)
    out = tmp_path / "tokens"
    argv = ["pretokenize", "--model", str(model_dir), "--data", str(tmp_path / "photos"), "--split", "test",
            "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    tokens = datasets.load_from_disk(str(out))
    assert len(tokens) == 6
    assert tokens.features["label"].names == ["a", "b"]
    assert tokens["file_name"] == [f"test/{c}/{i}.png" for c in "ab" for i in range(3)]


@pytest.fixture
def awkward_folder(tmp_path, monkeypatch):
    """Good photos around a tiny one, a file that is not an image, and one over the pixel budget."""
    from image_tokenizer import image_processing

    folder = tmp_path / "awkward"
    for i in range(3):
        photo(folder / f"good{i}.png", seed=i)
    photo(folder / "huge.png", size=(40, 40))
    photo(folder / "tiny.png", size=(5, 3))
    (folder / "notes.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setattr(image_processing, "MAX_IMAGE_PIXELS", 1000)  # 40x40 is over it, 20x20 under
    return folder


@pytest.mark.parametrize("num_workers", [None, 0])
def test_skip_bad_skips_every_per_image_failure_and_counts_it(tokenizer, awkward_folder, num_workers):
    tokens, report = pretokenize(str(awkward_folder), tokenizer, skip_bad=True, return_report=True,
                                 num_workers=num_workers, load_from_cache_file=False)
    assert tokens["file_name"] == ["good0.png", "good1.png", "good2.png"]
    assert report["skipped"] == 3 and report["rows_in"] == 6
    messages = " | ".join(report["errors"])
    assert "row 3 (" in messages and "huge.png" in messages and "over the pixel budget" in messages
    assert "notes.jpg" in messages and "cannot decode" in messages
    assert "row 5 (" in messages and "tiny.png" in messages and "5x3, too small" in messages


@pytest.mark.parametrize("num_proc", [None, 2])
def test_without_skip_bad_the_run_stops_naming_the_row_and_file(tokenizer, tmp_path, num_proc):
    for i in range(4):
        photo(tmp_path / "folder" / f"{i}.png", seed=i)
    photo(tmp_path / "folder" / "4.png", size=(5, 3))
    with pytest.raises(PretokenizeError, match=r"row 4 \(.*4\.png\): image 4 is 5x3, too small") as caught:
        pretokenize(str(tmp_path / "folder"), tokenizer, batch_size=2, num_proc=num_proc, load_from_cache_file=False)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no worker traceback attached


def test_cli_skip_bad_counts_every_skipped_image(tmp_path, model_dir, awkward_folder, capsys):
    out = tmp_path / "tokens"
    argv = ["pretokenize", "--model", str(model_dir), "--data", str(awkward_folder), "--output", str(out), "--no-progress"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "row 3 (" in error and "huge.png" in error and error.count("\n") == 1
    assert not out.exists()
    assert main([*argv, "--skip-bad"]) == 0
    assert "skipped 3 " in capsys.readouterr().out
    assert len(datasets.load_from_disk(str(out))) == 3
