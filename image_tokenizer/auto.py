"""transformers' Auto classes for our folders, registered through transformers' public `register` APIs (no
remote code): `AutoConfig`, `AutoModel` (the VQ model) and `AutoTokenizer` (the ImageTokenizer).

Registration happens when both `image_tokenizer` and `transformers` are imported, in either order
(`image_tokenizer/__init__.py` through `lazy_imports.call_when_imported`). A saved folder's config.json carries
`"model_type": "image_tokenizer"`; that is all transformers needs to find these classes. The weights live in
two files (model.safetensors and codebook.safetensors, the vocabulary), so `AutoModel` loads through
`ImageTokenizer.from_pretrained`, with its strict checks, rather than through PreTrainedModel's loader.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedConfig

from .config import MODEL_TYPE, ImageTokenizerConfig
from .modeling import VQModel
from .tokenizer import ImageTokenizer


class ImageTokenizerHFConfig(PreTrainedConfig):
    """config.json as transformers sees it: our fields as attributes (see ImageTokenizerConfig)."""

    model_type = MODEL_TYPE

    def image_tokenizer_config(self) -> ImageTokenizerConfig:
        names = {f.name for f in fields(ImageTokenizerConfig)}
        return ImageTokenizerConfig.from_dict({k: v for k, v in self.to_dict().items() if k in names})


@functools.cache
def model_class() -> type:
    """The transformers model class, built on first use: importing transformers' modeling stack costs about
    4 s, which `import image_tokenizer` (and every CLI call) should not pay for a class most users never touch."""
    from transformers import PreTrainedModel
    from transformers.utils import ModelOutput

    @dataclass
    class ImageTokenizerModelOutput(ModelOutput):
        reconstruction: torch.Tensor | None = None  # [B, 3, H, W], normalised pixels
        ids: torch.Tensor | None = None  # [B, h, w] codebook ids

    class ImageTokenizerModel(PreTrainedModel):
        """The VQ model as a transformers model: forward(pixel_values) -> reconstruction and ids."""

        config_class = ImageTokenizerHFConfig
        main_input_name = "pixel_values"
        base_model_prefix = "vq"

        def __init__(self, config: ImageTokenizerHFConfig, vq: VQModel | None = None):
            super().__init__(config)
            self.vq = vq if vq is not None else VQModel(config.image_tokenizer_config())

        def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> ImageTokenizerModelOutput:
            output = self.vq(pixel_values)
            return ImageTokenizerModelOutput(reconstruction=output.reconstruction, ids=output.quantizer.ids)

        @classmethod
        def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> ImageTokenizerModel:
            tokenizer = ImageTokenizer.from_pretrained(pretrained_model_name_or_path, **_hub_kwargs(kwargs))
            config = ImageTokenizerHFConfig(**tokenizer.config.to_dict())
            model = cls(config, vq=tokenizer.model).eval()
            model.image_tokenizer = tokenizer  # vocabulary and preprocessing, for the image-tokenization pipeline
            return model

    return ImageTokenizerModel


class ImageTokenizerModelLoader:
    """What AutoModel holds for our model_type: it hands over to model_class() on first use."""

    config_class = ImageTokenizerHFConfig

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        return model_class().from_pretrained(*args, **kwargs)

    @classmethod
    def _from_config(cls, config: ImageTokenizerHFConfig, **kwargs: Any) -> Any:
        return model_class()(config)

    from_config = _from_config


def _hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    keep = ("revision", "cache_dir", "token", "local_files_only", "device", "dtype", "torch_dtype")
    return {k: v for k, v in kwargs.items() if k in keep and v is not None}


def register() -> None:
    """Make AutoConfig, AutoModel and AutoTokenizer know our model_type (idempotent)."""
    AutoConfig.register(MODEL_TYPE, ImageTokenizerHFConfig, exist_ok=True)
    AutoModel.register(ImageTokenizerHFConfig, ImageTokenizerModelLoader, exist_ok=True)
    AutoTokenizer.register(ImageTokenizerHFConfig, tokenizer_class=ImageTokenizer, exist_ok=True)
