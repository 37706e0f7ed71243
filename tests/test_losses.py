import pytest
import torch

from training.losses import (
    LossConfig,
    PatchDiscriminator,
    VQGANLoss,
    adaptive_gan_weight,
    generator_gan_loss,
    hinge_d_loss,
    vanilla_d_loss,
)


def test_hinge_and_vanilla_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # hinge: 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake))) = 0.5 * (0.25 + 0.75)
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5)
    expected = 0.5 * (torch.nn.functional.softplus(-real).mean() + torch.nn.functional.softplus(fake).mean())
    assert vanilla_d_loss(real, fake).item() == pytest.approx(expected.item())
    assert generator_gan_loss(fake, "hinge").item() == pytest.approx(0.75)


def test_patch_discriminator_gives_a_logit_map():
    disc = PatchDiscriminator(ch=8, num_layers=2)
    logits = disc(torch.randn(2, 3, 64, 64))
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] > 1  # one logit per patch


def test_adaptive_weight_is_the_ratio_of_gradient_norms():
    layer = torch.nn.Parameter(torch.randn(4, 4))
    x = torch.randn(3, 4)
    out = x @ layer
    rec = out.pow(2).mean()
    gan = -out.mean() * 5
    weight = adaptive_gan_weight(rec, gan, layer, delta=1e-4)
    g_rec = torch.autograd.grad(rec, layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, layer, retain_graph=True)[0]
    assert weight.item() == pytest.approx((g_rec.norm() / (g_gan.norm() + 1e-4)).item(), rel=1e-5)
    assert adaptive_gan_weight(rec, gan * 0, layer, max_weight=10.0).item() == 10.0  # clamped
    assert not weight.requires_grad


def test_discriminator_warm_up_gates_the_generator_term():
    disc = PatchDiscriminator(ch=8, num_layers=2)
    loss = VQGANLoss(LossConfig(disc_start=10, gan_start=20), disc)
    assert not loss.disc_active(9) and loss.disc_active(10)
    assert not loss.gan_active(19) and loss.gan_active(20)
    with pytest.raises(ValueError, match="gan_start .* must be >= loss.disc_start"):
        LossConfig(disc_start=10, gan_start=5).validate()


def _generator_setup():
    torch.manual_seed(0)
    decoder_last = torch.nn.Conv2d(4, 3, 3, padding=1)
    x = torch.randn(2, 3, 32, 32)
    x_hat = decoder_last(torch.randn(2, 4, 32, 32))
    return decoder_last, x, x_hat


def test_generator_loss_before_and_after_gan_start():
    disc = PatchDiscriminator(ch=8, num_layers=2)
    loss = VQGANLoss(LossConfig(disc_start=0, gan_start=5, reconstruction="l1"), disc)
    layer, x, x_hat = _generator_setup()
    vq = torch.tensor(0.3)
    early, logs = loss.generator_loss(x, x_hat, vq, step=4, last_layer=layer.weight)
    assert "gan_loss" not in logs
    assert early.item() == pytest.approx((x - x_hat).abs().mean().item() + 0.3, rel=1e-6)
    late, logs = loss.generator_loss(x, x_hat, vq, step=5, last_layer=layer.weight)
    assert "gan_loss" in logs and logs["gan_lambda"] > 0
    late.backward()
    # The generator step computes no gradients for the critic.
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.requires_grad for p in disc.parameters())
    assert layer.weight.grad is not None


def test_discriminator_loss_trains_only_the_critic():
    disc = PatchDiscriminator(ch=8, num_layers=2)
    loss = VQGANLoss(LossConfig(disc_start=0, gan_start=0), disc)
    layer, x, x_hat = _generator_setup()
    d_loss, logs = loss.discriminator_loss(x, x_hat)
    d_loss.backward()
    assert layer.weight.grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())
    assert {"disc_loss", "logits_real", "logits_fake"} <= set(logs)


def test_perceptual_hook_is_weighted_in():
    calls = []

    def perceptual(a, b):
        calls.append(a.shape)
        return torch.tensor(2.0)

    loss = VQGANLoss(LossConfig(gan_weight=0.0, perceptual_weight=0.5), None, perceptual=perceptual)
    layer, x, x_hat = _generator_setup()
    total, _ = loss.generator_loss(x, x_hat, torch.tensor(0.0), step=0, last_layer=layer.weight)
    assert calls and total.item() == pytest.approx((x - x_hat).abs().mean().item() + 1.0, rel=1e-6)
