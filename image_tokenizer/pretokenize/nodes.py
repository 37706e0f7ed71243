"""Node-sharded pre-tokenization: which part of the input each worker takes, where it writes, and the merge.

One worker (a node, a SLURM array task, a torchrun process) takes a disjoint part of the input with
`datasets.distributed.split_dataset_by_node`, writes its own atomic shards under its own prefix, and resumes
on its own after a kill. When every node has finished, `merge_nodes` (or the last node to finish) checks that
all parts are complete and consistent and marks the folder as one dataset of one split:
`datasets.load_dataset(output, split=SPLIT)` then yields every input row exactly once.

Layout, one node: `data/shard-00000-<sha256>.parquet` (each shard named by its content, card.token_file_name),
`shard_rows/`, `pretokenize_state.json`, and when complete a dataset card `README.md` (its YAML lists the shard
files, and nothing else, for the loader) and `pretokenize_info.json` (written last: the output is complete).
Several nodes: `sharding.json` (the node count, fixed by the first worker),
`data/node-00001-of-00004-shard-00000-<sha256>.parquet`, and each node's bookkeeping under
`nodes/node-00001-of-00004/`; the merge writes the card and `pretokenize_info.json`.
Row order is node-major (file names sort that way), then input order within a node; every row carries
`source_index` (and `node_rank` with several nodes) to re-sort or to find the input row it came from.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StreamingError
from ..fileio import atomic_write_text
from .card import token_file_name, write_dataset_card
from .rows import INFO_NAME, NODE_RANK, SHARDING_NAME, SOURCE_INDEX


@dataclass(frozen=True)
class NodeSpec:
    """This worker's part of the input: rank `node_rank` of `num_nodes`, and where that setting came from."""

    num_nodes: int = 1
    node_rank: int = 0
    origin: str = "default (one node)"

    def __post_init__(self) -> None:
        if self.num_nodes < 1:
            raise StreamingError(f"the number of nodes must be at least 1, got {self.num_nodes} ({self.origin})")
        if not 0 <= self.node_rank < self.num_nodes:
            raise StreamingError(
                f"node rank {self.node_rank} is out of range for {self.num_nodes} node(s): ranks are 0..{self.num_nodes - 1} "
                f"({self.origin})"
            )

    @property
    def prefix(self) -> str:
        return "" if self.num_nodes == 1 else f"node-{self.node_rank:05d}-of-{self.num_nodes:05d}"


def node_spec(num_nodes: int | None = None, node_rank: int | None = None, env: dict[str, str] | None = None) -> NodeSpec:
    """The node split from flags, else from torchrun (WORLD_SIZE/RANK), a SLURM array
    (SLURM_ARRAY_TASK_COUNT/SLURM_ARRAY_TASK_ID, less SLURM_ARRAY_TASK_MIN) or a Kubernetes indexed job
    (JOB_COMPLETION_INDEX, with --num-nodes); else one node."""
    env = os.environ if env is None else env
    if num_nodes is not None or node_rank is not None:
        if num_nodes is None or node_rank is None:
            rank = env.get("JOB_COMPLETION_INDEX")
            if num_nodes is not None and rank is not None:
                return NodeSpec(num_nodes, _int_env(env, "JOB_COMPLETION_INDEX"), "--num-nodes and JOB_COMPLETION_INDEX")
            raise StreamingError("--num-nodes and --node-rank go together (or set neither and use the environment)")
        return NodeSpec(num_nodes, node_rank, "--num-nodes/--node-rank")
    if "WORLD_SIZE" in env and "RANK" in env:
        return NodeSpec(_int_env(env, "WORLD_SIZE"), _int_env(env, "RANK"), "WORLD_SIZE/RANK (torchrun)")
    if "SLURM_ARRAY_TASK_COUNT" in env and "SLURM_ARRAY_TASK_ID" in env:
        first = _int_env(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        rank = _int_env(env, "SLURM_ARRAY_TASK_ID") - first
        return NodeSpec(_int_env(env, "SLURM_ARRAY_TASK_COUNT"), rank, "SLURM_ARRAY_TASK_COUNT/SLURM_ARRAY_TASK_ID")
    return NodeSpec()


def _int_env(env: dict[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise StreamingError(f"environment variable {name}={env[name]!r} is not an integer") from None


def node_part(dataset: Any, node: NodeSpec) -> Any:
    """This node's rows, each with `source_index` (the input row: global for a map-style dataset and for a
    stream split by example; within this node's part for a stream split by shards) and `node_rank`."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    split = node.num_nodes > 1
    if isinstance(dataset, datasets.Dataset):  # contiguous blocks of rows; the index column is cheap here
        dataset = dataset.add_column(SOURCE_INDEX, list(range(len(dataset))))
        dataset = (split_dataset_by_node(dataset, rank=node.node_rank, world_size=node.num_nodes) if split else dataset)
        dataset = dataset.to_iterable_dataset()
    else:  # a stream: by shards when they divide evenly between nodes, else every num_nodes-th row
        dataset = dataset.map(lambda _, index: {SOURCE_INDEX: index}, with_indices=True)
        dataset = split_dataset_by_node(dataset, rank=node.node_rank, world_size=node.num_nodes) if split else dataset
    return dataset.map(lambda _: {NODE_RANK: node.node_rank}) if split else dataset


class NodeFolder:
    """Where one node keeps its shards and its bookkeeping inside the output folder."""

    def __init__(self, output_dir: str | os.PathLike, node: NodeSpec):
        self.out, self.node = Path(output_dir), node
        self.home = self.out if node.num_nodes == 1 else self.out / "nodes" / node.prefix
        self.data, self.counts = self.out / "data", self.home / "shard_rows"
        self.shard_prefix = "shard-" if node.num_nodes == 1 else f"{node.prefix}-shard-"

    def shards(self) -> list[Path]:
        return sorted(self.data.glob(f"{self.shard_prefix}*.parquet"))

    def shard_path(self, index: int, sha256: str) -> Path:
        return self.data / token_file_name(f"{self.shard_prefix}{index:05d}", sha256)

    def shard_files(self) -> list[str]:
        """This node's shards as the card's `data_files` name them (relative to the output folder)."""
        return [f"{self.data.name}/{p.name}" for p in self.shards()]

    def rows_consumed(self) -> int:
        return sum(json.loads((self.counts / f"{p.stem}.json").read_text())["rows_in"] for p in self.shards())

    def remove_leftovers(self) -> None:
        """Temporary files of a killed run (atomic writes that never reached their rename)."""
        for leftover in self.data.glob(f".{self.shard_prefix}*.tmp"):
            leftover.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove this node's shards and bookkeeping (for --overwrite); the lock file stays."""
        for shard in self.shards():
            shard.unlink()
        for path in self.home.iterdir():
            if path.name != ".lock" and not (self.node.num_nodes == 1 and path == self.data):
                shutil.rmtree(path) if path.is_dir() else path.unlink()


@contextmanager
def exclusive(folder: NodeFolder) -> Iterator[None]:
    """Hold this node's lock for the run: a second live worker on the same rank is refused. The kernel
    drops the lock when the holder dies, so a killed worker never blocks its own restart."""
    folder.home.mkdir(parents=True, exist_ok=True)
    with open(folder.home / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = f"node rank {folder.node.node_rank} of {folder.node.num_nodes}" if folder.node.num_nodes > 1 else "this output"
            raise StreamingError(f"another worker is already writing {who} in {folder.out}; each rank runs once") from None
        yield


def check_sharding(out: Path, node: NodeSpec) -> None:
    """Every worker of one output must agree on the node count; the first one fixes it."""
    path = out / SHARDING_NAME
    if node.num_nodes == 1:
        if path.is_file():
            raise StreamingError(f"{out} is split across {json.loads(path.read_text())['num_nodes']} nodes; pass --num-nodes")
        return
    if (out / "data").is_dir() and not path.is_file() and any((out / "data").glob("shard-*.parquet")):
        raise StreamingError(f"{out} holds a one-node pre-tokenization; node-sharded runs need a fresh folder")
    if path.is_file():
        recorded = json.loads(path.read_text())["num_nodes"]
        if recorded != node.num_nodes:
            raise StreamingError(
                f"{out} is split across {recorded} nodes but this worker was started with {node.num_nodes} "
                f"({node.origin}); every worker of one output needs the same --num-nodes"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"num_nodes": node.num_nodes}) + "\n")


def merge_nodes(output_dir: str | os.PathLike) -> dict[str, Any]:
    """Check that every node finished with the same settings and mark the folder as one complete dataset.

    A missing or unfinished node is an error naming it; nothing is marked complete until all are."""
    out = Path(output_dir)
    sharding = out / SHARDING_NAME
    if not sharding.is_file():
        if (out / INFO_NAME).is_file():
            return json.loads((out / INFO_NAME).read_text())  # a one-node run is complete by itself
        raise StreamingError(f"{out} holds no node-sharded pre-tokenization ({SHARDING_NAME} not found)")
    num_nodes = json.loads(sharding.read_text())["num_nodes"]
    summaries, files = [], []
    for rank in range(num_nodes):
        folder = NodeFolder(out, NodeSpec(num_nodes, rank))
        info = folder.home / INFO_NAME
        if not info.is_file():
            state = "has not started" if not folder.home.is_dir() else "has not finished"
            raise StreamingError(f"node {rank} of {num_nodes} ({folder.node.prefix}) {state}; merge once every node is done")
        summary = json.loads(info.read_text())
        if len(folder.shards()) != summary["shards"]:
            raise StreamingError(f"node {rank}: {summary['shards']} shards recorded but {len(folder.shards())} found in {folder.data}")
        summaries.append(summary)
        files.extend(folder.shard_files())
    keys = ("source", "input_fingerprint", "tokenizer_sha256", "image_column", "flip", "skip_bad", "split", "max_pixels",
            "layout")
    settings = [{k: v for k, v in s.items() if k in keys} for s in summaries]
    differing = [rank for rank, s in enumerate(settings) if s != settings[0]]
    if differing:
        raise StreamingError(
            f"nodes {differing} ran with other settings than node 0 (source, split, input, tokenizer, column, flip "
            "or pixel budget)"
        )
    merged = {**settings[0], "num_nodes": num_nodes, "shards": sum(s["shards"] for s in summaries),
              "rows_in": sum(s["rows_in"] for s in summaries), "rows_in_per_node": [s["rows_in"] for s in summaries],
              "order": "node-major (file names sort so), then input order; re-sort by source_index"}
    write_dataset_card(out, merged, {merged.get("split") or "train": files})
    atomic_write_text(out / INFO_NAME, json.dumps(merged, indent=2) + "\n")
    return merged
