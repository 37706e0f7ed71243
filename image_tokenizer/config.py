"""Configuration dataclasses of the tokenizer, validated at construction and round-tripped through config.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_fields import from_json_dict
from .errors import ConfigError, shorten
from .fileio import atomic_write_text, read_json_object
from .layouts import IdLayout, scales_problem
from .quantizer_config import QuantizerConfig
from .vit_config import ViTConfig, validate_titok, vit_to_dict

CONFIG_NAME = "config.json"
MODEL_TYPE = "image_tokenizer"  # config.json's model_type: how transformers' Auto classes recognise our folders
FILES_SHA256 = "files_sha256"  # config.json's record of the other files' hashes
RESIZE_MODES = ("resize_center_crop", "resize", "center_crop", "none")
RESAMPLE_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box")
# Encoder/decoder families (modeling/vqmodel.py ENCODERS, DECODERS): taming's VQGAN; Open-MAGVIT2's (no attention,
# depth-to-space upsampling, adaptive group norm in the decoder conditioned on the quantized latent); Emu3's image
# path (temporal layers collapsed, spatial norm); Cosmos's (Haar wavelet patching); TiTok's ViT over 1D latent
# tokens (vit_config.py).
ARCHITECTURES = ("vqgan", "magvit2", "emu3", "cosmos", "titok")
# Upper bounds, far above any published tokenizer (at most 5 levels, widths of 1024, 4 blocks a level).
MAX_RESOLUTION = 16_384  # pixels a side; raise it on purpose (image_tokenizer.config.MAX_RESOLUTION = ...)
MAX_CHANNELS = 2**16  # channel widths (ch * ch_mult), z_channels, norm groups, attention heads
MAX_LEVELS = 16  # len(ch_mult): 2^15 halvings already exceed MAX_RESOLUTION
MAX_RES_BLOCKS = 64  # num_res_blocks per level, and Emu3's temporal_downsample_factor
MAX_QUANT_CONV_KERNEL = 15  # published models use 1 (taming and most) or 3 (VAR)
# Fields added after config.json and fingerprints were first recorded, left out of to_dict (so of config.json and
# the fingerprint) while they hold these defaults: every model saved before them keeps its files and fingerprint.
OMITTED_AT_DEFAULT = {"quant_conv_kernel_size": 1, "vit": None}
# Transparent pixels are composited onto white by default, as browsers and the datasets viewer show PNGs.
WHITE = (255, 255, 255)
BACKGROUND_NAMES = {"white": WHITE, "black": (0, 0, 0)}


@dataclass
class PreprocessingConfig:
    """How any input image becomes the model's input tensor, and back."""

    resize_mode: str = "resize_center_crop"  # shorter side to resolution, then centre crop
    resample: str = "bicubic"
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # transparent pixels are composited onto this colour; saved configs always record it (models saved when the
    # default was black keep black)
    alpha_background: tuple[int, int, int] = WHITE

    def __post_init__(self) -> None:
        self.image_mean = tuple(self.image_mean)
        self.image_std = tuple(self.image_std)
        self.alpha_background = tuple(self.alpha_background)
        self.validate()

    def validate(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"preprocessing.resize_mode must be one of {RESIZE_MODES}, got {shorten(self.resize_mode)}")
        if self.resample not in RESAMPLE_FILTERS:
            raise ConfigError(f"preprocessing.resample must be one of {RESAMPLE_FILTERS}, got {shorten(self.resample)}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ConfigError("preprocessing.image_mean and image_std need three values (R, G, B)")
        if any(s <= 0 for s in self.image_std):
            raise ConfigError(f"preprocessing.image_std must be positive, got {self.image_std}")
        if len(self.alpha_background) != 3 or any(not 0 <= c <= 255 for c in self.alpha_background):
            raise ConfigError(f"preprocessing.alpha_background must be three values in 0..255, got {self.alpha_background}")


def parse_background(text: str) -> tuple[int, int, int]:
    """'white', 'black' or 'R,G,B' (each 0..255) -> an RGB colour to composite transparent pixels onto."""
    named = BACKGROUND_NAMES.get(text.strip().lower())
    if named is not None:
        return named
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        raise ConfigError(f"background must be white, black or R,G,B with each value in 0..255, got {shorten(text)}")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def background_name(colour: tuple[int, ...]) -> str:
    """How a background colour is written back: its name, or R,G,B."""
    names = {value: name for name, value in BACKGROUND_NAMES.items()}
    return names.get(tuple(colour), ",".join(str(c) for c in colour))


@dataclass
class ImageTokenizerConfig:
    """Encoder/decoder architecture (taming-transformers vocabulary), quantizer and preprocessing of one tokenizer."""

    architecture: str = "vqgan"  # one of ARCHITECTURES; config.json files written before the field are "vqgan"
    resolution: int = 64  # side of the square image the model takes, in pixels
    in_channels: int = 3  # image channels in (RGB; must be 3)
    out_channels: int = 3  # image channels out (RGB; must be 3)
    ch: int = 64  # base channel width of the encoder and decoder
    ch_mult: tuple[int, ...] = (1, 2, 2)  # level widths as multiples of ch; all levels but the last halve
    num_res_blocks: int = 2  # ResNet blocks per level
    attn_resolutions: tuple[int, ...] = ()  # feature-map sides at which the levels add self-attention
    z_channels: int = 64  # channels of the encoder output and decoder input
    dropout: float = 0.0  # dropout inside the ResNet blocks
    norm_groups: int = 32  # GroupNorm groups (every channel width must be a multiple)
    use_quant_conv: bool = True  # conv (1x1 unless quant_conv_kernel_size) z_channels -> codebook_dim before the quantizer
    use_post_quant_conv: bool = True  # the same conv codebook_dim -> z_channels after it
    use_mid_attention: bool = True  # self-attention in the middle block of encoder and decoder
    decoder_ch_mult: tuple[int, ...] | None = None  # None: the encoder's ch_mult (LlamaGen may differ)
    encoder_only: bool = False  # no decoder (Chameleon's released VQ): encode works, decode is a clear error
    temporal_downsample_factor: int = 1  # emu3: frames an image is repeated into before the temporal convs
    attention_heads: int = 1  # emu3: heads of its attention blocks (the VQGAN attention has one)
    patch_size: int = 1  # cosmos: Haar wavelet patching of this factor before the encoder (1 = none)
    downsample_levels: int | None = None  # levels that halve the side; None: every level but the last
    quant_conv_kernel_size: int = 1  # side of quant_conv's and post_quant_conv's kernels (VAR: 3); odd, padded to keep the grid
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)  # the quantizer (QuantizerConfig fields)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)  # PreprocessingConfig fields
    vit: ViTConfig | None = None  # architecture "titok": its ViT (ViTConfig fields); omitted from config.json when None

    def __post_init__(self) -> None:
        if not isinstance(self.quantizer, QuantizerConfig):
            self.quantizer = from_json_dict(QuantizerConfig, self.quantizer, "quantizer")
        if not isinstance(self.preprocessing, PreprocessingConfig):
            self.preprocessing = from_json_dict(PreprocessingConfig, self.preprocessing, "preprocessing")
        if self.vit is not None and not isinstance(self.vit, ViTConfig):
            self.vit = from_json_dict(ViTConfig, self.vit, "vit")
        self.ch_mult = tuple(self.ch_mult)
        if self.decoder_ch_mult is not None:
            self.decoder_ch_mult = tuple(self.decoder_ch_mult)
        self.attn_resolutions = tuple(self.attn_resolutions)
        self.validate()

    @property
    def halving_levels(self) -> int:
        """How many encoder levels halve the side (every level but the last unless downsample_levels says)."""
        return len(self.ch_mult) - 1 if self.downsample_levels is None else self.downsample_levels

    @property
    def downsample_factor(self) -> int:
        """Pixels per token along one side (titok: per encoder patch; its ids are no grid)."""
        if self.architecture == "titok" and self.vit is not None:
            return self.vit.encoder_patch_size
        return self.patch_size * 2**self.halving_levels

    @property
    def level_resolutions(self) -> list[int]:
        """Side of the encoder's feature map at each level (what attn_resolutions refers to)."""
        side = self.resolution // self.patch_size
        return [side // 2 ** min(level, self.halving_levels) for level in range(len(self.ch_mult))]

    @property
    def decoder_level_resolutions(self) -> list[int]:
        """Side at each decoder level as the decoder counts it (Cosmos's way): its lowest level at the side it would
        have if every level halved, doubling after each level that upsamples. The encoder's sides when every level
        but the last halves (taming's layout)."""
        levels = len(self.ch_mult)
        side = self.resolution // self.patch_size // 2 ** (levels - 1)
        sides = [0] * levels
        for level in reversed(range(levels)):
            sides[level] = side
            side *= 2 if level >= levels - self.halving_levels else 1
        return sides

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid (h, w) at the configured resolution; (1, N) for the N latent tokens of a titok model."""
        if self.architecture == "titok" and self.vit is not None:
            return (1, self.vit.num_latent_tokens)
        side = self.resolution // self.downsample_factor
        return (side, side)

    @property
    def layout(self) -> IdLayout:
        """What an image's ids are (layouts.py): a grid, scales concatenated (multiscale) or a grid with depth
        (residual), as the quantizer's kind says; a titok model's latent tokens (1d)."""
        q = self.quantizer
        if self.architecture == "titok":
            return IdLayout("1d", self.grid_size)
        if q.kind == "multiscale":
            return IdLayout("multiscale", self.grid_size, scales=q.scales)
        if q.kind == "residual":
            return IdLayout("residual", self.grid_size, depth=q.depth)
        return IdLayout("grid", self.grid_size)

    @property
    def decoder_widths(self) -> list[int]:
        """Channel width of each decoder level, full resolution first."""
        return [self.ch * m for m in (self.decoder_ch_mult or self.ch_mult)]

    @property
    def quantizer_input_dim(self) -> int:
        """Channels entering the quantizer: codebook_dim after quant_conv (or titok's conv_out), else the encoder's
        z_channels."""
        return self.quantizer.codebook_dim if self.use_quant_conv or self.architecture == "titok" else self.z_channels

    def validate(self) -> None:
        positive = ("resolution", "in_channels", "out_channels", "ch", "num_res_blocks", "z_channels", "norm_groups",
                    "temporal_downsample_factor", "attention_heads", "patch_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {shorten(value)}")
        if self.in_channels != 3 or self.out_channels != 3:
            raise ConfigError("in_channels and out_channels must be 3: image-tokenizer works on RGB images")
        if not self.ch_mult or any(m < 1 for m in self.ch_mult):
            raise ConfigError(f"ch_mult must be a non-empty list of positive integers, got {shorten(list(self.ch_mult))}")
        self._validate_bounds()
        self._validate_architecture()
        if self.resolution % self.downsample_factor:
            raise ConfigError(
                f"resolution {self.resolution} is not divisible by the downsampling factor "
                f"{self.downsample_factor} (patch_size * 2 ** downsampling levels with ch_mult={shorten(list(self.ch_mult))})"
            )
        if self.decoder_ch_mult is not None and (
            len(self.decoder_ch_mult) != len(self.ch_mult) or any(m < 1 for m in self.decoder_ch_mult)
        ):
            raise ConfigError(
                f"decoder_ch_mult {shorten(list(self.decoder_ch_mult))} must hold {len(self.ch_mult)} positive integers, "
                f"one per level of ch_mult {shorten(list(self.ch_mult))}"
            )
        for width in {self.ch * m for m in self.ch_mult} | set(self.decoder_widths):
            if width % self.norm_groups:
                raise ConfigError(f"channel width {width} (ch * ch_mult) is not divisible by norm_groups={self.norm_groups}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        resolutions = set(self.level_resolutions) | set(self.decoder_level_resolutions)
        unknown = sorted(set(self.attn_resolutions) - resolutions)
        if unknown:
            raise ConfigError(f"attn_resolutions {unknown} never occur; the encoder runs at {sorted(resolutions)}")
        if not self.use_quant_conv and self.architecture != "titok" and self.quantizer.codebook_dim > self.z_channels:
            raise ConfigError(
                f"quantizer.codebook_dim {self.quantizer.codebook_dim} exceeds z_channels {self.z_channels}"
            )
        k = self.quant_conv_kernel_size
        if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0 or k > MAX_QUANT_CONV_KERNEL:
            raise ConfigError(f"quant_conv_kernel_size must be an odd integer from 1 to {MAX_QUANT_CONV_KERNEL}, got {shorten(k)}")
        if k != 1 and not (self.use_quant_conv or self.use_post_quant_conv):
            raise ConfigError(f"quant_conv_kernel_size {k} needs a quant_conv or post_quant_conv (use_quant_conv, "
                              "use_post_quant_conv); set it to 1")
        if self.encoder_only and self.use_post_quant_conv:
            raise ConfigError("encoder_only models have no decoder, so use_post_quant_conv must be false")
        if (
            not self.encoder_only
            and self.use_quant_conv != self.use_post_quant_conv
            and self.quantizer.codebook_dim != self.z_channels
        ):
            raise ConfigError("use_quant_conv and use_post_quant_conv must agree when codebook_dim != z_channels")
        if self.architecture == "magvit2":
            self._validate_magvit2()
        self.quantizer.validate()
        self._validate_layout()
        self.preprocessing.validate()

    def _validate_bounds(self) -> None:
        """Upper bounds, so that a config from a file can't ask for sizes that overflow a count or allocate
        gigabytes before anything else is checked (issue 37). MAX_RESOLUTION can be raised on purpose."""
        if self.resolution > MAX_RESOLUTION:
            raise ConfigError(
                f"resolution {self.resolution:,} is over the limit of {MAX_RESOLUTION:,} pixels a side; raise "
                "image_tokenizer.config.MAX_RESOLUTION first if this model really works at that size"
            )
        if len(self.ch_mult) > MAX_LEVELS:
            raise ConfigError(f"ch_mult has {len(self.ch_mult):,} levels, over the limit of {MAX_LEVELS}")
        limits = {"num_res_blocks": MAX_RES_BLOCKS, "temporal_downsample_factor": MAX_RES_BLOCKS,
                  "z_channels": MAX_CHANNELS, "attention_heads": MAX_CHANNELS, "norm_groups": MAX_CHANNELS}
        for name, limit in limits.items():
            if getattr(self, name) > limit:
                raise ConfigError(f"{name} {getattr(self, name):,} is over the limit of {limit:,}")
        widest = max(self.ch * m for m in (*self.ch_mult, *(self.decoder_ch_mult or ())))
        if widest > MAX_CHANNELS:
            raise ConfigError(f"channel width {widest:,} (ch={self.ch:,} * ch_mult) is over the limit of {MAX_CHANNELS:,}")

    def _validate_layout(self) -> None:
        """multiscale and residual quantize the features themselves (no projection), multiscale up to the grid side."""
        q = self.quantizer
        if q.kind not in ("multiscale", "residual"):
            return
        if self.quantizer_input_dim != q.codebook_dim:
            raise ConfigError(f"kind {q.kind!r} quantizes the encoder's features directly: quantizer.codebook_dim "
                              f"{q.codebook_dim} must equal z_channels {self.z_channels} when use_quant_conv is false")
        problem = q.kind == "multiscale" and scales_problem(q.scales, self.grid_size)
        if problem:
            raise ConfigError(f"quantizer.scales: {problem}")

    def _validate_magvit2(self) -> None:
        """Open-MAGVIT2's encoder and decoder have no attention, no dropout and no 1x1 convs around the quantizer."""
        if self.attn_resolutions or self.use_mid_attention:
            raise ConfigError("architecture 'magvit2' has no attention: set attn_resolutions to [] and "
                              "use_mid_attention to false")
        if self.dropout:
            raise ConfigError(f"architecture 'magvit2' has no dropout, got dropout={self.dropout}")
        if self.use_quant_conv or self.use_post_quant_conv:
            raise ConfigError("architecture 'magvit2' feeds the encoder's output to the quantizer directly: set "
                              "use_quant_conv and use_post_quant_conv to false")

    def _validate_architecture(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {ARCHITECTURES}, got {shorten(self.architecture)}")
        if self.patch_size & (self.patch_size - 1):
            raise ConfigError(f"patch_size must be a power of two (Haar wavelet steps), got {self.patch_size}")
        if self.downsample_levels is not None and not 0 <= self.downsample_levels <= len(self.ch_mult):
            raise ConfigError(f"downsample_levels must be in 0..{len(self.ch_mult)} (one per level of ch_mult), "
                              f"got {self.downsample_levels}")
        if self.architecture != "cosmos" and (self.patch_size != 1 or self.downsample_levels is not None):
            raise ConfigError("patch_size and downsample_levels are Cosmos settings: use them with architecture 'cosmos'")
        if self.temporal_downsample_factor & (self.temporal_downsample_factor - 1):
            raise ConfigError(f"temporal_downsample_factor must be a power of two, got {self.temporal_downsample_factor}")
        if self.architecture != "emu3" and (self.temporal_downsample_factor != 1 or self.attention_heads != 1):
            raise ConfigError("temporal_downsample_factor and attention_heads are Emu3 settings: use them with "
                              "architecture 'emu3'")
        validate_titok(self)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name, default in OMITTED_AT_DEFAULT.items():
            if data[name] == default:
                del data[name]
        if data.get("vit") is not None:
            data["vit"] = vit_to_dict(data["vit"])
        data["grid_size"] = list(self.grid_size)  # derived; written so the file alone tells the grid
        data["layout"] = self.layout.to_dict()  # derived, likewise: what an image's ids are
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageTokenizerConfig:
        data = dict(data)
        grid = data.pop("grid_size", None)
        layout = data.pop("layout", None)
        data.pop("library_version", None)
        data.pop(FILES_SHA256, None)
        model_type = data.pop("model_type", MODEL_TYPE)  # folders saved before it was written have none
        if model_type != MODEL_TYPE:
            raise ConfigError(f"model_type is {shorten(model_type)}, not {MODEL_TYPE!r}: not an image-tokenizer folder")
        for key in [k for k in data if k in _TRANSFORMERS_KEYS]:
            data.pop(key)  # written when transformers' AutoConfig saved this config
        config = from_json_dict(cls, data, "config")
        if grid is not None and (not isinstance(grid, list) or tuple(grid) != config.grid_size):
            raise ConfigError(f"config grid_size {shorten(grid)} disagrees with the architecture's {list(config.grid_size)}")
        if layout is not None and layout != config.layout.to_dict():
            raise ConfigError(f"config layout {shorten(layout)} disagrees with the quantizer's {config.layout.to_dict()}; "
                              "remove it (it is derived) or fix quantizer")
        return config

    def save(self, directory: str | Path, files_sha256: dict[str, str] | None = None) -> Path:
        """Write config.json; files_sha256 records the other files' hashes, checked on load."""
        from . import __version__

        path = Path(directory) / CONFIG_NAME
        data = {"model_type": MODEL_TYPE, **self.to_dict(), "library_version": __version__,
                **({FILES_SHA256: files_sha256} if files_sha256 else {})}
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ImageTokenizerConfig:
        path = Path(directory) / CONFIG_NAME
        data = read_json_object(path, "tokenizer")
        try:
            return cls.from_dict(data)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None


_TRANSFORMERS_KEYS = {"transformers_version", "architectures", "dtype", "torch_dtype", "_name_or_path", "output_attentions",
                      "output_hidden_states", "return_dict", "id2label", "label2id", "problem_type",
                      "chunk_size_feed_forward", "is_encoder_decoder"}
