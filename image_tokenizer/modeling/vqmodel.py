"""VQModel: encoder -> quant_conv -> vector quantizer -> post_quant_conv -> decoder, with the encoder and
decoder of config.architecture."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ImageTokenizerConfig, QuantizerConfig
from ..errors import NoDecoderError
from .cosmos import CosmosDecoder, CosmosEncoder
from .decoder import Decoder
from .emu3 import Emu3Decoder, Emu3Encoder
from .encoder import Encoder
from .fsq import FiniteScalarQuantizer
from .lfq import LookupFreeQuantizer
from .magvit2 import Magvit2Decoder, Magvit2Encoder
from .multiscale import MultiScaleQuantizer
from .quantizer import TRAINING_BUFFERS, VectorQuantizer
from .quantizer_base import QuantizerBase, QuantizerOutput
from .residual import ResidualQuantizer
from .titok import ViTDecoder, ViTEncoder

CODEBOOK_KEY = "quantizer.codebook"
# config.architecture -> its encoder and decoder; a decoder with `needs_codes` also receives the quantized codes.
ENCODERS: dict[str, type[nn.Module]] = {"vqgan": Encoder, "magvit2": Magvit2Encoder, "emu3": Emu3Encoder, "cosmos": CosmosEncoder,
                                        "titok": ViTEncoder}
DECODERS: dict[str, type[nn.Module]] = {"vqgan": Decoder, "magvit2": Magvit2Decoder, "emu3": Emu3Decoder, "cosmos": CosmosDecoder,
                                        "titok": ViTDecoder}


def build_quantizer(dim: int, config: QuantizerConfig) -> QuantizerBase:
    """The quantizer of config.kind for `dim`-channel features."""
    kinds = {"vq": VectorQuantizer, "fsq": FiniteScalarQuantizer, "lfq": LookupFreeQuantizer,
             "multiscale": MultiScaleQuantizer, "residual": ResidualQuantizer}
    return kinds[config.kind](dim, config)


@dataclass
class VQModelOutput:
    reconstruction: torch.Tensor  # [B, C, H, W] in the normalised input space
    quantizer: QuantizerOutput


class VQModel(nn.Module):
    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        self.config = config
        dim = config.quantizer_input_dim
        self.encoder = ENCODERS[config.architecture](config)
        k = config.quant_conv_kernel_size
        self.quant_conv = nn.Conv2d(config.z_channels, dim, k, padding=k // 2) if config.use_quant_conv else None
        self.quantizer = build_quantizer(dim, config.quantizer)
        self.post_quant_conv = nn.Conv2d(dim, config.z_channels, k, padding=k // 2) if config.use_post_quant_conv else None
        self.decoder = None if config.encoder_only else DECODERS[config.architecture](config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels -> the quantizer's input [B, dim, h, w] (encoder, then quant_conv in float32)."""
        h = self.encoder(pixels.to(_weight_dtype(self.encoder)))  # the encoder may run in half precision
        if self.quant_conv is not None:
            with torch.autocast(device_type=h.device.type, enabled=False):  # the whole quantization path is fp32
                h = self.quant_conv(h.float())
        return h

    def encode(self, pixels: torch.Tensor) -> QuantizerOutput:
        """Normalised pixels [B, C, H, W] -> quantizer output (ids in the layout, [B, h, w] for a grid, [B, N] for
        1d, and straight-through codes)."""
        output = self.quantizer(self.features(pixels))
        if self.one_dimensional:
            output.ids = output.ids.flatten(1)
        return output

    def encode_ids(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels -> ids only ([B, h, w], [B, N] multiscale or 1d, [B, h, w, D] residual); the same ids as
        encode(), without losses or statistics."""
        ids = self.quantizer.encode_ids(self.features(pixels))
        return ids.flatten(1) if self.one_dimensional else ids

    @property
    def one_dimensional(self) -> bool:
        """Whether ids are a 1D sequence [B, N] (titok), which the quantizer sees as a [1, N] map."""
        return self.config.layout.kind == "1d"

    def decode_quantized(self, quantized: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            raise NoDecoderError(
                "this tokenizer is encoder-only (config encoder_only=true; for example Chameleon's released VQ has no "
                "decoder weights): encode, __call__ and pre-tokenization work, decoding ids to images cannot"
            )
        h = quantized if self.post_quant_conv is None else self.post_quant_conv(quantized.to(self.post_quant_conv.weight.dtype))
        h = h.to(_weight_dtype(self.decoder))
        return self.decoder(h, quantized.to(h.dtype)) if getattr(self.decoder, "needs_codes", False) else self.decoder(h)

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Code ids in the layout ([B, h, w], [B, N] or [B, h, w, D]) -> normalised pixels [B, C, h*f, w*f]."""
        return self.decode_quantized(self.quantizer.lookup(ids.unsqueeze(1) if self.one_dimensional else ids))

    def forward(self, pixels: torch.Tensor) -> VQModelOutput:
        quantized = self.encode(pixels)
        return VQModelOutput(reconstruction=self.decode_quantized(quantized.quantized), quantizer=quantized)

    def weights_state_dict(self) -> dict[str, torch.Tensor]:
        """Inference weights without the codebook (saved on its own) and without training statistics."""
        skip = {CODEBOOK_KEY} | {f"quantizer.{name}" for name in TRAINING_BUFFERS}
        return {k: v for k, v in self.state_dict().items() if k not in skip}

    def load_weights(self, weights: dict[str, torch.Tensor], codebook: torch.Tensor | None) -> None:
        """Load what weights_state_dict() and the codebook file hold (None for kinds that imply their codebook);
        training statistics restart fresh."""
        state = dict(weights)
        state.update({f"quantizer.{name}": value for name, value in self.quantizer.initial_state(codebook).items()})
        self.load_state_dict(state, strict=True)


def _weight_dtype(module: nn.Module) -> torch.dtype:
    """The dtype a module's weights run in (float32, or bfloat16/float16 after `to(dtype=...)`)."""
    return next(module.parameters()).dtype
