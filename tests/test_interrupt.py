"""Ctrl-C during a non-streaming pretokenize with worker processes: one line, exit status 130, nothing written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_ctrl_c_during_a_two_process_map_is_one_line_and_130(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "tokens"
    # 1,500 rows at batch 1 keep the map busy for seconds (about 130 rows/s on 2 shared cores), so Ctrl-C lands in it
    argv = [sys.executable, "-m", "image_tokenizer.cli", "pretokenize", "--data", "shapes", "--num", "1500",
            "--num-proc", "2", "--batch-size", "1", "--model", str(tmp_path / "model"), "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    # A new session stands in for the terminal's process group: Ctrl-C signals every process in it.
    child = subprocess.Popen(argv, stderr=subprocess.PIPE, env=env, start_new_session=True, cwd=tmp_path)
    seen = b""
    deadline = time.monotonic() + 300
    while b"pretokenize (num_proc=2)" not in seen or b"| 0/" in seen.rsplit(b"\r", 1)[-1]:
        chunk = os.read(child.stderr.fileno(), 4096)  # the map's progress bar: rows are being written
        assert chunk and time.monotonic() < deadline, seen.decode(errors="replace")[-2000:]
        seen += chunk
    os.killpg(child.pid, signal.SIGINT)
    try:
        _, rest = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        pytest.fail("the run did not stop within 120 s of Ctrl-C")
    assert child.returncode == 130
    lines = [line for line in rest.decode(errors="replace").replace("\r", "\n").splitlines() if line.strip()]
    assert "Traceback" not in rest.decode(errors="replace")
    assert lines[-1] == "image-tokenizer: interrupted"
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tokens")]
