"""The Ray engine (`engine="ray"`): pre-tokenization on a Ray cluster with Ray Data, writing the streaming path's
output (parquet shards under data/, the card, pretokenize_info.json last), so `load_dataset(OUT)` is unchanged.

- Reading: WebDataset shards (a `wds:` spec) with Ray's own `read_webdataset` (raw members; one output shard per
  input tar); any other dataset (a `datasets` Dataset, or a spec opened as one) as its Arrow table through
  `ray.data.from_arrow` (one output shard per `shard_size` rows, cut as the streaming path cuts them). Images stay
  bytes or paths until our guarded decoder opens them (Ray's `read_images` would decode without the pixel budget,
  EXIF orientation and the model's alpha background, and the ids would differ from the local engine's).
- Decoding: `prepare_batch` tasks, fused with the reads, decode and prepare each image (rows.prepare_cells): an
  image that cannot be used is its row's error, dropped under skip_bad, else it stops the run.
- Encoding: `EncodeActor`, a map_batches actor class that gets the tokenizer once; `actors` of them, each holding
  `gpus_per_actor` GPUs (CPU actors otherwise). Its ids are the local engine's: the same uint8 pixels through the
  same fixed micro-batches.
- Writing: the driver, in input order (Ray Data's preserve_order): each unit's rows become one shard through
  streaming.write_shard, named by index and content. Only the driver needs the output folder.
- Order: input order (the tars in the pattern's order, samples in tar order); `source_index` (and `__key__` for
  WebDataset) re-sort or lead back to the input row.
- Resume: the units whose shard is complete are skipped; a killed driver re-run with the same arguments writes
  every row once. A killed actor is restarted by Ray and its batch retried within the same run.
- Resources (`plan_resources`): reads and decoding keep a CPU (`reader_cpus`), actors share the rest, so no
  pipeline stalls for want of a CPU to read with (two actors on `ray.init(num_cpus=2)` would otherwise).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checkpoint import tokenizer_fingerprint
from ..errors import PretokenizeError, StreamingError
from ..fileio import atomic_write_text
from .card import write_dataset_card
from .nodes import NodeFolder, exclusive
from .options import PretokenizeOptions
from .rows import ERROR_COLUMN, INFO_NAME, SOURCE_INDEX, assemble_rows, ids_dtype, keep_or_stop, prepare_cells
from .streaming import _resume_or_start, shard_features, write_shard

if TYPE_CHECKING:
    from ..tokenizer import ImageTokenizer

INSTALL = "pip install 'image-tokenizer[ray]'"
UNIT, PIXELS, MIRROR, SHAPE = "__unit", "__pixels", "__mirrored", "__shape"  # columns between the stages
CPU_ACTOR_SHARE = 0.75  # CPU actors take this share of the CPUs by default; the rest decode (a heuristic)
DECODE_MEMORY = 512 * 2**20  # bytes a decoding task reserves: its worker (about 260 MiB with torch) and a batch
ORDER = "input order (WebDataset: the tars in the pattern's order, samples in tar order); re-sort by source_index"


def require_ray() -> Any:
    """The `ray` module, or our error saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise PretokenizeError(f"engine='ray' needs Ray Data, which is not installed: {INSTALL}") from None
    return ray


@dataclass(frozen=True)
class ResourcePlan:
    """How a run uses the cluster: `actors` encoders of `cpus_per_actor` CPUs and `gpus_per_actor` GPUs each,
    and `reader_cpus` for each read-and-decode task, always left free by the actors."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    reader_cpus: float


def plan_resources(cpus: float, gpus: float, actors: int | None = None, gpus_per_actor: float = 0.0) -> ResourcePlan:
    """Resources for a cluster of `cpus` CPUs and `gpus` GPUs: reads keep one CPU (half of a one-CPU cluster);
    the actors (default: one per `gpus_per_actor` GPUs, else one CPU actor per CPU for CPU_ACTOR_SHARE of the CPUs
    the reads leave, at least one) share the other CPUs, at most one each. More GPU actors than the GPUs hold is
    an error naming both."""
    reader = min(1.0, cpus / 2)
    if gpus_per_actor > 0:
        fits = int(gpus // gpus_per_actor)
        if fits < (actors or 1):
            raise PretokenizeError(f"{actors or 1} actor(s) of {gpus_per_actor} GPU(s) need more GPUs than the Ray "
                                   f"cluster's {gpus:g}; lower --actors or --gpus-per-actor")
        actors = actors or fits
    actors = actors or max(1, int(CPU_ACTOR_SHARE * (cpus - reader)))
    return ResourcePlan(actors, min(1.0, (cpus - reader) / actors), gpus_per_actor, reader)


@contextmanager
def ray_session(address: str | None, progress: bool) -> Iterator[Any]:
    """A connected Ray (the running one, else `ray.init(address)`, shut down afterwards) with Ray Data set to keep
    the input order; the settings are put back after."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    context = ray.data.DataContext.get_current()
    kept = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order, context.enable_progress_bars = True, progress
    try:
        yield ray
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = kept
        if started:
            ray.shutdown()


@dataclass
class Source:
    """What a run reads, cut into units (one output shard each): WebDataset `files`, or a `dataset`'s rows."""

    image_column: str  # in the rows Ray reads: the image member (wds), else options.image_column
    features: Any  # the source's columns as the local engine reads them (the image as `image` for wds)
    units: int
    files: list[str] = dataclasses.field(default_factory=list)
    dataset: Any = None
    fingerprint: str | None = None


def open_source(dataset: Any, options: PretokenizeOptions, resolution: int) -> Source:
    """A `wds:` spec as its tar files, anything else as one `datasets` Dataset (a spec opened as load_splits does)."""
    from ..data.specs import parse_spec
    from ..data.webdataset import webdataset_layout
    from .rows import undecoded_images
    from .sources import load_image_splits, one_split, open_spec

    if isinstance(dataset, str) and parse_spec(dataset).kind == "wds":
        if options.split is not None:
            load_image_splits(dataset, options.split, streaming=True)  # the error naming the one split, `train`
        files, member, features = webdataset_layout(parse_spec(dataset).location)
        return Source(member, features, len(files), files=files)
    dataset, options = open_spec(dataset, options, resolution)
    _, dataset = one_split(dataset, options.source)
    if not hasattr(dataset, "_fingerprint"):
        raise PretokenizeError("engine='ray' reads a Dataset or WebDataset shards (wds:PATTERN), not an IterableDataset; "
                               "load it without streaming, or write it as tar shards")
    if options.image_column not in dataset.column_names:
        raise PretokenizeError(f"no column {options.image_column!r}; the dataset has columns {dataset.column_names}")
    dataset = undecoded_images(dataset, options.image_column)
    units = max(1, -(-len(dataset) // options.shard_size))
    return Source(options.image_column, dataset.features, units, dataset=dataset, fingerprint=dataset._fingerprint)


def pretokenize_ray(dataset: Any, tokenizer: ImageTokenizer, options: PretokenizeOptions) -> dict[str, Any]:
    """Tokenize a dataset or a spec into options.output_dir on Ray (see the module); returns the summary written to
    pretokenize_info.json. A re-run with the same arguments goes on from the complete shards."""
    options = dataclasses.replace(options, source=options.source or (dataset if isinstance(dataset, str) else None))
    require_ray()
    source = open_source(dataset, options, tokenizer.config.resolution)
    split = options.split or "train"
    folder = NodeFolder(options.output_dir, options.node)
    identity = {"source": options.source or "", "input_fingerprint": source.fingerprint,
                "tokenizer_sha256": tokenizer_fingerprint(tokenizer), "image_column": options.image_column,
                "shard_size": options.shard_size, "flip": options.flip, "skip_bad": options.skip_bad, "split": split,
                "max_pixels": options.max_pixels, "engine": "ray"}
    with exclusive(folder):
        summary = _resume_or_start(folder, identity, options.overwrite)
        if summary is not None:
            return summary
        done = complete_units(folder)
        writer = UnitWriter(folder, source, options, ids_dtype(tokenizer.vocab_size), first=done)
        if done < source.units:
            with ray_session(options.ray_address, options.progress) as ray:
                plan = plan_resources(ray.cluster_resources().get("CPU", 1.0), ray.cluster_resources().get("GPU", 0.0),
                                      options.actors, options.gpus_per_actor)
                for table in token_batches(ray, source, tokenizer, options, plan, done):
                    writer.add(table)
        writer.finish()
        summary = {**identity, "node_rank": 0, "num_nodes": 1, "shards": source.units, "rows_in": writer.offset,
                   "skipped_in_this_run": writer.skipped, "errors_in_this_run": writer.errors, "order": ORDER,
                   "layout": tokenizer.layout.to_dict(), "options": options.to_json()}
        write_dataset_card(folder.out, summary, {split: folder.shard_files()})
        atomic_write_text(folder.home / INFO_NAME, json.dumps(summary, indent=2) + "\n")
    return summary


def complete_units(folder: NodeFolder) -> int:
    """How many units are complete: their shards are written in order, so they are shards 0..k-1."""
    indices = [int(path.name[len(folder.shard_prefix):].split("-")[0]) for path in folder.shards()]
    if indices != list(range(len(indices))):
        raise StreamingError(f"{folder.data} holds shards {indices[:5]}..., not 0..{len(indices) - 1}; "
                             "pass --overwrite")
    return len(indices)


def token_batches(ray: Any, source: Source, tokenizer: ImageTokenizer, options: PretokenizeOptions, plan: ResourcePlan,
                  first: int) -> Iterator[Any]:
    """The token rows of units first.. as Arrow tables, in input order: read, decode (tasks), encode (actors)."""
    import pyarrow as pa

    if source.files:
        files = source.files[first:]
        filesystem = _filesystem(files)
        rows = ray.data.read_webdataset(files, decoder=None, filesystem=filesystem, num_cpus=plan.reader_cpus,
                                        override_num_blocks=len(files))
        units = {_path_key(name): first + index for index, name in enumerate(files)}
        rows = rows.map_batches(_WebDatasetUnits(units), batch_format="pyarrow", num_cpus=plan.reader_cpus)
    else:
        start = first * options.shard_size
        table = source.dataset.with_format("arrow")[start:]
        table = table.append_column(UNIT, pa.array(np.arange(start, start + len(table)) // options.shard_size))
        batch = options.batch_size or 64
        rows = ray.data.from_arrow(table, override_num_blocks=max(1, min(10_000, -(-len(table) // batch))))
    prepare = {"image_column": source.image_column, "config": tokenizer.config, "flip": options.flip,
               "max_pixels": options.max_pixels, "member": bool(source.files)}
    # Decoding tasks reserve the memory a batch of decoded images takes. That also keeps them apart from the actors:
    # Ray fuses stages whose requests are equal, and the actors would then decode and encode in turn while the
    # CPU left to the reads sat idle.
    rows = rows.map_batches(prepare_batch, batch_format="pyarrow", fn_kwargs=prepare, num_cpus=plan.reader_cpus,
                            memory=DECODE_MEMORY)
    side = tokenizer.config.resolution
    gpu_batch = max(64, 4 * tokenizer.micro_batch_for(side, side))  # as the DataLoader path batches for a GPU
    batch_size = options.batch_size or (gpu_batch if plan.gpus_per_actor else 64)
    actor = {"tokenizer": tokenizer.to("cpu"), "threads": max(1, int(plan.cpus_per_actor)), "flip": options.flip,
             "dtype": ids_dtype(tokenizer.vocab_size)}
    tokens = rows.map_batches(EncodeActor, fn_constructor_kwargs=actor, batch_size=batch_size, batch_format="pyarrow",
                              compute=ray.data.ActorPoolStrategy(size=plan.actors), num_cpus=plan.cpus_per_actor,
                              num_gpus=plan.gpus_per_actor or None)
    yield from tokens.iter_batches(batch_size=None, batch_format="pyarrow")


def _filesystem(files: list[str]) -> Any:
    """Hugging Face's filesystem for hf:// shards (Ray reads fsspec filesystems), else Ray's own choice."""
    if files and files[0].startswith("hf://"):
        from huggingface_hub import HfFileSystem

        return HfFileSystem()
    return None


def _path_key(name: str) -> str:
    """A shard's path as Ray reports it in `__url__` (no scheme; absolute when local)."""
    path = name.split("://", 1)[-1]
    return path if "://" in name else os.path.abspath(path)


class _WebDatasetUnits:
    """Each sample's unit: the index of its tar (from `__url__`, which is then dropped)."""

    def __init__(self, units: dict[str, int]):
        self.units = units

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        urls = table.column("__url__").to_pylist()
        unknown = [url for url in urls if _path_key(url) not in self.units and url not in self.units]
        if unknown:
            raise PretokenizeError(f"Ray read a shard that was not asked for: {unknown[0]}")
        units = [self.units.get(url, self.units.get(_path_key(url))) for url in urls]
        return table.drop_columns(["__url__"]).append_column(UNIT, pa.array(units, pa.int64()))


def prepare_batch(table: Any, image_column: str, config: Any, flip: bool, max_pixels: int | None, member: bool) -> Any:
    """Decode and prepare each image of a batch (rows.prepare_cells): the image column becomes its uint8 pixels
    (and its mirror's) as bytes, with the error of a row that cannot be used. `member`: a WebDataset image member,
    raw bytes named `__key__.member` as `datasets`' loader names them."""
    import pyarrow as pa

    values = table.column(image_column).to_pylist()
    if member:
        keys = table.column("__key__").to_pylist()
        values = [None if value is None else {"bytes": value, "path": f"{key}.{image_column}"}
                  for key, value in zip(keys, values)]
    prepared = prepare_cells(values, [-1] * len(values), config, flip, max_pixels)
    pixels: list[bytes] = [b""] * len(values)
    mirrored: list[bytes] = [b""] * len(values)
    for order, position in enumerate(prepared.positions):
        pixels[position] = prepared.pixels[order].numpy().tobytes()
        if flip:
            mirrored[position] = prepared.mirrored[order].numpy().tobytes()
    shape = list(prepared.pixels.shape[1:]) if prepared.positions else []
    table = table.drop_columns([image_column])
    errors = [prepared.errors.get(i, "") for i in range(len(values))]
    for name, column in ((PIXELS, pa.array(pixels, pa.binary())), (MIRROR, pa.array(mirrored, pa.binary())),
                         (SHAPE, pa.array([shape] * len(values), pa.list_(pa.int64()))),
                         (ERROR_COLUMN, pa.array(errors, pa.string()))):
        table = table.append_column(name, column)
    return table


class EncodeActor:
    """The map_batches actor: gets the tokenizer once (on its GPU when Ray gave it one) and turns prepared pixels
    into token rows (rows.assemble_rows); the other columns pass through, repeated for the mirrored rows."""

    def __init__(self, tokenizer: ImageTokenizer, threads: int, flip: bool, dtype: str):
        import torch

        torch.set_num_threads(threads)
        self.tokenizer = tokenizer.to("cuda" if torch.cuda.is_available() else "cpu")
        self.flip, self.dtype = flip, dtype

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa
        import torch

        errors = table.column(ERROR_COLUMN).to_pylist()
        good = [i for i, message in enumerate(errors) if not message]
        grids: dict[int, np.ndarray] = {}
        flipped: dict[int, np.ndarray] | None = {} if self.flip else None
        if good:
            shape = table.column(SHAPE)[good[0]].as_py()
            for column, into in ((PIXELS, grids), (MIRROR, flipped)):
                if into is None:
                    continue
                raw = table.column(column).to_pylist()
                pixels = torch.from_numpy(np.stack([np.frombuffer(raw[i], np.uint8).reshape(shape) for i in good]))
                into.update(zip(good, self.tokenizer.encode(pixels).numpy()))
        n = len(errors)
        rows = assemble_rows({"": [None] * n}, list(range(n)), "", grids, flipped,
                             {i: message for i, message in enumerate(errors) if message}, self.dtype,
                             self.tokenizer.layout)
        out = table.drop_columns([PIXELS, MIRROR, SHAPE, ERROR_COLUMN]).take(pa.array(rows[SOURCE_INDEX]))
        ids_type = pa.list_(pa.from_numpy_dtype(np.dtype(self.dtype)))
        out = out.append_column("input_ids", pa.array([list(ids) for ids in rows["input_ids"]], ids_type))
        for name in ("grid_h", "grid_w", "flipped", ERROR_COLUMN):
            if name in rows:
                out = out.append_column(name, pa.array(rows[name]))
        return out


class UnitWriter:
    """The driver's side: collects the token rows of each unit in input order and writes a unit's shard once its
    rows are all in (a later unit's first row, or the end), numbering rows (source_index) as it goes."""

    def __init__(self, folder: NodeFolder, source: Source, options: PretokenizeOptions, dtype: str, first: int):
        self.folder, self.source, self.options = folder, source, options
        image = "image" if source.files else source.image_column  # the image column as the local engine reads it
        self.passthrough = [name for name in source.features if name != image]
        self.features = shard_features(source.features, image, options.flip, dtype)
        self.unit, self.rows = first, {}
        self.offset = folder.rows_consumed()
        self.skipped, self.errors = 0, []

    def add(self, table: Any) -> None:
        import pyarrow as pa

        units = table.column(UNIT).to_numpy()
        for unit in np.unique(units):  # ascending, as the rows arrive in input order
            while self.unit < unit:
                self._write()
            part = table.filter(pa.array(units == unit)).to_pydict()
            for name, values in part.items():
                self.rows.setdefault(name, []).extend(values)

    def finish(self) -> None:
        while self.unit < self.source.units:
            self._write()

    def _write(self) -> None:
        """The current unit's shard (empty when no row of it came), then the next unit."""
        per_input = 2 if self.options.flip else 1
        rows, count = self.rows, len(self.rows.get(ERROR_COLUMN, []))
        numbers = [self.offset + row // per_input for row in range(count)]
        keep, errors = [], []
        for row, message in enumerate(rows.get(ERROR_COLUMN, [])):
            if message:
                errors.append(keep_or_stop(_renumbered(message, numbers[row]), self.options.skip_bad))
            else:
                keep.append(row)
        table = {name: [self._value(name, rows, row) for row in keep] for name in self.passthrough}
        table[SOURCE_INDEX] = [numbers[row] for row in keep]
        for name in ("input_ids", "grid_h", "grid_w", *(["flipped"] if self.options.flip else [])):
            table[name] = [rows[name][row] for row in keep]
        write_shard(self.folder, self.unit, table, count // per_input, self.features)
        self.errors += errors
        self.skipped += len(errors) // per_input
        self.offset += count // per_input
        self.unit, self.rows = self.unit + 1, {}

    def _value(self, name: str, rows: dict[str, list], row: int) -> Any:
        """A passthrough cell; WebDataset members decoded as `datasets`' loader decodes them."""
        from ..data.webdataset import KEY, decode_member

        value = rows[name][row] if name in rows else None
        return decode_member(name, value) if self.source.files and name != KEY else value


def _renumbered(message: str, index: int) -> str:
    """A decoding error names its row as `row -1` (the decoder does not know the input's numbering); the driver
    numbers it."""
    return f"row {index}{message[len('row -1'):]}" if message.startswith("row -1") else message
