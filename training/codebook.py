"""The codebook during a tokenizer's training: k-means initialisation before step 0 (every learned kind: vq, and
multiscale and residual per step through their own `kmeans_init`), the optimizer's parameter groups (the learned
codebook may take a larger learning rate than the rest) and the usage figures logged every log_every steps, per
scale or depth for the stacked kinds."""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator

from image_tokenizer.modeling import VQModel


@torch.no_grad()
def kmeans_init(model: VQModel, batches: list[torch.Tensor], iters: int, accelerator: Accelerator) -> None:
    """Set the codebook to k-means centroids of encoder outputs (the quantizer's public kmeans_init: of the
    features for vq, of every step's residuals for multiscale and residual), computed on rank 0 and broadcast so
    every process starts from the same codebook."""
    features = torch.cat([model.features(x) for x in batches])
    centroids = model.quantizer.kmeans_init(features, iters)
    if accelerator.num_processes > 1:
        torch.distributed.broadcast(centroids, src=0)
        model.quantizer.set_codebook(centroids)


def parameter_groups(model: torch.nn.Module, lr: float, codebook_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: everything at `lr`, except a codebook learned by gradient
    (quantizer.codebook as a parameter: vq, multiscale, residual without EMA) at lr x codebook_lr_scale. A coarse
    scale's codes must follow the encoder's mean feature, which moves faster early in training than Adam moves a
    code at the encoder's lr."""
    named = dict(model.named_parameters())
    codebook = named.pop("quantizer.codebook", None)
    if codebook is None or codebook_lr_scale == 1.0:
        return [{"params": list(model.parameters()), "lr": lr}]
    return [{"params": list(named.values()), "lr": lr}, {"params": [codebook], "lr": lr * codebook_lr_scale}]


def usage_logs(quantizer_output: Any, quantizer: Any) -> dict[str, torch.Tensor]:
    """The batch's codebook usage and perplexity, and for multiscale and residual each step's ("usage[scale 4x4]",
    "perplexity[depth 0]"), as device tensors (read back only when the row is written)."""
    logs = {"usage": quantizer_output.usage, "perplexity": quantizer_output.perplexity}
    if quantizer_output.step_usage is not None:
        for label, usage, perplexity in zip(quantizer.step_labels, quantizer_output.step_usage,
                                            quantizer_output.step_perplexity):
            logs[f"usage[{label}]"] = usage
            logs[f"perplexity[{label}]"] = perplexity
    return logs
