"""Helpers shared by tests (importable, unlike conftest)."""

from image_tokenizer import ImageTokenizerConfig, QuantizerConfig


def tiny_config(**quantizer) -> ImageTokenizerConfig:
    """16x16 images -> 8x8 grid, a 64-code codebook: milliseconds per forward pass."""
    q = {"codebook_size": 64, "codebook_dim": 4, **quantizer}
    return ImageTokenizerConfig(
        resolution=16,
        ch=16,
        ch_mult=(1, 2),
        num_res_blocks=1,
        z_channels=8,
        norm_groups=8,
        attn_resolutions=(8,),
        quantizer=QuantizerConfig(**q),
    )
