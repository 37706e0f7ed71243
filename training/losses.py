"""Stage-1 losses: L = L_rec + L_VQ + lambda * L_GAN, with a PatchGAN discriminator and an adaptive lambda.

lambda = ||grad_GL L_rec|| / (||grad_GL L_GAN|| + delta), taken at the decoder's last layer GL and clamped
(Esser et al., eq. 7). The discriminator trains from `disc_start`; its loss reaches the generator only from
`gan_start` (>= disc_start), so the generator never chases an untrained critic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PerceptualLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class PatchDiscriminator(nn.Module):
    """pix2pix/taming PatchGAN: strided 4x4 convs -> one real/fake logit per overlapping patch.

    GroupNorm instead of BatchNorm, so the critic behaves the same on 1 or many processes without syncing
    batch statistics."""

    def __init__(self, in_channels: int = 3, ch: int = 64, num_layers: int = 3, groups: int = 16):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = ch
        for i in range(1, num_layers + 1):
            out = ch * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),
                nn.GroupNorm(min(groups, out), out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def generator_gan_loss(logits_fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Hinge: -D(x_hat); vanilla (non-saturating): softplus(-D(x_hat))."""
    return -logits_fake.mean() if kind == "hinge" else F.softplus(-logits_fake).mean()


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "l1":
        return (x - x_hat).abs().mean()
    if kind == "l2":
        return F.mse_loss(x_hat, x)
    raise ValueError(f"reconstruction loss must be 'l1' or 'l2', got {kind!r}")


def adaptive_gan_weight(
    rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor, delta: float = 1e-4, max_weight: float = 1e4
) -> torch.Tensor:
    """lambda = ||dL_rec/dGL|| / (||dL_GAN/dGL|| + delta), clamped to [0, max_weight], without gradient."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + delta)
    return weight.clamp(0.0, max_weight).detach()


@dataclass
class LossConfig:
    reconstruction: str = "l1"  # "l1" or "l2"
    reconstruction_weight: float = 1.0  # weight of the reconstruction term
    gan: str = "hinge"  # "hinge" or "vanilla"
    gan_weight: float = 0.1  # multiplies the adaptive lambda (taming's disc_weight)
    disc_start: int = 2000  # step at which the discriminator starts training
    gan_start: int = 3000  # step at which its loss reaches the generator (>= disc_start)
    adaptive_delta: float = 1e-4  # delta in the adaptive lambda's denominator (no division by zero)
    adaptive_max: float = 1e4  # the adaptive lambda is clamped to [0, adaptive_max]
    perceptual_weight: float = 0.0  # only used with a perceptual hook

    def validate(self) -> None:
        if self.reconstruction not in ("l1", "l2"):
            raise ValueError(f"loss.reconstruction must be 'l1' or 'l2', got {self.reconstruction!r}")
        if self.gan not in ("hinge", "vanilla"):
            raise ValueError(f"loss.gan must be 'hinge' or 'vanilla', got {self.gan!r}")
        if self.gan_start < self.disc_start:
            raise ValueError(f"loss.gan_start ({self.gan_start}) must be >= loss.disc_start ({self.disc_start})")


class VQGANLoss:
    """Computes the generator (autoencoder) loss and the discriminator loss of one step.

    `discriminator` is the module as the optimizer sees it (possibly wrapped for DDP); the generator's
    adversarial term calls `critic`, the bare module with frozen parameters, so no critic gradients are
    computed (or synchronised) during the generator's backward."""

    def __init__(
        self,
        config: LossConfig,
        discriminator: nn.Module | None,
        critic: nn.Module | None = None,
        perceptual: PerceptualLoss | None = None,
    ):
        config.validate()
        self.config = config
        self.discriminator = discriminator
        self.critic = critic if critic is not None else discriminator
        self.perceptual = perceptual

    def gan_active(self, step: int) -> bool:
        return self.discriminator is not None and self.config.gan_weight > 0 and step >= self.config.gan_start

    def disc_active(self, step: int) -> bool:
        return self.discriminator is not None and self.config.gan_weight > 0 and step >= self.config.disc_start

    def generator_loss(
        self, x: torch.Tensor, x_hat: torch.Tensor, vq_loss: torch.Tensor, step: int, last_layer: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator's total loss, and its terms as detached tensors (read them at log steps: reading
        one waits for the device)."""
        c = self.config
        rec = reconstruction_loss(x.float(), x_hat.float(), c.reconstruction) * c.reconstruction_weight
        if self.perceptual is not None and c.perceptual_weight > 0:
            rec = rec + c.perceptual_weight * self.perceptual(x, x_hat).mean()
        total = rec + vq_loss
        logs = {"rec_loss": rec.detach(), "vq_loss": vq_loss.detach()}
        if self.gan_active(step):
            self.critic.requires_grad_(False)
            try:
                gan = generator_gan_loss(self.critic(x_hat), c.gan)
            finally:
                self.critic.requires_grad_(True)
            weight = adaptive_gan_weight(rec, gan, last_layer, c.adaptive_delta, c.adaptive_max) * c.gan_weight
            total = total + weight * gan
            logs.update(gan_loss=gan.detach(), gan_lambda=weight)
        return total, logs

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # One forward over real and fake together: a DDP-wrapped critic must see one forward per backward.
        logits = self.discriminator(torch.cat([x.detach(), x_hat.detach()]))
        logits_real, logits_fake = logits.chunk(2)
        loss_fn = hinge_d_loss if self.config.gan == "hinge" else vanilla_d_loss
        loss = loss_fn(logits_real, logits_fake)
        return loss, {
            "disc_loss": loss.detach(),
            "logits_real": logits_real.detach().mean(),
            "logits_fake": logits_fake.detach().mean(),
        }
