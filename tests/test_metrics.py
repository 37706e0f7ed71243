import json

import numpy as np
import pytest

from image_tokenizer.cli import main
from image_tokenizer.evaluation import evaluate_tokenizer
from image_tokenizer.metrics import codebook_usage, hole_recall, psnr, ssim


def test_psnr_known_values():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = a.copy()
    b[0] += 1  # MSE 1 -> 20 log10(255)
    assert psnr(a, b)[0] == pytest.approx(20 * np.log10(255.0))
    assert np.isinf(psnr(a, b)[1])


def test_ssim_of_constant_images_has_a_closed_form():
    # With zero variance SSIM reduces to the luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    x = np.full((16, 16, 3), 100, np.uint8)
    y = np.full((16, 16, 3), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 140 + c1) / (100**2 + 140**2 + c1)
    assert ssim(x, y) == pytest.approx(expected, rel=1e-9)
    noisy = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    assert ssim(noisy, noisy) == pytest.approx([1.0, 1.0])
    assert (ssim(noisy, noisy[::-1]) < 0.2).all()


def test_ssim_matches_the_windowed_definition_on_a_non_square_image():
    """Every valid 11x11 window by hand (Gaussian weights, sigma 1.5), averaged over windows and channels."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (13, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    coords = np.arange(11) - 5.0
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for c in range(3):
        for i in range(13 - 10):
            for j in range(16 - 10):
                x, y = a[i : i + 11, j : j + 11, c].astype(float), b[i : i + 11, j : j + 11, c].astype(float)
                mx, my = (window * x).sum(), (window * y).sum()
                vx, vy = (window * x * x).sum() - mx**2, (window * y * y).sum() - my**2
                cov = (window * x * y).sum() - mx * my
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert ssim(a, b) == pytest.approx(np.mean(values), abs=1e-12)
    assert ssim(a[None], b[None])[0] == pytest.approx(np.mean(values), abs=1e-12)


def test_hole_recall_counts_dark_hole_pixels():
    recon = np.full((1, 4, 4, 3), 200, np.uint8)
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 1, 1] = masks[0, 2, 2] = True
    recon[0, 1, 1] = (10, 20, 30)  # left dark: recalled
    recon[0, 2, 2] = (10, 90, 10)  # one bright channel: not dark
    assert hole_recall(recon, masks) == pytest.approx(0.5)
    assert np.isnan(hole_recall(recon, np.zeros_like(masks)))


def test_codebook_usage_and_perplexity():
    usage, perplexity = codebook_usage(np.array([4, 4, 4, 4, 0, 0, 0, 0]))
    assert usage == pytest.approx(0.5) and perplexity == pytest.approx(4.0)


def test_evaluate_tokenizer_reports_every_metric(tokenizer):
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3)).astype(np.uint8)
    masks = np.zeros((5, 16, 16), bool)
    masks[:, 3, 3] = True
    result = evaluate_tokenizer(tokenizer, images, masks, batch_size=2)
    assert set(result) == {"num_images", "psnr_db", "ssim", "codebook_usage", "perplexity", "hole_recall", "blank_images"}
    assert result["blank_images"] == 0  # noise is never a single colour
    ids = tokenizer.encode(images)
    assert result["codebook_usage"] == pytest.approx(ids.unique().numel() / tokenizer.vocab_size)
    recon = tokenizer.decode(ids, output_type="np")
    assert result["psnr_db"] == pytest.approx(float(np.mean(psnr(images, recon))))


def test_evaluate_command_writes_json_and_updates_the_card(tmp_path, capsys):
    from image_tokenizer import ImageTokenizer, ImageTokenizerConfig, QuantizerConfig

    config = ImageTokenizerConfig(resolution=64, ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=8, norm_groups=4,
                                  quantizer=QuantizerConfig(codebook_size=32, codebook_dim=4))
    ImageTokenizer(config).save_pretrained(tmp_path / "model")
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--model", str(tmp_path / "model"), "--num", "8", "--output", str(out), "--update-card", "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 8 and 0 <= metrics["hole_recall"] <= 1 and metrics["data"] == "shapes, seed 1"
    card = ImageTokenizer.from_pretrained(tmp_path / "model").card_info
    assert card["metrics"]["heldout_psnr_db"] == round(metrics["psnr_db"], 4)
