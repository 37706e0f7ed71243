import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from tests.helpers import tiny_config
from training.baselines.models import VAE, Autoencoder, gaussian_kl, reparameterize
from training.baselines.train_baseline import BaselineConfig, load_baseline, reconstruct
from training.baselines.train_baseline import train as train_baseline
from training.train_tokenizer import TrainConfig
from training.train_tokenizer import train as train_tokenizer

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
TINY_MODEL = {"resolution": 64, "ch": 8, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "z_channels": 8, "norm_groups": 4,
              "use_mid_attention": False}


def test_kl_matches_the_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    mu, log_var = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, log_var), expected)
    # by hand: mu = 1, log_var = 0 gives 0.5 per value; mu = 0, log_var = 0 gives 0
    assert gaussian_kl(torch.ones(1, 6), torch.zeros(1, 6)).item() == pytest.approx(3.0)
    assert gaussian_kl(torch.zeros(1, 6), torch.zeros(1, 6)).item() == pytest.approx(0.0)


def test_reparameterisation_has_the_right_moments_and_gradients():
    mu = torch.full((20000,), 2.0, requires_grad=True)
    log_var = torch.full((20000,), np.log(0.25), requires_grad=True)
    z = reparameterize(mu, log_var, torch.Generator().manual_seed(0))
    assert z.mean().item() == pytest.approx(2.0, abs=0.02) and z.std().item() == pytest.approx(0.5, abs=0.02)
    (z.pow(2).mean() + gaussian_kl(mu[None], log_var[None]).sum()).backward()
    assert mu.grad is not None and log_var.grad is not None
    assert mu.grad.abs().sum() > 0 and log_var.grad.abs().sum() > 0


def test_vae_loss_reaches_mu_and_log_var_and_the_ae_is_deterministic():
    torch.manual_seed(0)
    config = tiny_config()
    vae = VAE(config, latent_channels=3, kl_weight=0.5)
    x = torch.randn(2, 3, 16, 16)
    recon, terms = vae(x)
    assert recon.shape == x.shape and set(terms) == {"loss", "mse", "kl"}
    terms["loss"].backward()
    assert vae.to_latent.weight.grad.abs().sum() > 0  # the layer that predicts mu and log_var
    assert vae.sample(2, torch.Generator().manual_seed(0)).shape == (2, 3, 16, 16)
    ae = Autoencoder(config, latent_channels=3).eval()
    torch.testing.assert_close(ae.reconstruct(x), ae.reconstruct(x))


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_one_tiny_training_run_of_each_continuous_baseline(tmp_path, kind):
    data = json.loads((CONFIGS / f"seed_{kind}.json").read_text())
    data.update(output_dir=str(tmp_path / kind), model=TINY_MODEL, steps=2, batch_size=4, num_train_images=16,
                eval_images=8, log_every=1, progress=False)
    result = train_baseline(BaselineConfig(**data))
    metrics = json.loads((tmp_path / kind / "eval.json").read_text())
    assert metrics["num_images"] == 8 and np.isfinite(metrics["psnr_db"]) and 0 <= metrics["hole_recall"] <= 1
    model, config = load_baseline(tmp_path / kind)
    assert config.kind == kind and isinstance(model, VAE if kind == "vae" else Autoencoder)
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(reconstruct(model, images), reconstruct(result["model"], images))


@pytest.mark.parametrize("name", ["vqvae", "vqgan"])
def test_one_tiny_training_run_of_each_vq_baseline(tmp_path, name):
    data = json.loads((CONFIGS / f"seed_{name}.json").read_text())
    model = {**TINY_MODEL, "quantizer": {"codebook_size": 32, "codebook_dim": 4}}
    loss = {**data["loss"], **({"disc_start": 1, "gan_start": 2} if data["loss"]["gan_weight"] > 0 else {})}
    data.update(output_dir=str(tmp_path / name), model=model, loss=loss, steps=3, batch_size=4, num_train_images=16,
                eval_images=8, image_every=0, checkpoint_every=0, progress=False, disc_ch=8, kmeans_batches=1,
                kmeans_iters=1, warmup_steps=1)
    summary = train_tokenizer(TrainConfig(**data))
    assert summary["step"] == 3 and (tmp_path / name / "final" / "model.safetensors").is_file()
    assert 0 <= summary["metrics"]["hole_recall"] <= 1
