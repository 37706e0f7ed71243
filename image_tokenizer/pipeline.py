"""A transformers pipeline task, "image-tokenization": pipeline(...)(images) -> token ids.

    from transformers import pipeline
    import image_tokenizer.pipeline  # registers the task
    tokenize = pipeline("image-tokenization", model=ImageTokenizer.from_pretrained("shapes-64"), device="cpu")
    tokenize(["a.png", "b.png"])     # [{"input_ids": LongTensor [h, w]}, ...]
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .tokenizer import ImageTokenizer

TASK = "image-tokenization"


class ImageTokenizationPipeline(Pipeline):
    """Images (paths, PIL, arrays, tensors) -> {"input_ids": [h, w] LongTensor} per image."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model: ImageTokenizer | str, device: Any = None, **kwargs: Any):
        if isinstance(model, str):
            model = ImageTokenizer.from_pretrained(model)
        if not isinstance(model, ImageTokenizer):
            raise TypeError(f"image-tokenization needs an ImageTokenizer (or its name/path), got {type(model).__name__}")
        self.image_tokenizer = model
        super().__init__(model=model.model, device=device if device is not None else -1, **kwargs)
        self.image_tokenizer.to(self.device)

    def _sanitize_parameters(self, native_size: bool | None = None, **kwargs: Any):
        forward = {} if native_size is None else {"native_size": native_size}
        return {}, forward, {}

    def preprocess(self, image: Any) -> dict[str, Any]:
        return {"image": image}

    def _forward(self, inputs: dict[str, Any], native_size: bool = False) -> dict[str, torch.Tensor]:
        return {"input_ids": self.image_tokenizer.encode(inputs["image"], native_size=native_size)}

    def postprocess(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"input_ids": outputs["input_ids"].cpu()}


def register() -> None:
    if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ImageTokenizationPipeline, pt_model=(), type="image")


register()
