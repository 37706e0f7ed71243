"""A transformers pipeline task, "image-tokenization": pipeline(...)(images) -> token ids.

    from transformers import pipeline
    import image_tokenizer.pipeline  # registers the task
    tokenize = pipeline("image-tokenization")                                        # the bundled shapes-64
    tokenize = pipeline("image-tokenization", model="my-tokenizer/", device="cpu")   # a folder (or Hub id)
    tokenize = pipeline("image-tokenization", model=ImageTokenizer.from_pretrained("shapes-64-small"))
    tokenize(["a.png", "b.png"], batch_size=2)     # [{"input_ids": LongTensor [h, w]}, ...]; lists, generators, datasets

Images are preprocessed one by one (files decoded, resized) and batched as pixel tensors, so `batch_size`
batches the model; the ids are those of `tok.encode`. Batching needs equal sizes (always so unless native_size).
A bundled name as a string cannot work: transformers' `pipeline()` resolves strings itself (a folder, else the
Hub) before this class sees them, so bundled models are passed loaded, or as the task's default.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .errors import InvalidRequestError
from .hub import PRETRAINED_DIR
from .tokenizer import ImageTokenizer

TASK = "image-tokenization"
DEFAULT_MODEL = PRETRAINED_DIR / "shapes-64"  # what pipeline("image-tokenization") loads: a folder, so no Hub call


class ImageTokenizationPipeline(Pipeline):
    """Images (paths, PIL, arrays, tensors) -> {"input_ids": [h, w] LongTensor} per image."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model: Any, device: Any = None, **kwargs: Any):
        if isinstance(model, (str, os.PathLike)):
            model = ImageTokenizer.from_pretrained(model)
        model = getattr(model, "image_tokenizer", model)  # what transformers' pipeline() loads through AutoModel
        if not isinstance(model, ImageTokenizer):
            raise InvalidRequestError(f"image-tokenization needs an ImageTokenizer (or its name/path), got {type(model).__name__}")
        self.image_tokenizer = model
        super().__init__(model=model.model, device=device if device is not None else -1, **kwargs)
        self.image_tokenizer.to(self.device)

    def _sanitize_parameters(self, native_size: bool | None = None, **kwargs: Any):
        preprocess = {} if native_size is None else {"native_size": native_size}
        return preprocess, {}, {}

    def preprocess(self, image: Any, native_size: bool = False) -> dict[str, torch.Tensor]:
        tensors, _ = self.image_tokenizer.preprocess([image], native_size=native_size)
        return {"pixel_values": tensors[0].unsqueeze(0)}

    def _forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.image_tokenizer.encode_pixels(inputs["pixel_values"])}

    def postprocess(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids = outputs["input_ids"]
        return {"input_ids": (ids[0] if ids.ndim == 3 else ids).cpu()}

    def get_iterator(self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params, postprocess_params):
        """transformers' iterator, with a collate function that stacks pixel tensors (transformers' own needs a
        text tokenizer or a feature extractor to batch)."""
        from collections.abc import Sized

        from torch.utils.data import DataLoader
        from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            dataset, num_workers = PipelineIterator(inputs, self.preprocess, preprocess_params), min(num_workers, 1)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=_stack_pixels)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Saves the tokenizer (config, weights, codebook, vocabulary, card), which is all this pipeline needs."""
        self.image_tokenizer.save_pretrained(save_directory)


def _stack_pixels(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    shapes = {tuple(item["pixel_values"].shape[1:]) for item in items}
    if len(shapes) > 1:
        raise InvalidRequestError(f"images of different sizes {sorted(shapes)} cannot share a batch; use batch_size=1 with native_size")
    return {"pixel_values": torch.cat([item["pixel_values"] for item in items])}


def register() -> None:
    if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ImageTokenizationPipeline, pt_model=(AutoModel,), type="image",
                                            default={"model": (str(DEFAULT_MODEL), None)})


register()
