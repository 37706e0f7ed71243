"""Two CPU processes (gloo) through accelerate stay in sync: weights, codebook and EMA statistics."""

import os
import subprocess
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def test_two_processes_stay_in_sync(tmp_path, preloaded_python):
    worker = Path(__file__).with_name("distributed_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # Not this test process (its threads make forking unsafe): a fresh script, run by the preloaded python
    command = [preloaded_python, str(worker), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=worker.parents[1], check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    with safe_open(str(tmp_path / "rank0.safetensors"), "pt") as handle:
        assert handle.metadata()["world_size"] == "2"
    rank0, rank1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between the two processes"
    for key in ("quantizer.codebook", "quantizer.ema_cluster_size", "quantizer.ema_embed_sum", "quantizer.usage_count"):
        assert key in rank0
    # The statistics hold both processes' counts: 4 steps x 8 images x 16x16 codes were seen in all.
    assert rank0["quantizer.usage_count"].sum() > 0
