"""Evaluate a tokenizer on a held-out set: PSNR, SSIM, codebook usage and perplexity, hole recall, the PSNR/SSIM of
each label (an emoji's style and group) where the set has labels, and for multiscale and residual tokenizers the
usage and perplexity of each scale or depth (`usage_by_step`), where collapse hides.

Transparent pixels are composited onto one `background` (default white) before both the model and the score,
whatever the model's own alpha_background, so two models are scored on the same pixels; how many images are
then a single colour (blank: e.g. black line art on black) is reported, never dropped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import WHITE
from .inputs import as_uint8_images
from .metrics import codebook_usage, hole_recall, psnr, ssim, step_usage

if TYPE_CHECKING:
    from .tokenizer import ImageTokenizer


def evaluate_tokenizer(
    tokenizer: ImageTokenizer,
    images: np.ndarray,
    hole_masks: np.ndarray | None = None,
    batch_size: int = 64,
    progress: bool = False,
    labels: dict[str, Sequence[str]] | None = None,
    background: Sequence[int] = WHITE,
) -> dict[str, Any]:
    """Reconstruct uint8 images [N, H, W, 3] (already at the tokenizer's resolution) and score them; with
    labels (e.g. {"style": [...], "group": [...]}, one per image) also per label value, under "by_<name>".
    RGBA images [N, H, W, 4] are first composited onto `background`; "blank_images" counts single-colour ones.
    Multiscale and residual tokenizers also get "usage_by_step": one entry per scale or depth (metrics.step_usage)."""
    images = as_uint8_images(composite_rgba(images, background), "evaluate_tokenizer").numpy(force=True)
    counts = torch.zeros(tokenizer.vocab_size, dtype=torch.float64)
    reconstructions, all_ids = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="evaluating", disable=not progress):
        batch = images[start : start + batch_size]
        ids = tokenizer.encode(batch)
        counts += torch.bincount(ids.reshape(-1), minlength=tokenizer.vocab_size).double()
        all_ids.append(ids)
        reconstructions.append(tokenizer.decode(ids, output_type="np"))
    usage, perplexity = codebook_usage(counts)
    reconstructions = np.concatenate(reconstructions)
    results: dict[str, Any] = reconstruction_metrics(images, reconstructions, hole_masks)
    results.update(codebook_usage=usage, perplexity=perplexity, blank_images=count_blank(images))
    if tokenizer.layout.kind in ("multiscale", "residual") and all_ids:  # a grid or 1d layout has one step
        results["usage_by_step"] = usage_by_step(tokenizer, torch.cat(all_ids))
    for name, values in (labels or {}).items():
        results[f"by_{name}"] = metrics_by_label(images, reconstructions, values)
    return results


def usage_by_step(tokenizer: ImageTokenizer, ids: torch.Tensor) -> list[dict[str, Any]]:
    """Each scale's (multiscale) or depth's (residual) codebook use over ids [N, ...] in the tokenizer's layout."""
    quantizer = tokenizer.model.quantizer
    steps = quantizer.step_ids(ids)
    counts = torch.stack([torch.bincount(step.reshape(-1), minlength=tokenizer.vocab_size) for step in steps])
    return step_usage(counts, quantizer.step_labels, [step.numel() for step in steps])


def flat_step_usage(rows: list[dict[str, Any]], digits: int = 4) -> dict[str, Any]:
    """usage_by_step for a card or a log line: "usage[scale 4x4]", "perplexity[scale 4x4]" and "collapsed_steps"
    (the collapsed scales or depths by name, or "none")."""
    flat: dict[str, Any] = {}
    for row in rows:
        flat[f"usage[{row['step']}]"] = round(row["usage"], digits)
        flat[f"perplexity[{row['step']}]"] = round(row["perplexity"], 2)
    flat["collapsed_steps"] = ", ".join(row["step"] for row in rows if row["collapsed"]) or "none"
    return flat


def composite_rgba(images: Any, background: Sequence[int] = WHITE) -> Any:
    """uint8 RGBA arrays [N, H, W, 4] -> RGB [N, H, W, 3] composited onto background as to_rgb does it (PIL's
    alpha_composite); anything else is returned as it is."""
    from PIL import Image

    from .image_processing import to_rgb

    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 4 or images.dtype != np.uint8:
        return images
    return np.stack([np.asarray(to_rgb(Image.fromarray(image, "RGBA"), background)) for image in images])


def count_blank(images: np.ndarray) -> int:
    """How many uint8 images [N, H, W, C] are a single colour (after compositing: e.g. black line art on black)."""
    images = np.asarray(images)
    if not len(images):
        return 0
    return int((images == images[:, :1, :1]).all(axis=(1, 2, 3)).sum())


def flat_metrics(metrics: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    """Metrics for a card: floats rounded, each "by_<name>" breakdown as "psnr_db[<value>]" / "ssim[<value>]", and
    usage_by_step as "usage[<step>]" / "perplexity[<step>]" / "collapsed_steps"."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if key == "usage_by_step":
            flat.update(flat_step_usage(value, digits))
        elif key.startswith("by_") and isinstance(value, dict):
            for label, numbers in value.items():
                flat.update({f"{name}[{label}]": round(numbers[name], digits) for name in ("psnr_db", "ssim")})
        else:
            flat[key] = round(value, digits) if isinstance(value, float) else value
    return flat


def metrics_by_label(images: np.ndarray, recon: np.ndarray, values: Sequence[str]) -> dict[str, dict[str, float]]:
    """{label value: number of images, mean PSNR and SSIM} over the images that carry it, in first-seen order."""
    values = np.asarray(values)
    if len(values) != len(images):
        raise ValueError(f"{len(values)} labels for {len(images)} images")
    return {str(value): reconstruction_metrics(images[values == value], recon[values == value])
            for value in dict.fromkeys(values.tolist())}


def reconstruction_metrics(images: np.ndarray, recon: np.ndarray, hole_masks: np.ndarray | None = None) -> dict[str, float]:
    """PSNR (a perfect image counts as 100 dB), SSIM and, with hole masks, hole recall of uint8 reconstructions."""
    results = {
        "num_images": len(images),
        "psnr_db": float(np.mean(np.minimum(psnr(images, recon), 100.0))),
        "ssim": float(np.mean(ssim(images, recon))),
    }
    if hole_masks is not None:
        results["hole_recall"] = hole_recall(recon, hole_masks)
    return results


BREAKDOWN_COLUMNS = ("style", "group")  # dataset columns that metrics are also reported by (the emoji source's)


@dataclass
class EvalSet:
    """A held-out set: images [N, H, W, 3], hole masks (shapes, or a folder whose metadata.jsonl lists
    hole_pixels), how many unreadable items were skipped (and why, one line each naming the file or row),
    per-image labels to break metrics down by, and the split it is (None: a source without splits, read whole)."""

    images: np.ndarray
    hole_masks: np.ndarray | None = None
    skipped: int = 0
    labels: dict[str, list[str]] = field(default_factory=dict)
    skipped_errors: list[str] = field(default_factory=list)
    split: str | None = None


def readable_images(source: Any, count: int, strict: bool = False) -> tuple[list[np.ndarray], list[int], list[str]]:
    """The readable ones of a source's first `count` items, their indices, and the error of each unreadable one
    skipped (undecodable, truncated, over the pixel budget); with strict, the first such error is raised."""
    from .data.sources import DataError

    images, kept, errors = [], [], []
    for index in range(count):
        try:
            images.append(source.load(index))
            kept.append(index)
        except DataError as error:
            if strict:
                raise
            errors.append(str(error))
    return images, kept, errors


def source_labels(source: Any, rows: Sequence[int]) -> dict[str, list[str]]:
    """The BREAKDOWN_COLUMNS labels of these rows of a dataset source (an emoji's style and group); {} for a
    source without them (shapes, folders)."""
    dataset = getattr(source, "dataset", None)
    labels: dict[str, list[str]] = {}
    for name in BREAKDOWN_COLUMNS:
        if dataset is not None and name in dataset.column_names:
            column = dataset[name]  # read once, not once per row
            labels[name] = [str(column[i]) for i in rows]
    return labels


def load_eval_set(
    spec: str, resolution: int, preprocessing: Any, num: int = 1000, seed: int = 1, split: str | None = None,
    image_column: str = "image", strict: bool = False, *, max_pixels: int | None = None, min_side: int = 1,
    background: Sequence[int] = WHITE,
) -> EvalSet:
    """The first `num` readable images of a held-out set (0 = all): `shapes` (the generator, seed 1), `emoji`,
    an image folder, a saved dataset or hf:NAME. The split is `split`, else test, then validation
    (data/specs.evaluation_split); a source without splits is read whole. An image over max_pixels, or with a
    side under min_side (the tokenizer's token grid, which `encode` needs), is skipped and named (or raised,
    with strict). Transparent pixels are composited onto `background` (not the model's own alpha_background),
    so every model is given and scored on the same pixels."""
    import dataclasses

    from .data.shapes import generate_arrays
    from .data.sources import DataError, FolderSource, open_source
    from .data.specs import evaluation_split, parse_spec
    from .data.splits import UNDIVIDED

    parsed = parse_spec(spec)
    if parsed.kind == "shapes":
        if resolution != 64:
            raise DataError(
                f"the shapes evaluation set is 64x64 (with 64x64 hole masks), but this tokenizer works at "
                f"{resolution}x{resolution}; evaluate it on an image folder or dataset instead"
            )
        if num < 1:
            raise DataError("--num must be at least 1 for the shapes set (it is generated, not read)")
        images, masks = generate_arrays(num, seed=seed)
        return EvalSet(images, masks)
    preprocessing = dataclasses.replace(preprocessing, alpha_background=tuple(background))
    chosen = evaluation_split(parsed, split)
    source = open_source(parsed, resolution, preprocessing, split=chosen, image_column=image_column,
                         max_pixels=max_pixels, min_side=min_side)
    images, kept, errors = readable_images(source, min(num, len(source)) if num > 0 else len(source), strict)
    if not images:
        raise DataError(f"no readable images in {source.describe()}")
    masks = folder_hole_masks(source, kept, resolution) if isinstance(source, FolderSource) else None
    undivided = split is None and chosen == UNDIVIDED  # the default is test or validation wherever there are splits
    return EvalSet(np.stack(images), masks, len(errors), source_labels(source, kept), errors, None if undivided else chosen)


def folder_hole_masks(source: Any, kept: Sequence[int], resolution: int) -> np.ndarray | None:
    """Hole masks [N, res, res] of these files of a folder whose metadata.jsonl lists `hole_pixels` for every one
    of them (a folder written by `image-tokenizer shapes`); None otherwise."""
    import json

    metadata = source.root / "metadata.jsonl"
    if not metadata.is_file():
        return None
    holes = {}
    for line in metadata.read_text().splitlines():
        row = json.loads(line)
        if "hole_pixels" in row:
            holes[row["file_name"]] = row["hole_pixels"]
    names = [source.files[i].relative_to(source.root).as_posix() for i in kept]
    if not all(name in holes for name in names):
        return None
    masks = np.zeros((len(names), resolution, resolution), dtype=bool)
    for i, name in enumerate(names):
        for y, x in holes[name]:
            masks[i, y, x] = True
    return masks
