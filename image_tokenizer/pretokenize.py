"""Pre-tokenization: a `datasets` dataset of images becomes a dataset of token ids, with Dataset.map.

Output columns: `input_ids` (row-major codebook ids in the smallest unsigned type that holds the codebook:
uint16 up to 65,536 codes), `grid_h`, `grid_w`, `source_index` (the input row it came from), optionally
`flipped`, and every non-image column passed through. The map's cache fingerprint includes a hash of the tokenizer's weights, so a different tokenizer
never reuses stale results.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import ImageTokenizerError, PretokenizeError
from .fileio import atomic_write_text
from .image_processing import decode_cell

ERROR_COLUMN = "__pretokenize_error"
SOURCE_INDEX = "source_index"  # the input row an output row came from: which file, for an image folder




def ids_dtype(codebook_size: int) -> str:
    """Smallest unsigned integer type that holds every id 0..codebook_size-1."""
    if codebook_size <= 2**8:
        return "uint8"
    if codebook_size <= 2**16:
        return "uint16"
    return "uint32"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 over the config and every weight tensor: equal only for identical tokenizers."""
    digest = hashlib.sha256(json.dumps(tokenizer.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(tokenizer.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


class _Tokenize:
    """The batched map function (a class, so datasets can pickle it into worker processes)."""

    def __init__(self, tokenizer: Any, image_column: str, flip: bool, skip_bad: bool, device: str | None, dtype: str):
        self.tokenizer, self.image_column, self.flip, self.skip_bad = tokenizer, image_column, flip, skip_bad
        self.device, self.dtype = device, dtype
        self.parent_pid = os.getpid()

    def __call__(self, batch: dict[str, list], indices: list[int], rank: int | None = None) -> dict[str, list]:
        if os.getpid() != self.parent_pid and torch.get_num_threads() != 1:
            # A forked worker must not reuse the parent's OpenMP pool (it can deadlock); one thread per
            # process is also the right split when num_proc processes share the cores.
            torch.set_num_threads(1)
        device = self.device
        if device == "cuda" and rank is not None and torch.cuda.is_available():
            device = f"cuda:{rank % torch.cuda.device_count()}"
        if device is not None and str(self.tokenizer.device) != device:
            self.tokenizer.to(device)
        images, good, errors = [], [], {}
        for row, (index, cell) in enumerate(zip(indices, batch[self.image_column])):
            try:
                images.append(decode_cell(cell))
                good.append(row)
            except Exception as error:  # PIL raises many types for bad bytes
                errors[row] = keep_or_stop(decode_error(index, error), self.skip_bad)
        grids, flipped = {}, {}
        if images:
            grids = dict(zip(good, [g.numpy() for g in self.tokenizer.encode(images)]))  # stacked, or a list for mixed sizes
            if self.flip:
                mirrored = self.tokenizer.encode([im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in images])
                flipped = dict(zip(good, [g.numpy() for g in mirrored]))
        return assemble_rows(batch, indices, self.image_column, grids, flipped if self.flip else None, errors, self.dtype)


class _AttachIds:
    """The map function of the DataLoader path: rows get the ids encoded beforehand (batch_loading.encode_rows)."""

    def __init__(self, ids: np.ndarray, mirrored: np.ndarray | None, errors: dict[int, str], grid: tuple[int, int],
                 image_column: str, dtype: str):
        self.ids, self.mirrored, self.errors, self.grid = ids, mirrored, errors, grid
        self.image_column, self.dtype = image_column, dtype

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        good = {row: index for row, index in enumerate(indices) if index not in self.errors}
        grids = {row: self.ids[index].reshape(self.grid) for row, index in good.items()}
        flipped = None if self.mirrored is None else {row: self.mirrored[index].reshape(self.grid) for row, index in good.items()}
        errors = {row: self.errors[index] for row, index in enumerate(indices) if index in self.errors}
        return assemble_rows(batch, indices, self.image_column, grids, flipped, errors, self.dtype)


def decode_error(index: int, error: Exception) -> str:
    """Why row `index` has no image, as the report lists it."""
    return f"row {index}: cannot decode image ({type(error).__name__}: {error})"


def keep_or_stop(message: str, skip_bad: bool) -> str:
    """An undecodable row is kept in the report with skip_bad, else it stops the run."""
    if not skip_bad:
        raise PretokenizeError(message + "; pass skip_bad=True (--skip-bad) to skip such rows") from None
    return message


def assemble_rows(
    batch: dict[str, list], indices: list[int], image_column: str, grids: dict[int, np.ndarray],
    flipped: dict[int, np.ndarray] | None, errors: dict[int, str], dtype: str,
) -> dict[str, list]:
    """Output rows for a batch of input rows: the ids of each (and its mirror after it when flipped is not
    None), the passthrough columns, and the error of a row that could not be decoded (filtered out later)."""
    out: dict[str, list] = {key: [] for key in batch if key != image_column}
    out.update(input_ids=[], grid_h=[], grid_w=[], **({"flipped": []} if flipped is not None else {}), **{ERROR_COLUMN: []})
    tracked = SOURCE_INDEX not in batch  # the input row each output row came from (streaming adds it earlier)
    if tracked:
        out[SOURCE_INDEX] = []
    for row in range(len(indices)):
        variants = [(grids.get(row), False)] + ([(flipped.get(row), True)] if flipped is not None else [])
        for grid, is_flipped in variants:
            for key in batch:
                if key != image_column:
                    out[key].append(batch[key][row])
            if grid is None:
                out["input_ids"].append(np.zeros(0, dtype=dtype))
                out["grid_h"].append(0)
                out["grid_w"].append(0)
            else:
                out["input_ids"].append(grid.reshape(-1).astype(dtype))
                out["grid_h"].append(grid.shape[0])
                out["grid_w"].append(grid.shape[1])
            if flipped is not None:
                out["flipped"].append(is_flipped)
            if tracked:
                out[SOURCE_INDEX].append(indices[row])
            out[ERROR_COLUMN].append(errors.get(row, ""))
    return out


def pretokenize(
    dataset: Any,
    tokenizer: Any,
    image_column: str = "image",
    batch_size: int | None = None,
    num_proc: int | None = None,
    device: str | None = None,
    flip: bool = False,
    skip_bad: bool = False,
    return_report: bool = False,
    load_from_cache_file: bool = True,
    num_workers: int | None = None,
) -> Any:
    """Tokenize every image of a `datasets.Dataset`; returns the token dataset (and a skip report if asked).

    num_proc > 1 runs several CPU processes, each decoding and encoding its rows. num_workers (the default on
    a GPU: up to 8) decodes in that many DataLoader workers instead, and this process encodes large uint8
    batches on its device (batch_loading.py); the ids are the same. Several GPUs: one process per GPU, each
    on its part (--streaming --num-nodes/--node-rank), or num_proc = number of GPUs with device="cuda".
    Undecodable or missing images stop the run with the row named, unless skip_bad=True, which drops them
    and lists them in the report. batch_size: rows per map call (default 64), or per DataLoader batch (default
    four of the device's micro-batches, so a GPU never encodes a padded one).
    """
    import datasets

    if image_column not in dataset.column_names:
        raise PretokenizeError(f"no column {image_column!r}; the dataset has columns {dataset.column_names}")
    if isinstance(dataset.features.get(image_column), datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))  # decode per row, ourselves
    dtype = ids_dtype(tokenizer.vocab_size)
    if num_workers is None and device is not None and device.startswith("cuda") and (num_proc or 1) == 1:
        num_workers = min(8, os.cpu_count() or 1)
    if num_workers is not None:
        from .batch_loading import encode_rows

        if device is not None:
            tokenizer.to(device)
        side = tokenizer.config.resolution
        batch_size = batch_size or max(64, 4 * tokenizer.micro_batch_for(side, side))
        ids, mirrored, errors = encode_rows(dataset, tokenizer, image_column, flip, skip_bad, batch_size, num_workers, dtype)
        function: Any = _AttachIds(ids, mirrored, errors, tokenizer.grid_size, image_column, dtype)
        num_proc, device = None, None
    else:
        function = _Tokenize(tokenizer, image_column, flip, skip_bad, device, dtype)
    fingerprint = hashlib.sha256(
        "|".join([dataset._fingerprint, tokenizer_fingerprint(tokenizer), image_column, str(flip), str(skip_bad), dtype]).encode()
    ).hexdigest()[:32]
    mapped = dataset.map(
        function,
        batched=True,
        batch_size=batch_size or 64,
        with_indices=True,
        with_rank=device == "cuda",
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        features=_token_features(dataset.features, image_column, flip, dtype),
        new_fingerprint=fingerprint,
        load_from_cache_file=load_from_cache_file,
        desc="pretokenize",
    )
    result, bad = _without_bad_rows(mapped)
    if return_report:
        report = {"rows_in": len(dataset), "rows_out": len(result), "skipped": len(bad) // (2 if flip else 1), "errors": bad}
        return result, report
    return result


def _token_features(source: Any, image_column: str, flip: bool, dtype: str) -> Any:
    """The output schema: every source column but the image, then the ids, grid, source row, mirror flag
    and the (temporary) error column."""
    import datasets

    passthrough = {k: v for k, v in source.items() if k != image_column}
    return datasets.Features(
        {
            **passthrough,
            "input_ids": datasets.List(datasets.Value(dtype)),
            "grid_h": datasets.Value("int32"),
            "grid_w": datasets.Value("int32"),
            **({SOURCE_INDEX: datasets.Value("int64")} if SOURCE_INDEX not in passthrough else {}),
            **({"flipped": datasets.Value("bool")} if flip else {}),
            ERROR_COLUMN: datasets.Value("string"),
        }
    )


def _without_bad_rows(mapped: Any) -> tuple[Any, list[str]]:
    """Drop the rows whose image could not be read (skip_bad) and the error column; returns their messages."""
    bad = [message for message in mapped[ERROR_COLUMN] if message]
    if bad:
        mapped = mapped.filter(lambda message: message == "", input_columns=ERROR_COLUMN)
    return mapped.remove_columns(ERROR_COLUMN), bad


INFO_NAME = "pretokenize_info.json"
STATE_NAME = "pretokenize_state.json"
REPORT_NAME = "skipped_rows.json"


def load_image_dataset(spec: str, split: str = "train", num: int = 1000, seed: int = 0) -> Any:
    """`shapes` (the generator), an image folder (metadata.jsonl columns come along), a dataset saved with
    save_to_disk, or `hf:NAME` (load_dataset, honouring HF_HUB_OFFLINE)."""

    from .data.sources import DataError, image_folder_dataset, load_dataset_spec

    if spec == "shapes":
        from .data.shapes import to_dataset

        return to_dataset(num, seed=seed)
    try:
        dataset = load_dataset_spec(spec, split)
    except DataError as error:
        raise PretokenizeError(str(error)) from None
    if dataset is not None:
        return dataset
    try:
        return image_folder_dataset(spec)
    except DataError as error:
        raise PretokenizeError(str(error)) from None


def write_token_dataset(
    tokens: Any, output: str, fmt: str, info: dict[str, Any], overwrite: bool, report: dict[str, Any] | None
) -> None:
    """Write atomically: into a temporary sibling folder, then one rename. An output folder that already
    holds another dataset is refused unless overwrite; the same inputs and tokenizer are a no-op."""
    from pathlib import Path

    target = Path(output)
    if target.exists() and any(target.iterdir()):
        existing = target / INFO_NAME
        same = existing.is_file() and json.loads(existing.read_text()).get("fingerprint") == info["fingerprint"]
        if not same and not overwrite:
            raise PretokenizeError(f"{target} already holds a different dataset; pass --overwrite to replace it")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if fmt == "arrow":
            tokens.save_to_disk(str(tmp))
        elif fmt == "parquet":
            tmp.mkdir(parents=True)
            tokens.to_parquet(str(tmp / "data.parquet"))
        else:
            raise PretokenizeError(f"format must be 'arrow' or 'parquet', got {fmt!r}")
        atomic_write_text(tmp / INFO_NAME, json.dumps(info, indent=2) + "\n")
        if report is not None:
            atomic_write_text(tmp / REPORT_NAME, json.dumps(report, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pretokenize_streaming(
    dataset: Any,
    tokenizer: Any,
    output_dir: str,
    image_column: str = "image",
    shard_size: int = 10000,
    batch_size: int = 64,
    flip: bool = False,
    skip_bad: bool = False,
    source: str = "",
    overwrite: bool = False,
    progress: bool = True,
    node: Any = None,
) -> dict[str, Any]:
    """Tokenize an IterableDataset (or a Dataset) into parquet shards of `shard_size` input rows.

    Each shard is written under a temporary name and renamed when complete, so a partial shard is never
    visible. Run it again after an interruption and it skips the complete shards' rows and goes on; a
    folder holding shards of another source or tokenizer is refused unless overwrite. With `node`
    (a streaming.NodeSpec), this worker takes only its part of the input (see image_tokenizer.streaming).
    Returns the summary written to pretokenize_info.json; read the result with
    load_dataset("parquet", data_dir=f"{output_dir}/data") once the run (or the node merge) is complete."""
    from .streaming import NodeFolder, NodeSpec, check_sharding, exclusive, merge_nodes

    node = node or NodeSpec()
    if shard_size < 1 or batch_size < 1:
        raise PretokenizeError(f"shard_size and batch_size must be positive, got {shard_size} and {batch_size}")
    folder = NodeFolder(output_dir, node)
    identity = {"source": source, "tokenizer_sha256": tokenizer_fingerprint(tokenizer), "image_column": image_column,
                "shard_size": shard_size, "flip": flip, "skip_bad": skip_bad}
    check_sharding(folder.out, node)
    with exclusive(folder):
        summary = _resume_or_start(folder, identity, overwrite)
        if summary is None:
            summary = _write_node_shards(dataset, tokenizer, folder, identity, batch_size, progress)
    if node.num_nodes > 1:
        try:
            merge_nodes(folder.out)  # the last node to finish marks the whole output complete
        except ImageTokenizerError:
            pass  # other nodes are still running; `image-tokenizer pretokenize-merge` checks and merges later
    return summary


def _resume_or_start(folder: Any, identity: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """A finished node's summary (nothing to do), or None after preparing the folder to start or resume."""
    state_path = folder.home / STATE_NAME
    previous = json.loads(state_path.read_text()) if state_path.is_file() else None
    occupied = any(p.name != ".lock" for p in folder.home.iterdir())
    if occupied and previous != identity:
        if not overwrite:
            raise PretokenizeError(f"{folder.home} holds a different pre-tokenization; pass --overwrite to replace it")
        folder.clear()
    atomic_write_text(state_path, json.dumps(identity, indent=2) + "\n")
    if (folder.home / INFO_NAME).is_file():
        return json.loads((folder.home / INFO_NAME).read_text())  # already complete with these inputs
    folder.data.mkdir(parents=True, exist_ok=True)
    folder.remove_leftovers()
    return None


def _write_node_shards(
    dataset: Any, tokenizer: Any, folder: Any, identity: dict[str, Any], batch_size: int, progress: bool
) -> dict[str, Any]:
    """Tokenize this node's rows after the complete shards, one shard at a time; then record the summary."""
    import datasets
    from tqdm.auto import tqdm

    from .streaming import node_part, write_shard

    image_column, shard_size = identity["image_column"], identity["shard_size"]
    features = getattr(dataset, "features", None) or {}
    if isinstance(features.get(image_column), datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))  # decode per row, ourselves
    consumed = folder.rows_consumed()
    rows = iter(node_part(dataset, folder.node).skip(consumed))
    function = _Tokenize(tokenizer, image_column, identity["flip"], identity["skip_bad"], None, ids_dtype(tokenizer.vocab_size))
    errors: list[str] = []
    bar = tqdm(desc=f"pretokenize (streaming{', ' + folder.node.prefix if folder.node.prefix else ''})", unit="img",
               initial=consumed, disable=not progress)
    shard_index, offset = len(folder.shards()), consumed
    while chunk := [row for _, row in zip(range(shard_size), rows)]:
        if image_column not in chunk[0]:
            raise PretokenizeError(f"no column {image_column!r}; the rows have columns {sorted(chunk[0])}")
        columns: dict[str, list] = {}
        for start in range(0, len(chunk), batch_size):
            part = chunk[start : start + batch_size]
            batch = {key: [row[key] for row in part] for key in part[0]}
            for key, values in function(batch, list(range(offset + start, offset + start + len(part)))).items():
                columns.setdefault(key, []).extend(values)
            bar.update(len(part))
        keep = [i for i, message in enumerate(columns[ERROR_COLUMN]) if not message]
        errors.extend(m for m in columns[ERROR_COLUMN] if m)
        write_shard(folder, shard_index, {k: [v[i] for i in keep] for k, v in columns.items() if k != ERROR_COLUMN}, len(chunk))
        shard_index += 1
        offset += len(chunk)
    bar.close()
    summary = {**identity, "node_rank": folder.node.node_rank, "num_nodes": folder.node.num_nodes, "shards": shard_index,
               "rows_in": offset, "skipped_in_this_run": len(errors) // (2 if identity["flip"] else 1),
               "errors_in_this_run": errors}
    atomic_write_text(folder.home / INFO_NAME, json.dumps(summary, indent=2) + "\n")
    return summary
