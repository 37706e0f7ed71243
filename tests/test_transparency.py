"""Transparency is declared once (issue 38): evaluate, reconstruct and the evaluation API composite every image
onto one background (default white) before both the model and the score, whatever each model's own
alpha_background, so two models are scored on the same pixels; images left a single colour are counted, never
dropped. New tokenizers default to white; saved and bundled ones keep what they recorded."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from image_tokenizer import ConfigError, ImageTokenizer, ImageTokenizerConfig
from image_tokenizer.cli import main
from image_tokenizer.config import WHITE, PreprocessingConfig, parse_background
from image_tokenizer.evaluation import evaluate_tokenizer, load_eval_set
from image_tokenizer.hub import PRETRAINED_DIR
from image_tokenizer.metrics import psnr
from tests.helpers import tiny_config

BLACK = (0, 0, 0)


def line_art() -> dict[str, np.ndarray]:
    """16x16 RGBA drawings on a transparent (0, 0, 0, 0) ground, as PNG writers leave it: black line art (one
    with a half-transparent edge) is a single colour on black; the red stroke is never one."""
    black_lines = np.zeros((16, 16, 4), np.uint8)
    black_lines[4:6, 2:14] = black_lines[2:14, 9:11] = (0, 0, 0, 255)
    soft_edge = black_lines.copy()
    soft_edge[6, 2:14] = (0, 0, 0, 128)
    red = np.zeros((16, 16, 4), np.uint8)
    red[8:10, 1:15] = (220, 30, 30, 255)
    return {"a_black_lines": black_lines, "b_soft_edge": soft_edge, "c_red": red}


def composited(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """The expected pixels, by the alpha-over formula (PIL rounds within 1 level)."""
    alpha = rgba[..., 3:4] / 255.0
    return rgba[..., :3] * alpha + np.array(background) * (1 - alpha)


def flattened(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """The same by PIL's alpha_composite, rounded as the library rounds it."""
    canvas = Image.new("RGBA", rgba.shape[1::-1], (*background, 255))
    return np.asarray(Image.alpha_composite(canvas, Image.fromarray(rgba, "RGBA")).convert("RGB"))


@pytest.fixture
def folder(tmp_path):
    """An image folder with a test/ split of the line art."""
    (tmp_path / "art" / "test").mkdir(parents=True)
    for name, rgba in line_art().items():
        Image.fromarray(rgba, "RGBA").save(tmp_path / "art" / "test" / f"{name}.png")
    return tmp_path / "art"


def tokenizer_on(background: tuple[int, int, int]) -> ImageTokenizer:
    """A tiny tokenizer (the same weights every call) whose own alpha_background is `background`."""
    torch.manual_seed(0)
    config = dataclasses.replace(tiny_config(), preprocessing=PreprocessingConfig(alpha_background=background))
    return ImageTokenizer(config)


@pytest.fixture
def models(tmp_path):
    """Two saved tokenizers that differ only in their own alpha_background: black and white."""
    paths = {}
    for name, background in (("black", BLACK), ("white", WHITE)):
        tokenizer_on(background).save_pretrained(tmp_path / name)
        paths[name] = str(tmp_path / name)
    return paths


# ----- the default, and what saved models keep -----
def test_new_tokenizers_default_to_white_and_saved_ones_keep_theirs(tmp_path):
    assert PreprocessingConfig().alpha_background == WHITE
    assert ImageTokenizerConfig().preprocessing.alpha_background == WHITE
    assert tiny_config().preprocessing.alpha_background == WHITE
    tokenizer_on(BLACK).save_pretrained(tmp_path / "black")
    saved = json.loads((tmp_path / "black" / "config.json").read_text())
    assert saved["preprocessing"]["alpha_background"] == [0, 0, 0]  # always recorded
    assert ImageTokenizerConfig.load(tmp_path / "black").preprocessing.alpha_background == BLACK


def test_bundled_models_keep_the_background_they_were_trained_on():
    recorded = {}
    for file in sorted(PRETRAINED_DIR.glob("*/config.json")):
        data = json.loads(file.read_text())
        if data.get("model_type") == "image_tokenizer":
            recorded[file.parent.name] = tuple(data["preprocessing"]["alpha_background"])
            assert ImageTokenizerConfig.load(file.parent).preprocessing.alpha_background == recorded[file.parent.name]
    assert recorded["shapes-64"] == BLACK and recorded["shapes-64-small"] == BLACK
    assert recorded["emoji-64-small"] == WHITE


@pytest.mark.parametrize("text, colour", [("white", WHITE), ("Black", BLACK), ("10, 20,30", (10, 20, 30))])
def test_background_is_a_name_or_r_g_b(text, colour):
    assert parse_background(text) == colour


@pytest.mark.parametrize("text", ["red", "1,2", "1,2,256", "-1,2,3", "a,b,c"])
def test_a_bad_background_is_named(text):
    with pytest.raises(ConfigError, match="background must be white, black or R,G,B"):
        parse_background(text)


def test_cli_refuses_a_bad_background_in_one_line(folder, models, capsys):
    assert main(["evaluate", "--data", str(folder), "--model", models["white"], "--background", "red"]) == 2
    assert "background must be white, black or R,G,B" in capsys.readouterr().err


# ----- the Python API -----
def test_load_eval_set_gives_every_model_the_same_composited_pixels(folder):
    art = line_art()
    for background in (WHITE, BLACK, (0, 128, 255)):
        sets = [load_eval_set(str(folder), 16, tokenizer_on(own).config.preprocessing, num=0, background=background)
                for own in (BLACK, WHITE)]
        assert np.array_equal(sets[0].images, sets[1].images)  # the same reference pixels for both models
        expected = np.stack([composited(rgba, background) for rgba in art.values()])
        assert np.abs(sets[0].images.astype(float) - expected).max() <= 1
    default = load_eval_set(str(folder), 16, tokenizer_on(BLACK).config.preprocessing, num=0)
    assert (default.images[0][0, 0] == 255).all()  # white unless told otherwise, whatever the model's own


def test_evaluate_tokenizer_composites_rgba_arrays_and_counts_blank_images():
    tokenizer = tokenizer_on(BLACK)
    rgba = np.stack(list(line_art().values()))
    on_black = evaluate_tokenizer(tokenizer, rgba, background=BLACK)
    on_white = evaluate_tokenizer(tokenizer, rgba)
    assert on_black["blank_images"] == 2 and on_white["blank_images"] == 0
    assert on_white == evaluate_tokenizer(tokenizer, np.stack([flattened(a, WHITE) for a in rgba]))


# ----- the command line -----
def evaluate_json(folder, model, capsys, *extra) -> dict:
    assert main(["evaluate", "--data", str(folder), "--num", "0", "--model", model, "--no-progress", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_scores_two_models_on_the_same_composited_pixels(folder, models, capsys):
    scores = {name: evaluate_json(folder, path, capsys) for name, path in models.items()}
    assert scores["black"] == scores["white"]  # the same weights see, and are scored on, the same pixels
    assert scores["white"]["background"] == "white" and scores["white"]["blank_images"] == 0
    reference = np.stack([flattened(rgba, WHITE) for rgba in line_art().values()])
    expected = evaluate_tokenizer(ImageTokenizer.from_pretrained(models["black"]), reference)
    assert scores["black"]["psnr_db"] == expected["psnr_db"] and scores["black"]["ssim"] == expected["ssim"]


def test_evaluate_counts_images_left_a_single_colour_and_keeps_them(folder, models, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--data", str(folder), "--num", "0", "--model", models["white"], "--no-progress",
                 "--background", "black"]) == 0
    captured = capsys.readouterr()
    scores = json.loads(captured.out)
    assert scores["num_images"] == 3 and scores["blank_images"] == 2 and scores["background"] == "black"
    assert "2 of 3 image(s) are a single colour on the black background" in captured.err


def test_reconstruct_gives_and_scores_every_model_the_same_pixels(tmp_path, folder, models, capsys):
    art = line_art()
    records = {}
    for name, path in models.items():
        out = tmp_path / f"rec_{name}"
        assert main(["reconstruct", str(folder / "test"), "--model", path, "--output-dir", str(out), "--no-progress"]) == 0
        assert "on a white background" in capsys.readouterr().out
        records[name] = json.loads((out / "reconstructions.json").read_text())
        assert records[name]["background"] == "white" and records[name]["blank_images"] == 0
        tokenizer = ImageTokenizer.from_pretrained(path)
        for row, (stem, rgba) in zip(records[name]["outputs"], art.items()):
            assert row["output"] == f"{stem}_reconstruction.png" and row["blank"] is False
            reference = flattened(rgba, WHITE)
            reconstruction = np.asarray(Image.open(out / row["output"]))
            # the model was given the white-composited pixels, whatever its own alpha_background ...
            assert np.array_equal(reconstruction, np.asarray(tokenizer.decode(tokenizer.encode(reference))))
            # ... and scored against them
            assert row["psnr"] == round(float(psnr(reference, reconstruction)), 4)
    assert records["black"]["outputs"] == records["white"]["outputs"]


def test_reconstruct_reports_blank_images(tmp_path, folder, models, capsys):
    out = tmp_path / "rec"
    assert main(["reconstruct", str(folder / "test"), "--model", models["white"], "--output-dir", str(out),
                 "--no-progress", "--background", "0,0,0"]) == 0
    captured = capsys.readouterr()
    assert "on a black background" in captured.out and "2 blank (a single colour)" in captured.out
    record = json.loads((out / "reconstructions.json").read_text())
    assert record["blank_images"] == 2 and [row["blank"] for row in record["outputs"]] == [True, True, False]


# ----- training evaluates on the background it trained on -----
def test_training_held_out_set_uses_the_models_own_background(folder, tmp_path):
    from training.train_tokenizer import TrainConfig, held_out_set

    config = TrainConfig(output_dir=str(tmp_path / "run"), data=str(folder), eval_data=str(folder), eval_split="test",
                         eval_images=10)
    for own in (WHITE, BLACK):
        eval_set, _ = held_out_set(config, tokenizer_on(own).config)
        assert tuple(eval_set.images[0][0, 0]) == own  # the transparent corner, on the colour it trains on
