"""How a pre-tokenization runs, in one dataclass: what `pretokenize` takes, what the CLI builds once from its
flags, and what pretokenize_info.json records (`to_json`).

One entry point, three execution paths behind it on the local engine: the map path (`Dataset.map`, `num_proc`
processes), the DataLoader path (`num_workers` decoding workers, the default on a GPU) and the streaming path
(`streaming`, or an IterableDataset: resumable parquet shards, split across `node`s). The Ray engine
(`engine="ray"`, ray_engine.py) writes the streaming path's output on a Ray cluster: `actors` tokenizer actors of
`gpus_per_actor` GPUs each.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config_fields import with_overrides
from ..errors import InvalidRequestError, PretokenizeError
from .nodes import NodeSpec

FORMATS = ("arrow", "parquet")  # save_to_disk (read with load_from_disk) or parquet files (load_dataset)
ENGINES = ("local", "ray")  # this process (and its workers), or a Ray cluster (ray_engine.py)


@dataclass
class PretokenizeOptions:
    """Every setting of a pre-tokenization; `pretokenize(dataset, tokenizer, options)`, or its keywords."""

    image_column: str = "image"  # the column that holds the images
    split: str | None = None  # of a dataset spec, the one split to read (None: every split); names a lone Dataset's split
    flip: bool = False  # add a left-right mirrored copy of every image, marked in a `flipped` column
    skip_bad: bool = False  # drop an image that cannot be used and list it in the report, instead of stopping the run
    max_pixels: int | None = None  # the pixel budget of one decoded image (None: PIL's limit)
    batch_size: int | None = None  # rows per map call or streamed batch (None: 64), per DataLoader batch (None: 4 micro-batches)
    num_proc: int | None = None  # map path: this many CPU processes, each decoding and encoding its own rows
    num_workers: int | None = None  # DataLoader path: decode in this many workers, encode here (None: up to 8 on a GPU, else the map path)
    device: str | None = None  # where the tokenizer encodes; "cuda" under torchrun is this process's LOCAL_RANK GPU
    load_from_cache_file: bool = True  # map path: reuse the `datasets` cache of an identical map
    streaming: bool = False  # write resumable parquet shards as the rows stream (one split; a spec's Hub dataset is streamed)
    shard_size: int = 10000  # streaming: input rows per shard
    node: NodeSpec = field(default_factory=NodeSpec)  # streaming: this worker's part of the input (nodes.node_spec)
    progress: bool = True  # streaming: show a progress bar
    output_dir: str | None = None  # write the result here as the CLI does (required when streaming)
    format: str = "arrow"  # the output's format: "arrow" (save_to_disk) or "parquet"; streaming writes parquet
    overwrite: bool = False  # replace an output folder that holds another dataset
    push_to_hub: str | None = None  # upload the finished output folder to this Hub dataset repo (needs output_dir)
    source: str | None = None  # what the card and pretokenize_info.json name as the source (default: a spec as given)
    model: str | None = None  # what they name as the tokenizer
    engine: str = "local"  # "local": this process and its workers; "ray": Ray Data actors (pip install 'image-tokenizer[ray]')
    ray_address: str | None = None  # ray: the cluster to join (None: RAY_ADDRESS, a running local Ray, else start one)
    actors: int | None = None  # ray: tokenizer actors (None: one per GPU with gpus_per_actor, else 3/4 of the CPUs less one)
    gpus_per_actor: float = 0.0  # ray: GPUs each actor holds (0: CPU actors)

    @classmethod
    def build(cls, options: PretokenizeOptions | None = None, overrides: dict[str, Any] | None = None) -> PretokenizeOptions:
        """`options` (or the defaults) with keyword overrides, e.g. pretokenize(ds, tok, num_proc=2); an unknown
        keyword is an error naming the options."""
        return with_overrides(cls, options, overrides, InvalidRequestError, "options", "pretokenize option",
                              "; pass settings such as image_column= by name")

    def validate(self) -> PretokenizeOptions:
        """Refuse settings that cannot run, before any work; returns self."""
        if self.format not in FORMATS:
            raise PretokenizeError(f"format must be 'arrow' or 'parquet', got {self.format!r}")
        if self.shard_size < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise PretokenizeError(f"shard_size and batch_size must be positive, got {self.shard_size} and {self.batch_size}")
        if self.push_to_hub is not None and self.output_dir is None:
            raise InvalidRequestError("push_to_hub uploads the output folder; pass output_dir= too")
        if self.streaming and self.output_dir is None:
            raise InvalidRequestError("streaming writes parquet shards as the rows stream; pass output_dir=")
        if self.engine not in ENGINES:
            raise PretokenizeError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if (self.actors is not None and self.actors < 1) or self.gpus_per_actor < 0:
            raise PretokenizeError(f"actors must be positive and gpus_per_actor not negative, got {self.actors} and "
                                   f"{self.gpus_per_actor}")
        if self.engine == "ray":
            self._validate_ray()
        return self

    def _validate_ray(self) -> None:
        """The Ray engine writes resumable shards into output_dir and spreads the work itself."""
        if self.output_dir is None:
            raise InvalidRequestError("engine='ray' writes parquet shards into the output folder; pass output_dir=")
        if self.node.num_nodes > 1:
            raise PretokenizeError("engine='ray' spreads the work over the cluster itself; drop --num-nodes/--node-rank "
                                   "(and run one driver)")
        if self.num_proc is not None or self.num_workers is not None:
            raise PretokenizeError("num_proc and num_workers are the local engine's; with engine='ray' set actors "
                                   "(--actors) instead")

    def to_json(self) -> dict[str, Any]:
        """The options as JSON values (the node as {num_nodes, node_rank, origin})."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PretokenizeOptions:
        """The options to_json wrote."""
        return cls.build(None, {**data, "node": NodeSpec(**data["node"])} if "node" in data else data)
