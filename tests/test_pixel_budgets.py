"""Pixel budgets on every command (issue 38): `--max-pixels` on pretokenize (map and streaming), evaluate and
reconstruct as on encode, and the over-budget error names the option of whoever raised it (`--max-pixels` on the
command line, `max_pixels=` from Python). `evaluate` names each image it skips, and skips the images `encode`
refuses (too small for the token grid), unless --strict-data."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from PIL import Image

from image_tokenizer import ImageLoadError, InvalidImageError
from image_tokenizer.cli import main
from image_tokenizer.image_processing import check_image_size, load_image

BUDGET = "1000"  # 20x20 = 400 pixels fit, 40x40 = 1,600 do not


def photo(path, size=(20, 20), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.fixture
def folder(tmp_path):
    """Three 20x20 photos and one 40x40: within PIL's default budget, the last over a budget of 1,000 pixels."""
    for i in range(3):
        photo(tmp_path / "photos" / f"{i}.png", seed=i)
    photo(tmp_path / "photos" / "big.png", size=(40, 40))
    return tmp_path / "photos"


@pytest.mark.parametrize("mode", [[], ["--streaming"], ["--num-workers", "0"]])
def test_pretokenize_takes_max_pixels(tmp_path, model_dir, folder, capsys, mode):
    argv = ["pretokenize", "--model", str(model_dir), "--data", str(folder), "--format", "parquet", "--no-progress", *mode]
    assert main([*argv, "--output", str(tmp_path / "all")]) == 0
    assert len(datasets.load_dataset(str(tmp_path / "all"), split="train")) == 4
    assert main([*argv, "--output", str(tmp_path / "bounded"), "--max-pixels", BUDGET]) == 2
    error = capsys.readouterr().err
    assert "big.png" in error and "over the pixel budget of 1,000" in error and "--max-pixels" in error
    assert "max_pixels=" not in error
    assert main([*argv, "--output", str(tmp_path / "skipped"), "--max-pixels", BUDGET, "--skip-bad"]) == 0
    assert len(datasets.load_dataset(str(tmp_path / "skipped"), split="train")) == 3


def test_evaluate_takes_max_pixels_and_names_what_it_skips(model_dir, folder, capsys):
    argv = ["evaluate", "--model", str(model_dir), "--data", str(folder), "--num", "0", "--no-progress"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 4
    assert main([*argv, "--max-pixels", BUDGET]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    assert metrics["num_images"] == 3 and metrics["skipped_images"] == 1
    assert len(metrics["skipped"]) == 1 and "big.png" in metrics["skipped"][0] and "--max-pixels" in metrics["skipped"][0]
    lines = [line for line in captured.err.splitlines() if "skipped" in line]
    assert len(lines) == 1 and "big.png" in lines[0]
    assert main([*argv, "--max-pixels", BUDGET, "--strict-data"]) == 2
    assert "big.png" in capsys.readouterr().err


def test_reconstruct_takes_max_pixels(tmp_path, model_dir, folder, capsys):
    argv = ["reconstruct", str(folder), "--model", str(model_dir), "--no-progress"]
    assert main([*argv, "--output-dir", str(tmp_path / "all")]) == 0
    assert len(json.loads((tmp_path / "all" / "reconstructions.json").read_text())["outputs"]) == 4
    assert main([*argv, "--output-dir", str(tmp_path / "bounded"), "--max-pixels", BUDGET]) == 2
    error = capsys.readouterr().err
    assert "big.png" in error and "--max-pixels" in error
    assert main([*argv, "--output-dir", str(tmp_path / "skipped"), "--max-pixels", BUDGET, "--skip-bad"]) == 0
    record = json.loads((tmp_path / "skipped" / "reconstructions.json").read_text())
    assert len(record["outputs"]) == 3 and "big.png" in record["skipped"][0]["path"]


def test_the_python_api_names_its_own_keyword(folder):
    with pytest.raises(ImageLoadError, match="over the pixel budget of 1,000") as caught:
        load_image(folder / "big.png", max_pixels=1000)
    assert "max_pixels=" in str(caught.value) and "--max-pixels" not in str(caught.value)


def test_the_native_size_budget_names_its_option_in_python_and_on_the_command_line(tmp_path, model_dir, config, capsys):
    with pytest.raises(InvalidImageError, match="max_native_pixels=") as caught:
        check_image_size(32, 32, config, native_size=True, max_native_pixels=100)
    assert "--max-native-pixels" not in str(caught.value)
    image = photo(tmp_path / "wide.png", size=(32, 32))
    assert main(["encode", str(image), "--model", str(model_dir), "--native-size", "--max-native-pixels", "100"]) == 2
    error = capsys.readouterr().err
    assert "--max-native-pixels" in error and "max_native_pixels=" not in error


def test_evaluate_skips_and_names_an_image_too_small_for_the_token_grid(tmp_path, model_dir, capsys):
    """encode refuses a 1x1 image (the tiny tokenizer's grid is 8x8); evaluate used to upscale and score it."""
    for i in range(3):
        photo(tmp_path / "photos" / f"{i}.png", seed=i)
    photo(tmp_path / "photos" / "dot.png", size=(1, 1))
    assert main(["encode", str(tmp_path / "photos" / "dot.png"), "--model", str(model_dir)]) == 2
    assert "too small" in capsys.readouterr().err
    argv = ["evaluate", "--model", str(model_dir), "--data", str(tmp_path / "photos"), "--num", "0", "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_images"] == 3 and metrics["skipped_images"] == 1
    assert "dot.png" in metrics["skipped"][0] and "1x1, too small" in metrics["skipped"][0]
    assert main([*argv, "--strict-data"]) == 2
    error = capsys.readouterr().err
    assert "dot.png" in error and "too small" in error


def test_evaluate_names_a_corrupt_file_it_skips(tmp_path, model_dir, capsys):
    for i in range(2):
        photo(tmp_path / "photos" / f"{i}.png", seed=i)
    (tmp_path / "photos" / "broken.png").write_bytes(b"\x89PNG not really")
    assert main(["evaluate", "--model", str(model_dir), "--data", str(tmp_path / "photos"), "--num", "0", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in json.loads(captured.out)["skipped"][0]
    assert "skipped 1 " in captured.err and "broken.png" in captured.err
