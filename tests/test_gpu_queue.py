"""The GPU queue (benchmarks/gpu_queue.json) and its runner: well-formed entries, the plan of one call, deadlines,
the bookkeeping, and every job run at toy size on the CPU and checked, so the queue never rots between leases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_queue
from gpu_checks import CHECKS, check_job


def test_every_job_is_well_formed_and_has_a_script_and_a_check():
    header, jobs = gpu_queue.load_queue()
    assert "about" in header and len(jobs) >= 7
    for job in jobs:
        script = job.command.split()[-1]
        assert job.command.startswith("bash ") and (ROOT / script).is_file(), job.name
        assert job.writes and all(path.startswith("benchmarks/results/") for path in job.writes), job.name
        assert job.name in CHECKS and job.check.startswith(f"python benchmarks/gpu_queue.py check {job.name} "), job.name
    assert [job.name for job in jobs][:5] == ["speed-encode-64", "speed-encode-256", "speed-pretokenize", "speed-train", "claim"]


def _job(name: str = "toy", minutes: float = 1, command: str = "true", writes: list[str] | None = None) -> gpu_queue.Job:
    return gpu_queue.Job(name=name, issue=30, what="a toy", minutes=minutes, command=command, writes=writes or [],
                         check=f"python benchmarks/gpu_queue.py check {name} --out DIR")


def test_a_call_runs_the_first_pending_jobs_that_fit_in_its_budget():
    jobs = [_job(name, minutes) for name, minutes in (("a", 3), ("b", 2.5), ("c", 2.5), ("d", 3), ("e", 1))]
    jobs[0].state = "done"
    chosen, skipped = gpu_queue.plan(jobs, budget_s=7 * 60, smoke=False, only=None)
    assert [job.name for job in chosen] == ["b", "c", "e"]  # in queue order, passing over one that does not fit
    assert skipped == {"d": "needs 3 min, 2.0 left"}
    chosen, _ = gpu_queue.plan(jobs, budget_s=60, smoke=True, only={"a", "d"})
    assert [job.name for job in chosen] == ["a", "d"]  # a smoke run takes every job it is given, done or not




def test_a_job_past_its_deadline_is_killed_with_its_children(tmp_path):
    start = time.time()
    result = gpu_queue.run_one(_job(command="sleep 30 & sleep 30; wait"), tmp_path, time.time() + 0.5, True, sys.executable, grace_s=0.5)
    assert result["outcome"] == "failed" and result["exit_status"] == -9 and time.time() - start < 10


def test_a_job_reports_complete_incomplete_or_failed(tmp_path):
    writes = ["benchmarks/results/toy.json"]
    made = 'mkdir -p "$OUT/repo/benchmarks/results" && echo "{}" > "$OUT/repo/benchmarks/results/toy.json"'
    assert gpu_queue.run_one(_job(command=made, writes=writes), tmp_path, time.time() + 30, True, sys.executable)["outcome"] == "complete"
    assert gpu_queue.run_one(_job(command="exit 75"), tmp_path, time.time() + 30, True, sys.executable)["outcome"] == "incomplete"
    missing = gpu_queue.run_one(_job(writes=["benchmarks/results/other.json"]), tmp_path, time.time() + 30, True, sys.executable)
    assert missing["outcome"] == "failed" and missing["missing"] == ["benchmarks/results/other.json"]
    assert (tmp_path / "jobs" / "toy.log").exists()


def test_marking_a_job_keeps_the_queue_valid(tmp_path, capsys):
    queue = tmp_path / "queue.json"
    queue.write_text((ROOT / "benchmarks" / "gpu_queue.json").read_text())
    with pytest.raises(SystemExit, match="needs --machine"):
        gpu_queue.main(["--queue", str(queue), "mark", "claim", "done"])
    gpu_queue.main(["--queue", str(queue), "mark", "claim", "done", "--machine", "NVIDIA H200", "--seconds", "412"])
    gpu_queue.main(["--queue", str(queue), "mark", "recipe", "failed", "--reason", "lease ended between segments"])
    _, jobs = gpu_queue.load_queue(queue)
    states = {job.name: job for job in jobs}
    assert states["claim"].state == "done" and states["claim"].machine == "NVIDIA H200" and states["claim"].seconds == 412
    assert states["recipe"].state == "failed" and states["recipe"].reason == "lease ended between segments"
    assert "claim" in capsys.readouterr().out
    gpu_queue.main(["--queue", str(queue), "mark", "claim", "pending"])
    assert json.loads(queue.read_text())["jobs"][4] == json.loads((ROOT / "benchmarks" / "gpu_queue.json").read_text())["jobs"][4]


def test_a_result_without_a_gpu_is_refused_by_the_check(tmp_path):
    _, jobs = gpu_queue.load_queue()
    job = next(job for job in jobs if job.name == "speed-train")
    for path in job.writes:
        (tmp_path / "repo" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "repo" / path).write_text(json.dumps({"machine": {"cuda": None}, "variants": {}}))
    assert any("records no GPU" in problem for problem in check_job(job, tmp_path))


def test_every_job_runs_at_toy_size_on_the_cpu_and_passes_its_check(tmp_path, preloaded_python):
    """`gpu_next.sh --smoke`: each job's real script with toy sizes, then each job's check on what it wrote. Its
    ~30 Python commands run in a Python that imported torch, transformers and datasets once (tests/preloaded_python.py)."""
    env = {**os.environ, "OUT": str(tmp_path), "PY": preloaded_python, "BUDGET_S": "3000", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(["bash", "benchmarks/gpu_next.sh", "--smoke", "--parallel", "2"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    report = json.loads((tmp_path / "report.json").read_text())
    outcomes = {entry["job"]: entry["outcome"] for entry in report["ran"]}
    logs = {name: (tmp_path / "jobs" / f"{name}.log").read_text()[-2000:] for name, o in outcomes.items() if o != "complete"}
    assert run.returncode == 0 and set(outcomes.values()) == {"complete"}, (run.stdout, logs)
    _, jobs = gpu_queue.load_queue()
    assert sorted(outcomes) == sorted(job.name for job in jobs)
    for job in jobs:
        assert check_job(job, tmp_path, smoke=True) == [], job.name
