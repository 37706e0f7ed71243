"""The continuous-latent baselines of the four-systems comparison, built from our encoder and decoder blocks.

Both map a 64x64 image to the same 16x16 latent grid as the tokenizer, with `latent_channels` values per
cell instead of one code id: an Autoencoder (deterministic bottleneck) and a VAE (mu and log-variance, the
reparameterisation z = mu + sigma * eps, and a KL term to N(0, I)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from image_tokenizer.config import ImageTokenizerConfig
from image_tokenizer.modeling.decoder import Decoder
from image_tokenizer.modeling.encoder import Encoder

LOG_VAR_RANGE = (-30.0, 20.0)  # keeps exp(log_var) finite in fp32


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)) per sample: -0.5 * sum(1 + log_var - mu^2 - exp(log_var))."""
    return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).flatten(1).sum(dim=1)


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I): a sample whose gradient reaches mu and log_var."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * log_var) * eps


class Autoencoder(nn.Module):
    """Encoder -> 1x1 conv to `latent_channels` -> 1x1 conv back -> decoder; trained with MSE."""

    moments = 1  # values the encoder predicts per latent value

    def __init__(self, config: ImageTokenizerConfig, latent_channels: int):
        super().__init__()
        self.config, self.latent_channels = config, latent_channels
        self.encoder = Encoder(config)
        self.to_latent = nn.Conv2d(config.z_channels, self.moments * latent_channels, 1)
        self.from_latent = nn.Conv2d(latent_channels, config.z_channels, 1)
        self.decoder = Decoder(config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruction and the loss terms (here just MSE)."""
        reconstruction = self.decode(self.encode(x))
        mse = F.mse_loss(reconstruction, x)
        return reconstruction, {"loss": mse, "mse": mse}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class VAE(Autoencoder):
    """The encoder predicts mu and log_var per latent value; loss = MSE + kl_weight * KL / pixels."""

    moments = 2

    def __init__(self, config: ImageTokenizerConfig, latent_channels: int, kl_weight: float = 1e-3):
        super().__init__(config, latent_channels)
        self.kl_weight = kl_weight

    def moments_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encode(x).chunk(2, dim=1)
        return mu, log_var.clamp(*LOG_VAR_RANGE)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mu, log_var = self.moments_of(x)
        reconstruction = self.decode(reparameterize(mu, log_var))
        mse = F.mse_loss(reconstruction, x)
        kl = gaussian_kl(mu, log_var).mean() / x[0].numel()  # per pixel value, on the scale of the MSE
        return reconstruction, {"loss": mse + self.kl_weight * kl, "mse": mse, "kl": kl}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder on the posterior mean: the VAE's deterministic reconstruction."""
        return self.decode(self.moments_of(x)[0])

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode z ~ N(0, I) on the latent grid."""
        h = w = self.config.resolution // self.config.downsample_factor
        device = next(self.parameters()).device
        z = torch.randn((num, self.latent_channels, h, w), generator=generator).to(device)
        return self.decode(z)
