"""The end of a tokenizer's training run: its held-out set, the evaluation on it (usage and perplexity per scale or
depth for multiscale and residual tokenizers, `evaluation.usage_by_step`), the model card's record and the saved
final/ folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from image_tokenizer import ImageTokenizer, ImageTokenizerConfig
from image_tokenizer.data.shapes import generate_arrays
from image_tokenizer.data.sources import split_source
from image_tokenizer.data.specs import evaluation_split
from image_tokenizer.evaluation import EvalSet, evaluate_tokenizer, flat_metrics, readable_images, source_labels
from image_tokenizer.modeling import VQModel
from training.config_cli import TrainingError
from training.data import DataError, open_source

if TYPE_CHECKING:
    from training.train_tokenizer import TrainConfig


def named(errors: Any, limit: int = 5) -> str:
    """The first `limit` errors (each names its file or row) in one line, and how many more."""
    errors = list(errors)
    more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
    return "; ".join(errors[:limit]) + more


def held_out_split(config: TrainConfig) -> str:
    """The split of eval_data the final evaluation scores: eval_split, else test, then validation (one place for
    every command: data/specs.py); checked before training, so a missing split costs no steps."""
    return evaluation_split(config.eval_data, config.eval_split, flag="eval_split")


def held_out_set(config: TrainConfig, tok_config: ImageTokenizerConfig) -> tuple[EvalSet | None, str]:
    """The final evaluation's held-out set and what it is; (None, why) if there is none. Unreadable held-out images
    (undecodable, truncated, over max_pixels) are skipped and named in the set, or raise DataError with strict_data."""
    if config.eval_images <= 0:
        return None, "none (eval_images 0)"
    if config.eval_data or config.eval_fraction:
        spec, split = (config.eval_data, held_out_split(config)) if config.eval_data else (config.data, config.data_split)
        source = open_source(spec, tok_config.resolution, tok_config.preprocessing, split=split,
                             image_column=config.image_column, max_pixels=config.max_pixels,
                             min_side=tok_config.grid_size[0])  # what encode refuses is not scored either
        if not config.eval_data:
            source = split_source(source, config.eval_fraction, config.seed)[1]
        try:
            images, kept, errors = readable_images(source, min(config.eval_images, len(source)), config.strict_data)
        except DataError as error:
            raise DataError(f"unreadable held-out image (--strict-data): {error}") from None
        unreadable = f"; {len(errors)} unreadable skipped" if errors else ""
        if not images:
            return None, f"none: no readable image in {source.describe()}{unreadable}"
        eval_set = EvalSet(np.stack(images), None, len(errors), source_labels(source, kept), errors)
        return eval_set, f"{len(images)} images, {source.describe()}{unreadable}"
    if config.data != "shapes":
        return None, "none: pass eval_data or eval_fraction to measure a model trained on your own images"
    images, holes = generate_arrays(config.eval_images, seed=config.eval_seed)
    if images.shape[1] != tok_config.resolution:
        return None, f"none: shapes are 64x64, this model works at {tok_config.resolution}"
    return EvalSet(images, holes), f"{config.eval_images} shapes images, seed {config.eval_seed}"


def evaluated_card(
    tokenizer: ImageTokenizer, config: TrainConfig, steps: Any, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Evaluate on the held-out set, record metrics and the training record in tokenizer.card_info; returns
    metrics (with skipped_images when unreadable held-out images were skipped, each named in a warning)."""
    metrics: dict[str, Any] = {}
    eval_set, described = held_out_set(config, tokenizer.config)
    if eval_set is not None:
        metrics = flat_metrics(evaluate_tokenizer(tokenizer, eval_set.images, eval_set.hole_masks, labels=eval_set.labels))
        if eval_set.skipped:
            metrics["skipped_images"] = eval_set.skipped
            print(f"warning: skipped {eval_set.skipped} unreadable held-out image(s): {named(eval_set.skipped_errors)}")
    tokenizer.card_info = training_card(config, steps, described, metrics, extra)
    return metrics


def training_card(config: TrainConfig, steps: Any, described: str, metrics: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card_info of a trained tokenizer: held-out metrics and the training record."""
    data = config.data if config.data != "shapes" else f"shapes generator, seed {config.train_seed}, {config.num_train_images} images"
    return {
        "metrics": {f"heldout_{k}": v for k, v in metrics.items()},
        "training": {"data": data, "held-out set": described, "steps": steps, "batch size": config.batch_size, **(extra or {})},
    }


def finish(config: TrainConfig, tok_config: ImageTokenizerConfig, model: VQModel, out: Path, step: int,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate on the held-out set and save the tokenizer with a model card holding the metrics (and `extra` in
    its training record). The tokenizer is saved also when the evaluation cannot run (an unreadable held-out image
    under strict_data), before the error."""
    tokenizer = ImageTokenizer(tok_config, model.eval())
    command = "python " + " ".join(sys.argv) if sys.argv and sys.argv[0] else "train()"
    record = {"command": command, **(extra or {})}
    final = out / "final"
    try:
        metrics = evaluated_card(tokenizer, config, step, record)
    except DataError as error:
        tokenizer.card_info = training_card(config, step, f"not evaluated: {error}", {}, record)
        tokenizer.save_pretrained(final, model_name=config.model_name)
        raise TrainingError(f"saved {final} without held-out metrics: {error}") from None
    tokenizer.save_pretrained(final, model_name=config.model_name)
    (out / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"saved {final}; held-out metrics: {json.dumps(metrics)}")
    return {"final_dir": final, "metrics": metrics}


