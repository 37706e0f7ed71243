"""Node-sharded streaming pre-tokenization without a cluster: three local processes play three nodes, one is
killed mid-run and restarted, and the merged output equals a single-process run row for row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import datasets
import numpy as np
import pytest
import torch

from image_tokenizer import ImageTokenizer
from image_tokenizer.cli import main
from image_tokenizer.pretokenize.nodes import NodeFolder, NodeSpec, StreamingError, exclusive, merge_nodes, node_spec
from tests.helpers import tiny_config

ROWS, SHARD = 150, 5


@pytest.fixture
def tok_dir(tmp_path):
    torch.manual_seed(0)
    ImageTokenizer(tiny_config()).save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def command(tok_dir, out, *extra, python: str = sys.executable) -> list[str]:
    return [python, "-m", "image_tokenizer.cli", "pretokenize", "--model", str(tok_dir), "--data", "shapes",
            "--num", str(ROWS), "--streaming", "--shard-size", str(SHARD), "--batch-size", "8", "--no-progress",
            "--output", str(out), *extra]


def rows_by_source(folder) -> dict[int, list[int]]:
    table = datasets.load_dataset("parquet", data_dir=str(folder / "data"), split="train")
    indices = table["source_index"]
    assert len(indices) == len(set(indices)), "a row was written twice"
    return dict(zip(indices, table["input_ids"]))


def test_three_nodes_one_killed_and_restarted_merge_to_the_single_process_rows(tmp_path, tok_dir, preloaded_python):
    """Nodes 0 and 2 and the restart run forked from the preloaded python (conftest); node 1, stopped and killed
    mid-run, is a plain interpreter, so SIGSTOP and SIGKILL reach the process that writes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert main(command(tok_dir, tmp_path / "single")[3:]) == 0  # the single-process reference, in this process
    out = tmp_path / "nodes"
    workers = [subprocess.Popen(command(tok_dir, out, "--num-nodes", "3", "--node-rank", str(rank),
                                        python=sys.executable if rank == 1 else preloaded_python), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for rank in range(3)]
    victim = NodeFolder(out, NodeSpec(3, 1))
    deadline = time.monotonic() + 120
    while not victim.shards() and time.monotonic() < deadline:
        time.sleep(0.002)
    workers[1].send_signal(signal.SIGSTOP)  # freeze it at once, then check it is really mid-run
    assert victim.shards() and not (victim.home / "pretokenize_info.json").is_file(), "node 1 was not caught mid-run"
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait()
    for worker in (workers[0], workers[2]):
        assert worker.wait(timeout=300) == 0, worker.stderr.read().decode()
    assert not (out / "pretokenize_info.json").is_file()  # not complete while node 1 is missing
    with pytest.raises(StreamingError, match=r"node 1 of 3 \(node-00001-of-00003\) has not finished"):
        merge_nodes(out)
    assert main(["pretokenize-merge", str(out)]) == 2
    restart = subprocess.run(command(tok_dir, out, "--num-nodes", "3", "--node-rank", "1", python=preloaded_python),
                             env=env, capture_output=True, text=True, check=False)
    assert restart.returncode == 0, restart.stderr
    assert "the output is complete" in restart.stdout  # the last node to finish merged
    merged = json.loads((out / "pretokenize_info.json").read_text())
    assert merged["rows_in"] == ROWS and merged["num_nodes"] == 3 and sum(merged["rows_in_per_node"]) == ROWS

    single, nodes = rows_by_source(tmp_path / "single"), rows_by_source(out)
    assert sorted(nodes) == list(range(ROWS))  # every input row exactly once
    assert all(nodes[i] == single[i] for i in range(ROWS))  # the same ids, row for row
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names[0].startswith("node-00000-of-00003-shard-") and names[-1].startswith("node-00002-of-00003-shard-")
    assert not [n for n in names if n.startswith(".")]  # the killed run's temporary file was cleaned up on restart
    table = datasets.load_dataset("parquet", data_dir=str(out / "data"), split="train")
    assert table["node_rank"] == sorted(table["node_rank"])  # node-major order, as documented


def test_bad_node_settings_are_refused_before_anything_is_written(tmp_path, tok_dir, capsys):
    out = tmp_path / "out"
    base = ["pretokenize", "--model", str(tok_dir), "--data", "shapes", "--num", "12", "--streaming", "--shard-size", "4",
            "--no-progress", "--output", str(out)]
    assert main([*base, "--num-nodes", "3", "--node-rank", "3"]) == 2
    assert "node rank 3 is out of range for 3 node(s)" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--num-nodes", "0", "--node-rank", "0"]) == 2
    assert "argument --num-nodes: must be at least 1, got 0" in capsys.readouterr().err
    assert main([*base, "--num-nodes", "3", "--node-rank", "0"]) == 0
    assert main([*base, "--num-nodes", "2", "--node-rank", "1"]) == 2
    assert "split across 3 nodes but this worker was started with 2" in capsys.readouterr().err
    assert not (out / "nodes" / "node-00001-of-00002").exists()
    with exclusive(NodeFolder(out, NodeSpec(3, 2))):  # a live worker already holds rank 2
        assert main([*base, "--num-nodes", "3", "--node-rank", "2"]) == 2
    assert "another worker is already writing node rank 2 of 3" in capsys.readouterr().err
    with pytest.raises(StreamingError, match="node 1 of 3 .* has not started"):
        merge_nodes(out)
    assert main([*base, "--num-nodes", "3", "--node-rank", "1"]) == 0
    assert main([*base, "--num-nodes", "3", "--node-rank", "2"]) == 0
    assert json.loads((out / "pretokenize_info.json").read_text())["rows_in"] == 12


def test_node_split_comes_from_flags_torchrun_slurm_or_kubernetes():
    assert node_spec(4, 1, env={}) == NodeSpec(4, 1, "--num-nodes/--node-rank")
    assert node_spec(env={"WORLD_SIZE": "8", "RANK": "5"}).node_rank == 5
    slurm = node_spec(env={"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10"})
    assert (slurm.num_nodes, slurm.node_rank) == (4, 2) and "SLURM" in slurm.origin
    assert node_spec(6, None, env={"JOB_COMPLETION_INDEX": "3"}).node_rank == 3
    assert node_spec(env={}) == NodeSpec()
    with pytest.raises(StreamingError, match="go together"):
        node_spec(None, 2, env={})
    with pytest.raises(StreamingError, match="WORLD_SIZE='x' is not an integer"):
        node_spec(env={"WORLD_SIZE": "x", "RANK": "0"})


def test_a_stream_split_by_example_keeps_global_source_indices(tmp_path, tokenizer):
    from image_tokenizer.pretokenize import pretokenize_streaming

    images = datasets.Dataset.from_dict({"image": [np.full((16, 16, 3), i, np.uint8) for i in range(7)], "n": list(range(7))})
    images = images.cast_column("image", datasets.Image())
    stream = images.to_iterable_dataset(num_shards=1)  # one shard for two nodes: split row by row
    for rank in range(2):
        pretokenize_streaming(stream, tokenizer, str(tmp_path / "o"), shard_size=3, progress=False, node=NodeSpec(2, rank))
    table = datasets.load_dataset("parquet", data_dir=str(tmp_path / "o" / "data"), split="train")
    assert sorted(table["source_index"]) == list(range(7)) and table["source_index"] == table["n"]
