"""The streaming driver: an IterableDataset (or a Dataset) -> resumable parquet shards of token rows.

Each shard is written under a temporary name and renamed when complete, so a partial shard is never visible, and
its name carries its content's sha256 (the card lists the shards, so `load_dataset` never serves stale rows);
a rerun skips the complete shards' rows and goes on. With a NodeSpec, this worker takes only its part of the
input and the last node to finish merges (nodes.py).
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import TYPE_CHECKING, Any

from ..checkpoint import tokenizer_fingerprint
from ..errors import ImageTokenizerError, PretokenizeError
from ..fileio import atomic_write_bytes, atomic_write_text
from .card import check_can_push, push_dataset_folder, write_dataset_card
from .nodes import NodeFolder, check_sharding, exclusive, merge_nodes, node_part
from .options import PretokenizeOptions
from .rows import ERROR_COLUMN, INFO_NAME, NODE_RANK, STATE_NAME, Tokenize, ids_dtype, token_features, undecoded_images
from .sources import one_split, open_spec, rank_device

if TYPE_CHECKING:
    from ..tokenizer import ImageTokenizer


def pretokenize_streaming(
    dataset: Any, tokenizer: ImageTokenizer, output_dir: str | None = None, options: PretokenizeOptions | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The streaming path on its own: tokenize an IterableDataset, a Dataset or a dataset spec (load_image_splits;
    `hf:NAME` is streamed) into parquet shards of `shard_size` input rows under output_dir/data, and return the
    summary written to pretokenize_info.json. Settings as for `pretokenize` (PretokenizeOptions, or keywords).
    An output holds one split: `split` of a spec (refused when the spec has several and none is named), else the
    dataset's own (`train` when it names none); an image over max_pixels (None: PIL's limit) is a bad image.

    Run it again after an interruption and it skips the complete shards' rows and goes on; a folder holding
    shards of another source (its spec, or a Dataset's fingerprint) or tokenizer is refused unless overwrite.
    With `node` (nodes.NodeSpec), this worker takes only its part of the input. device "cuda" under torchrun is
    this process's LOCAL_RANK GPU. engine="ray" writes the same output on a Ray cluster (ray_engine.py).
    Once complete, `datasets.load_dataset(output_dir, split=SPLIT)` reads the rows, and push_to_hub=REPO
    uploads the folder as a Hub dataset (refused before any work when offline)."""
    if output_dir is not None:
        overrides["output_dir"] = output_dir
    options = PretokenizeOptions.build(options, {**overrides, "streaming": True}).validate()
    check_can_push(options.push_to_hub)
    if options.engine == "ray":  # the same output, written by Ray Data actors
        from .ray_engine import pretokenize_ray

        summary = pretokenize_ray(dataset, tokenizer, options)
        if options.push_to_hub is not None:
            push_dataset_folder(options.output_dir, options.push_to_hub)
        return summary
    dataset, options = open_spec(dataset, options, tokenizer.config.resolution)
    name, dataset = one_split(dataset, options.source)
    return stream_split(dataset, tokenizer, options, name)


def stream_split(dataset: Any, tokenizer: ImageTokenizer, options: PretokenizeOptions, name: str) -> dict[str, Any]:
    """The streaming path: this node's part of one split (named options.split, else `name`) into shards, resumed
    where a previous run stopped; the last node to finish merges, and a complete output is uploaded if asked."""
    split = options.split or name
    if options.device is not None:
        tokenizer.to(rank_device(options.device))
    node = options.node
    folder = NodeFolder(options.output_dir, node)
    identity = {"source": options.source or "", "input_fingerprint": getattr(dataset, "_fingerprint", None),  # a Dataset's content
                "tokenizer_sha256": tokenizer_fingerprint(tokenizer), "image_column": options.image_column,
                "shard_size": options.shard_size, "flip": options.flip, "skip_bad": options.skip_bad, "split": split,
                "max_pixels": options.max_pixels}
    check_sharding(folder.out, node)
    with exclusive(folder):
        summary = _resume_or_start(folder, identity, options.overwrite)
        if summary is None:
            summary = _write_node_shards(dataset, tokenizer, folder, identity, options)
    if node.num_nodes > 1:
        try:
            merge_nodes(folder.out)  # the last node to finish marks the whole output complete
        except ImageTokenizerError:
            pass  # other nodes are still running; `image-tokenizer pretokenize-merge` checks and merges later
    if options.push_to_hub is not None and (folder.out / INFO_NAME).is_file():  # only a complete output goes up
        push_dataset_folder(folder.out, options.push_to_hub)
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
    dataset: Any, tokenizer: ImageTokenizer, folder: NodeFolder, identity: dict[str, Any], options: PretokenizeOptions
) -> dict[str, Any]:
    """Tokenize this node's rows after the complete shards, one shard at a time; then record the summary."""
    from tqdm.auto import tqdm

    image_column, shard_size, batch_size = identity["image_column"], identity["shard_size"], options.batch_size or 64
    dataset = undecoded_images(dataset, image_column)
    features = shard_features(getattr(dataset, "features", None), image_column, identity["flip"], ids_dtype(tokenizer.vocab_size))
    consumed = folder.rows_consumed()
    rows = iter(node_part(dataset, folder.node).skip(consumed))
    function = Tokenize(tokenizer, image_column, identity["flip"], identity["skip_bad"], None, ids_dtype(tokenizer.vocab_size),
                        identity["max_pixels"])
    errors: list[str] = []
    bar = tqdm(desc=f"pretokenize (streaming{', ' + folder.node.prefix if folder.node.prefix else ''})", unit="img",
               initial=consumed, disable=not options.progress)
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
        table = {k: [v[i] for i in keep] for k, v in columns.items() if k != ERROR_COLUMN}
        write_shard(folder, shard_index, table, len(chunk), features)
        shard_index += 1
        offset += len(chunk)
    bar.close()
    summary = {**identity, "node_rank": folder.node.node_rank, "num_nodes": folder.node.num_nodes, "shards": shard_index,
               "rows_in": offset, "skipped_in_this_run": len(errors) // (2 if identity["flip"] else 1),
               "errors_in_this_run": errors, "layout": tokenizer.layout.to_dict(), "options": options.to_json()}
    if folder.node.num_nodes == 1:  # a node-sharded output gets its card from the merge
        write_dataset_card(folder.out, summary, {identity["split"]: folder.shard_files()})
    atomic_write_text(folder.home / INFO_NAME, json.dumps(summary, indent=2) + "\n")
    return summary


def shard_features(source: Any, image_column: str, flip: bool, dtype: str) -> dict[str, Any] | None:
    """The features of the token columns and of the source's other columns (a ClassLabel keeps its names), or
    None when the source does not declare its features (a stream without them: inferred from the rows)."""
    import datasets

    if not source:
        return None
    features = dict(token_features(source, image_column, flip, dtype))
    features.pop(ERROR_COLUMN)
    return {**features, NODE_RANK: datasets.Value("int64")}


def write_shard(folder: NodeFolder, index: int, table: dict[str, list], rows_in: int,
                features: dict[str, Any] | None = None) -> None:
    """One complete shard, named by its content: the parquet bytes are made in memory, then its input-row count is
    written, then the file (atomically). Columns take `features` where it names them all (shard_features), so
    class names survive the stream."""
    import datasets

    known = features is not None and all(key in features for key in table)
    schema = datasets.Features({key: features[key] for key in table}) if known else None
    bars_were_off = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()  # a "Creating parquet" bar per shard would drown the run's own bar
    try:
        buffer = io.BytesIO()
        datasets.Dataset.from_dict(table, features=schema).to_parquet(buffer)
    finally:
        if not bars_were_off:
            datasets.utils.enable_progress_bars()
    data = buffer.getvalue()
    path = folder.shard_path(index, hashlib.sha256(data).hexdigest())
    folder.counts.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.counts / f"{path.stem}.json", json.dumps({"rows_in": rows_in}) + "\n")
    atomic_write_bytes(path, data)
