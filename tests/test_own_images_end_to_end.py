"""Your own images, end to end (issue 38): a folder shaped like real ones (split folders, class folders, RGBA line
art, an oversized header, a truncated file, a CMYK JPEG, an EXIF-rotated JPEG) through train_tokenizer, evaluate,
pretokenize (every split), train_prior and generate with a class name; every row, split, label and score checked."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from image_tokenizer import ImagePrior, ImageTokenizer
from image_tokenizer.cli import main

CLASSES = ("animals", "people")
BAD = {"train/animals/huge.png": "declares 10527x16000", "train/people/cut.png": "truncated",
       "test/people/huge.png": "declares 10527x16000", "test/animals/cut.png": "truncated"}


def line_art(path: Path, seed: int) -> None:
    """Black strokes on transparent pixels, as clip art comes."""
    rng = np.random.default_rng(seed)
    rgba = np.zeros((24, 24, 4), dtype=np.uint8)
    for _ in range(4):
        row, col = rng.integers(2, 22, 2)
        rgba[row, max(col - 6, 0) : col + 6, 3] = 255  # a black horizontal stroke
        rgba[max(row - 6, 0) : row + 6, col, 3] = 255
    Image.fromarray(rgba, "RGBA").save(path)


def oversized_header(path: Path) -> None:
    """A PNG of a few bytes whose header declares 10527 x 16000 pixels (as 2 of 300 real clip-art files do)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">II", 10527, 16000) + b"\x08\x02\x00\x00\x00"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def photo_jpeg(path: Path, seed: int, mode: str = "RGB", orientation: int | None = None) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, format="JPEG", exif=exif, quality=90)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """train/ and test/, two class folders each: 4 good files per class and split, and the bad ones of BAD."""
    root = tmp_path_factory.mktemp("clipart") / "clipart"
    seed = 0
    for split in ("train", "test"):
        for label in CLASSES:
            (root / split / label).mkdir(parents=True)
            line_art(root / split / label / "art0.png", seed)
            line_art(root / split / label / "art1.png", seed + 1)
            photo_jpeg(root / split / label / "cmyk.jpg", seed, mode="CMYK")
            photo_jpeg(root / split / label / "rotated.jpg", seed, orientation=6)
            seed += 2
    for name, kind in BAD.items():
        if kind.startswith("declares"):
            oversized_header(root / name)
        else:
            line_art(root / name, 99)
            (root / name).write_bytes((root / name).read_bytes()[:60])
    return root


GOOD_PER_SPLIT = 8  # 4 per class


def test_own_images_end_to_end(folder, tmp_path, capsys):
    from training.train_prior import PriorTrainConfig
    from training.train_prior import train as train_prior
    from training.train_tokenizer import TrainConfig
    from training.train_tokenizer import train as train_tokenizer

    # 1. A tokenizer trained on the train split, scored at the end on the test split; bad files skipped and named.
    tiny_model = {"resolution": 16, "ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 8, "norm_groups": 4,
                  "use_mid_attention": False, "quantizer": {"codebook_size": 16, "codebook_dim": 4}}
    summary = train_tokenizer(TrainConfig(
        output_dir=str(tmp_path / "tok-run"), data=str(folder), eval_data=str(folder), model=tiny_model,
        loss={"disc_start": 100, "gan_start": 100}, steps=4, batch_size=4, warmup_steps=1, disc_ch=8,
        eval_images=100, log_every=2, image_every=100, checkpoint_every=100, progress=False, kmeans_batches=1,
        kmeans_iters=1,
    ))
    final = Path(summary["final_dir"])
    assert (final / "config.json").is_file()
    tokenizer = ImageTokenizer.from_pretrained(final)
    assert tokenizer.config.preprocessing.alpha_background == (255, 255, 255)  # new tokenizers: line art on white
    printed = capsys.readouterr()
    log = printed.out + printed.err
    assert "skipped 2 unreadable training image(s)" in log  # each bad training file once, named
    assert "train/animals/huge.png" in log and "train/people/cut.png" in log
    assert "test/animals/cut.png" in log and "test/people/huge.png" in log  # held-out ones: skipped, named, not fatal
    assert summary["metrics"]["num_images"] == GOOD_PER_SPLIT and summary["metrics"]["skipped_images"] == 2

    # 2. evaluate: the test split (the default), the bad test files named, nothing of train/ scored.
    capsys.readouterr()
    assert main(["evaluate", "--model", str(final), "--data", str(folder), "--num", "0", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "test" and report["num_images"] == GOOD_PER_SPLIT
    assert report["background"] == "white" and report["blank_images"] == 0
    assert sorted(Path(s.split(":")[0]).name for s in report["skipped"]) == ["cut.png", "huge.png"]
    assert np.isfinite(report["psnr_db"]) and 0 < report["ssim"] <= 1

    # 3. pretokenize every split into one output; load_dataset gives each split, its labels and its files.
    out = tmp_path / "tokens"
    argv = ["pretokenize", "--model", str(final), "--data", str(folder), "--output", str(out), "--format", "parquet",
            "--skip-bad", "--no-progress"]
    assert main(argv) == 0
    tokens = datasets.load_dataset(str(out))
    assert sorted(tokens) == ["test", "train"]
    for split in ("train", "test"):
        rows = tokens[split]
        assert len(rows) == GOOD_PER_SPLIT and rows.features["label"].names == list(CLASSES)
        assert all(name.startswith(f"{split}/") for name in rows["file_name"])
        names = {f"{split}/{CLASSES[label]}/" + Path(name).name for name, label in zip(rows["file_name"], rows["label"])}
        assert names == {f"{split}/{c}/{f}" for c in CLASSES for f in ("art0.png", "art1.png", "cmyk.jpg", "rotated.jpg")}
        assert all(len(ids) == 8 * 8 for ids in rows["input_ids"])
    skipped = json.loads((out / "skipped_rows.json").read_text())
    assert sorted(json.dumps(skipped).count(name) > 0 for name in BAD) == [True] * len(BAD)
    card = (out / "README.md").read_text()
    assert "split: train" in card and "split: test" in card

    # 4. a class-conditional prior on the train split (the test split held out), then an image of a named class.
    result = train_prior(PriorTrainConfig(
        output_dir=str(tmp_path / "prior-run"), tokenizer=str(final), data=str(out), label_column="label",
        hidden_size=16, num_hidden_layers=1, num_attention_heads=1, max_steps=2, batch_size=4, warmup_steps=0,
        lr_scheduler="constant", eval_steps=2, save_steps=2, logging_steps=1, sample_images=0, progress=False,
    ))
    prior = ImagePrior.from_pretrained(result["final_dir"], tokenizer=tokenizer)
    assert prior.layout.class_names == list(CLASSES) and np.isfinite(result["bits_per_token"])
    image = tmp_path / "people.png"
    assert main(["generate", "--model", str(result["final_dir"]), "--tokenizer", str(final), "--class", "people",
                 "--num", "2", "--output", str(image), "--no-progress"]) == 0
    assert Image.open(image).size[0] > 0


def test_the_own_images_example_runs_on_a_folder_with_bad_files(folder, tmp_path, monkeypatch):
    """examples/own_images.py: with --skip-bad the two bad training files are skipped and counted and the run
    finishes; without it, one line naming the file and the flag, not a traceback (the script's main, run in this
    process: `sys.exit(message)` is what makes Python print that one line and exit 1)."""
    import sys

    import torch

    from tests.helpers import tiny_config
    from tests.test_examples import load_example

    torch.manual_seed(0)
    ImageTokenizer(tiny_config()).save_pretrained(tmp_path / "tok")
    example = load_example()
    summary = example.run(str(folder), str(tmp_path / "tok"), str(tmp_path / "out"), steps=2, hidden_size=32,
                          layers=1, eval_fraction=0.25, num_images=2, progress=False, skip_bad=True)
    assert summary["skipped"] == 2 and summary["conditional"] and Path(summary["generated"]).is_file()
    monkeypatch.setattr(sys, "argv", ["own_images.py", "--images", str(folder), "--tokenizer", str(tmp_path / "tok"),
                                      "--output", str(tmp_path / "out2"), "--steps", "1"])
    with pytest.raises(SystemExit) as stopped:
        example.main()
    message = stopped.value.code
    assert isinstance(message, str) and "\n" not in message  # printed as one line, exit status 1
    assert message.startswith("own_images: error: ") and "--skip-bad" in message
