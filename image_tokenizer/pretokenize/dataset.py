"""`pretokenize`, the one entry point (PretokenizeOptions, options.py), which sends a dataset down one of three
paths: the map path here, its DataLoader variant (loader.py) or the streaming path (streaming.py); and the
output folder the CLI writes.

The map path is a batched `Dataset.map` whose cache fingerprint includes a hash of the tokenizer's weights, so a different
tokenizer never reuses stale results. With num_workers (the default on a GPU), images are decoded in
DataLoader workers first (loader.py) and the map only attaches the ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint import file_sha256, tokenizer_fingerprint
from ..errors import ImageTokenizerError, InvalidRequestError, PretokenizeError
from ..fileio import atomic_folder, atomic_write_text
from .card import ARROW_FILES, check_can_push, push_dataset_folder, token_file_name, write_dataset_card
from .options import FORMATS, PretokenizeOptions
from .rows import (
    INFO_NAME,
    REPORT_NAME,
    AttachIds,
    Tokenize,
    ids_dtype,
    token_features,
    undecoded_images,
    without_bad_rows,
)
from .sources import one_split, open_spec, split_name

if TYPE_CHECKING:
    from ..tokenizer import ImageTokenizer


def pretokenize(
    dataset: Any, tokenizer: ImageTokenizer, options: PretokenizeOptions | None = None, *, return_report: bool = False,
    **overrides: Any,
) -> Any:
    """Tokenize every image of a `datasets.Dataset`, of every split of a DatasetDict, or of a dataset spec (every
    split it has, or `options.split`; see load_image_splits); returns the token dataset: a Dataset for a Dataset
    or a spec with one split, else a DatasetDict with the same splits (and, with return_report, a report of the
    rows in, out and skipped). A lone Dataset's split is named `split`, else its own (`dataset.split`), else `train`.

    Every setting is a field of `options` (PretokenizeOptions), or a keyword that overrides it:
    `pretokenize(ds, tok, PretokenizeOptions(num_proc=2))` and `pretokenize(ds, tok, num_proc=2)` are the same.
    The map path runs `num_proc` CPU processes, each decoding and encoding its rows; the DataLoader path (with
    `num_workers`, the default on a GPU: up to 8) decodes in workers and encodes large uint8 batches on the device;
    the ids are the same. `engine="ray"` runs on a Ray cluster (ray_engine.py: `actors`, `gpus_per_actor`,
    `ray_address`) and writes the streaming path's output. The streaming path (`streaming=True`, or an IterableDataset) writes resumable parquet
    shards to `output_dir` (pretokenize_streaming) and returns the rows read back from them (None while other
    nodes of a node-sharded run are still writing). An image that cannot be used stops the run with its row
    named, unless `skip_bad`, which drops it and lists it in the report. With `output_dir`, the result is also
    written there as the CLI writes it (`format`, one `datasets` split per split, named in the card and in
    pretokenize_info.json with `source`, `model` and the options), and `push_to_hub` uploads that folder (refused
    before any work when offline)."""
    options = PretokenizeOptions.build(options, overrides).validate()
    check_can_push(options.push_to_hub)
    if options.engine == "ray":  # Ray Data actors write the streaming path's shards (ray_engine.py)
        tokens, report = _tokenize_on_ray(dataset, tokenizer, options)
        return (tokens, report) if return_report else tokens
    from_spec = isinstance(dataset, str)
    dataset, options = open_spec(dataset, options, tokenizer.config.resolution)
    splits = dict(dataset) if isinstance(dataset, dict) else {options.split or split_name(dataset): dataset}
    if options.streaming or any(not hasattr(part, "_fingerprint") for part in splits.values()):  # streams: shards
        tokens, report = _tokenize_stream(splits, tokenizer, options)
        return (tokens, report) if return_report else tokens
    tokens, reports = {}, {}
    for name, part in splits.items():
        tokens[name], reports[name] = _tokenize_dataset(part, tokenizer, options)
    report = merged_report(reports)
    if options.output_dir is not None:
        info = token_info(tokens, tokenizer, options)
        write_token_dataset(tokens, options.output_dir, options.format, info, options.overwrite, report if options.skip_bad else None)
        if options.push_to_hub is not None:
            push_dataset_folder(options.output_dir, options.push_to_hub)
    result = next(iter(tokens.values()))
    if isinstance(dataset, dict) and not (from_spec and len(tokens) == 1):
        import datasets

        result = datasets.DatasetDict(tokens)
    return (result, report) if return_report else result


def merged_report(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One skip report for several splits: the totals, each error prefixed by its split when there are several,
    and the counts of each split under `splits`."""
    several = len(reports) > 1
    counts = ("rows_in", "rows_out", "skipped")
    merged: dict[str, Any] = {key: sum(report[key] for report in reports.values()) for key in counts}
    merged["errors"] = [f"split {name}: {error}" if several else error
                        for name, report in reports.items() for error in report["errors"]]
    merged["splits"] = {name: {key: report[key] for key in counts} for name, report in reports.items()}
    return merged


def _tokenize_stream(splits: dict[str, Any], tokenizer: ImageTokenizer, options: PretokenizeOptions) -> tuple[Any, dict[str, Any]]:
    """The streaming path into output_dir: the rows read back (None until every node is done), and the report."""
    import datasets

    from .streaming import stream_split

    if options.output_dir is None:
        raise InvalidRequestError("an IterableDataset is written as parquet shards while it streams; pass output_dir=")
    name, stream = one_split(splits, options.source)
    summary = stream_split(stream, tokenizer, options, name)
    complete = (Path(options.output_dir) / INFO_NAME).is_file()
    tokens = datasets.load_dataset(str(options.output_dir), split=name) if complete else None
    errors = summary.get("errors_in_this_run", [])
    return tokens, {"rows_in": summary["rows_in"], "rows_out": None if tokens is None else len(tokens),
                    "skipped": summary.get("skipped_in_this_run", 0), "errors": errors}


def _tokenize_on_ray(dataset: Any, tokenizer: ImageTokenizer, options: PretokenizeOptions) -> tuple[Any, dict[str, Any]]:
    """The Ray engine into output_dir: the rows read back, and the report."""
    import datasets

    from .ray_engine import pretokenize_ray

    summary = pretokenize_ray(dataset, tokenizer, options)
    tokens = datasets.load_dataset(str(options.output_dir), split=summary["split"])
    if options.push_to_hub is not None:
        push_dataset_folder(options.output_dir, options.push_to_hub)
    errors = summary.get("errors_in_this_run", [])
    return tokens, {"rows_in": summary["rows_in"], "rows_out": len(tokens), "skipped": summary.get("skipped_in_this_run", 0),
                    "errors": errors}


def _tokenize_dataset(dataset: Any, tokenizer: ImageTokenizer, options: PretokenizeOptions) -> tuple[Any, dict[str, Any]]:
    """The map itself (through DataLoader workers first when num_workers is set); returns rows and report."""
    image_column, flip, skip_bad, max_pixels = options.image_column, options.flip, options.skip_bad, options.max_pixels
    if image_column not in dataset.column_names:
        raise PretokenizeError(f"no column {image_column!r}; the dataset has columns {dataset.column_names}")
    dataset = undecoded_images(dataset, image_column)
    dtype = ids_dtype(tokenizer.vocab_size)
    device, num_proc, num_workers, batch_size = options.device, options.num_proc, options.num_workers, options.batch_size
    if num_workers is None and device is not None and device.startswith("cuda") and (num_proc or 1) == 1:
        num_workers = min(8, os.cpu_count() or 1)
    if num_workers is not None:
        from .loader import encode_rows

        if device is not None:
            tokenizer.to(device)
        side = tokenizer.config.resolution
        batch_size = batch_size or max(64, 4 * tokenizer.micro_batch_for(side, side))
        ids, mirrored, errors = encode_rows(dataset, tokenizer, image_column, flip, skip_bad, batch_size, num_workers, dtype,
                                            max_pixels)
        function: Any = AttachIds(ids, mirrored, errors, tokenizer.layout.shape, image_column, dtype, tokenizer.layout)
        num_proc, device = None, None
    else:
        function = Tokenize(tokenizer, image_column, flip, skip_bad, device, dtype, max_pixels)
    fingerprint = hashlib.sha256("|".join([dataset._fingerprint, tokenizer_fingerprint(tokenizer), image_column, str(flip),
                                           str(skip_bad), dtype, str(max_pixels)]).encode()).hexdigest()[:32]
    try:
        with interrupt_in_this_process_only():
            mapped = dataset.map(
                function, batched=True, batch_size=batch_size or 64, with_indices=True, with_rank=device == "cuda",
                num_proc=num_proc, remove_columns=dataset.column_names,
                features=token_features(dataset.features, image_column, flip, dtype),
                new_fingerprint=fingerprint, load_from_cache_file=options.load_from_cache_file, desc="pretokenize",
            )
    except ImageTokenizerError as error:  # raised again here: our one line, without a worker process's traceback
        raise type(error)(str(error)) from None
    result, bad = without_bad_rows(mapped)
    report = {"rows_in": len(dataset), "rows_out": len(result), "skipped": len(bad) // (2 if flip else 1), "errors": bad}
    return result, report


@contextmanager
def interrupt_in_this_process_only() -> Iterator[None]:
    """Ctrl-C reaches every process of the terminal's group; during the map, only this one stops (with
    KeyboardInterrupt, so the CLI says one line and exits 130). The map's worker processes are forked with this
    handler and ignore it: they print no tracebacks, and the pool ends them as the map unwinds."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield  # signal handlers belong to the main thread; an ignored Ctrl-C stays ignored
        return
    parent, interrupted = os.getpid(), []

    def on_interrupt(signum: int, frame: Any) -> None:
        if os.getpid() == parent:
            interrupted.append(signum)
            _quiet_pool_cleanup()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    except BaseException:
        if not interrupted:
            raise
        raise KeyboardInterrupt from None  # not the TimeoutError that datasets' pool cleanup puts in its place
    else:
        if interrupted:  # the interrupt landed where datasets' pool code swallowed it and the map ran on
            raise KeyboardInterrupt
    finally:
        signal.signal(signal.SIGINT, previous)


def _quiet_pool_cleanup() -> None:
    """After an interrupt, datasets' pool generator (`iflatmap_unordered`) is closed whenever it is collected, and
    its cleanup raises a TimeoutError for the unfinished jobs, which Python would print as 'Exception ignored'.
    Only that report is dropped; every other one goes to the hook in place."""
    previous = sys.unraisablehook
    if getattr(previous, "quiet_pool_cleanup", False):
        return

    def hook(unraisable: Any) -> None:
        if getattr(unraisable.object, "__name__", "") != "iflatmap_unordered":
            previous(unraisable)

    hook.quiet_pool_cleanup = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def token_info(tokens: Any, tokenizer: ImageTokenizer, options: PretokenizeOptions) -> dict[str, Any]:
    """What pretokenize_info.json records: where the rows came from, the tokenizer (name and weights hash), the
    rows of each split, the map's fingerprint, which makes a rerun with the same inputs a no-op, and the options."""
    splits = as_splits(tokens)
    fingerprints = [part._fingerprint for part in splits.values()]
    combined = "|".join(f"{name}:{part._fingerprint}" for name, part in splits.items())
    return {
        "source": options.source,
        "model": options.model,
        "fingerprint": fingerprints[0] if len(splits) == 1 else hashlib.sha256(combined.encode()).hexdigest()[:32],
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "rows": sum(len(part) for part in splits.values()),
        "splits": {name: len(part) for name, part in splits.items()},
        "flip": options.flip,
        "grid_size": list(tokenizer.grid_size),
        "layout": tokenizer.layout.to_dict(),  # what each row's input_ids are (layouts.IdLayout.to_dict)
        "vocab_size": tokenizer.vocab_size,
        "options": options.to_json(),
    }


def as_splits(tokens: Any) -> dict[str, Any]:
    """{split name: Dataset} of a DatasetDict, or of one Dataset (named by its split, else `train`)."""
    return dict(tokens) if isinstance(tokens, dict) else {split_name(tokens): tokens}


def write_token_dataset(
    tokens: Any, output: str, fmt: str, info: dict[str, Any], overwrite: bool, report: dict[str, Any] | None
) -> None:
    """Write a Dataset or a DatasetDict atomically: into a temporary sibling folder, then one rename. An output
    folder that already holds another dataset is refused unless overwrite; the same inputs and tokenizer are a
    no-op. One split is written as a Dataset (save_to_disk, or one parquet file), several as a DatasetDict (its
    save_to_disk, or a parquet file each); the card lists each split's files. Parquet files are named by their
    content (card.token_file_name), so `load_dataset` never serves an earlier run's rows."""
    target = Path(output)
    if fmt not in FORMATS:
        raise PretokenizeError(f"format must be 'arrow' or 'parquet', got {fmt!r}")
    if target.exists() and any(target.iterdir()):
        existing = target / INFO_NAME
        same = existing.is_file() and json.loads(existing.read_text()).get("fingerprint") == info["fingerprint"]
        if not same and not overwrite:
            raise PretokenizeError(f"{target} already holds a different dataset; pass --overwrite to replace it")
    splits = as_splits(tokens)
    with atomic_folder(target) as tmp:
        if fmt == "arrow" and len(splits) == 1:
            next(iter(splits.values())).save_to_disk(str(tmp))
            data_files = dict.fromkeys(splits, ARROW_FILES)
        elif fmt == "arrow":
            import datasets

            datasets.DatasetDict(splits).save_to_disk(str(tmp))
            data_files = {name: f"{name}/{ARROW_FILES}" for name in splits}
        else:
            data_files = {name: _write_parquet(part, tmp, name) for name, part in splits.items()}
        write_dataset_card(tmp, info, data_files)
        atomic_write_text(tmp / INFO_NAME, json.dumps(info, indent=2) + "\n")
        if report is not None:
            atomic_write_text(tmp / REPORT_NAME, json.dumps(report, indent=2) + "\n")


def _write_parquet(part: Any, folder: Path, split: str) -> str:
    """One split as one parquet file in (a temporary) folder, named by its content; returns the name."""
    written = folder / f"{split}.parquet"
    part.to_parquet(str(written))
    name = token_file_name(split, file_sha256(written))
    written.rename(folder / name)  # inside the temporary folder: nobody sees it yet
    return name
