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


def tiny_titok_config(**vit) -> ImageTokenizerConfig:
    """A TiTok-style ViT tokenizer on 16x16 images: 4x4 patches, 6 latent tokens (the 1d layout), 64 codes."""
    return ImageTokenizerConfig(
        architecture="titok",
        resolution=16,
        use_quant_conv=False,
        use_post_quant_conv=False,
        use_mid_attention=False,
        vit={"num_latent_tokens": 6, "encoder_width": 16, "encoder_layers": 1, "encoder_heads": 2, "decoder_width": 16,
             "decoder_layers": 1, "decoder_heads": 2, "encoder_patch_size": 4, "decoder_patch_size": 4, **vit},
        quantizer=QuantizerConfig(codebook_size=64, codebook_dim=4),
    )


def write_webdataset(folder, shards: int, per_shard: int, bad: tuple[str, ...] = (), side: int = 20) -> list[str]:
    """WebDataset tar shards `00000.tar`...: per sample KEY.png (random pixels; b"not an image" for a key in
    `bad`), KEY.txt and KEY.json; returns the sample keys in order."""
    import io
    import json
    import tarfile

    import numpy as np
    from PIL import Image

    rng, keys = np.random.default_rng(0), []
    for shard in range(shards):
        with tarfile.open(f"{folder}/{shard:05d}.tar", "w") as tar:
            for index in range(per_shard):
                key = f"{shard:05d}{index:04d}"
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
                members = {"png": b"not an image" if key in bad else buffer.getvalue(), "txt": f"caption {key}".encode(),
                           "json": json.dumps({"width": side, "source": key}).encode()}
                for member, payload in members.items():
                    info = tarfile.TarInfo(f"{key}.{member}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                keys.append(key)
    return keys
