"""The GPU queue: pending GPU jobs in priority order (benchmarks/gpu_queue.json), a runner that spends one device
call on the first ones that fit, and the bookkeeping afterwards (check on the CPU, then mark done or failed).

    python benchmarks/gpu_queue.py list                                   # the queue, one line a job
    python benchmarks/gpu_queue.py run --out DIR [--budget-s 540]         # what benchmarks/gpu_next.sh calls
    python benchmarks/gpu_queue.py run --out DIR --smoke                  # every job at toy size on the CPU
    python benchmarks/gpu_queue.py check JOB --out DIR                    # a job's results, checked on the CPU
    python benchmarks/gpu_queue.py mark JOB done --machine "NVIDIA H200" [--seconds 212]
    python benchmarks/gpu_queue.py mark JOB failed --reason "..."         # or pending, to queue it again

A job is a bash command run from the repository root with these variables set: OUT (the call's output folder;
files for the repository go under $OUT/repo/<path in the repo>, anything else under $OUT/extra/<job>/), PY (the
python to use), DEVICE (cuda, or cpu under --smoke), SMOKE (1 for toy size), DEADLINE (epoch seconds by which the
job must have packed its results). A job exits 0 when complete, 75 when it made progress but needs another call
(its state stays pending), anything else on failure. Its log is $OUT/jobs/<job>.log; $OUT/report.json says what
ran. A job is marked done only after its results were checked here and committed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUEUE = ROOT / "benchmarks" / "gpu_queue.json"
STATES = ("pending", "done", "failed")
INCOMPLETE = 75  # exit status of a job that made progress and needs another call (EX_TEMPFAIL)
GRACE_S = 20  # after DEADLINE, a job gets this long to exit before it is killed


@dataclass
class Job:
    """One entry of the queue (see the module docstring for the command's contract)."""

    name: str
    issue: int
    what: str
    minutes: float  # device minutes one call of it needs (at most 9)
    command: str
    writes: list[str]  # paths under the repository that a complete run leaves under $OUT/repo
    check: str  # the command that checks its results here, on the CPU
    state: str = "pending"
    date: str | None = None
    machine: str | None = None
    seconds: float | None = None
    reason: str | None = None
    notes: str | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"{QUEUE.name}: job {self.name!r} has state {self.state!r}; use one of {', '.join(STATES)}")
        if not 0 < self.minutes <= 9:
            raise ValueError(f"{QUEUE.name}: job {self.name!r} needs {self.minutes} minutes; one call holds 1 to 9")


def load_queue(path: Path = QUEUE) -> tuple[dict, list[Job]]:
    """(the file's other fields, its jobs in priority order)."""
    data = json.loads(path.read_text())
    jobs = [Job(**entry) for entry in data.pop("jobs")]
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: job names repeat: {names}")
    return data, jobs


def save_queue(header: dict, jobs: list[Job], path: Path = QUEUE) -> None:
    """Write the queue atomically, without the fields a job leaves unset."""
    entries = [{key: value for key, value in asdict(job).items() if value is not None} for job in jobs]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**header, "jobs": entries}, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def find(jobs: list[Job], name: str) -> Job:
    for job in jobs:
        if job.name == name:
            return job
    raise SystemExit(f"gpu_queue: no job {name!r}; the jobs are {', '.join(job.name for job in jobs)}")


def run_one(job: Job, out: Path, deadline: float, smoke: bool, python: str, grace_s: float = GRACE_S) -> dict:
    """Run one job's command under its deadline; its whole process group is killed grace_s after it."""
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    (out / "extra" / job.name).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OUT": str(out.resolve()), "PY": python, "DEVICE": "cpu" if smoke else "cuda",
           "SMOKE": "1" if smoke else "0", "DEADLINE": str(int(deadline)), "JOB": job.name, "PYTHONUNBUFFERED": "1"}
    if smoke:  # toy jobs run side by side on a few cores: one thread each, or their threads spin against each other
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.time()
    with open(out / "jobs" / f"{job.name}.log", "w") as log:
        process = subprocess.Popen(["bash", "-c", job.command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        rc, cpu_s = _wait(process.pid, deadline + grace_s)
        process.returncode = rc  # reaped by _wait (os.wait4 gives its CPU time too)
    missing = [path for path in job.writes if not (out / "repo" / path).exists()]
    outcome = "complete" if rc == 0 else "incomplete" if rc == INCOMPLETE else "failed"
    if outcome == "complete" and missing:
        outcome = "failed"
    return {"job": job.name, "outcome": outcome, "exit_status": rc, "seconds": round(time.time() - start, 1),
            "cpu_seconds": round(cpu_s, 1), "missing": missing}


def _wait(pid: int, kill_at: float) -> tuple[int, float]:
    """(exit status, negative for a signal; CPU seconds of the job and the children it waited for), killing the
    job's process group at kill_at."""
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        if time.time() >= kill_at:
            os.killpg(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        time.sleep(0.2)


def plan(jobs: list[Job], budget_s: float, smoke: bool, only: set[str] | None) -> tuple[list[Job], dict[str, str]]:
    """The jobs this call runs, in queue order, and why each other one is left out."""
    chosen, skipped, left = [], {}, budget_s
    for job in jobs:
        if only and job.name not in only:
            continue
        if job.state != "pending" and not smoke:
            continue
        if smoke or job.minutes * 60 <= left:
            chosen.append(job)
            left -= job.minutes * 60
        else:
            skipped[job.name] = f"needs {job.minutes} min, {left / 60:.1f} left"
    return chosen, skipped


def run(args: argparse.Namespace) -> int:
    """Run the first pending jobs that fit in --budget-s, each under its deadline; write $OUT/report.json."""
    _, jobs = load_queue(Path(args.queue))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    only = set(args.only.split(",")) if args.only else None
    chosen, skipped = plan(jobs, args.budget_s, args.smoke, only)
    report = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "smoke": args.smoke, "budget_s": args.budget_s, "ran": [], "skipped": skipped, "machine": machine()}
    lock = threading.Lock()

    def one(job: Job) -> dict:
        deadline = start + args.budget_s if args.smoke else min(time.time() + job.minutes * 60, start + args.budget_s)
        print(f"[{time.time() - start:.0f}s] {job.name}: {job.what}", flush=True)
        result = run_one(job, out, deadline, args.smoke, args.python)
        print(f"[{time.time() - start:.0f}s] {job.name}: {result['outcome']} (exit {result['exit_status']}, "
              f"{result['seconds']} s){'; missing ' + ', '.join(result['missing']) if result['missing'] else ''}", flush=True)
        with lock:
            report["ran"].append(result)
            (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        return result

    # On a GPU the jobs run one after another under their deadlines; a smoke run may take them two at a time.
    with ThreadPoolExecutor(max_workers=args.parallel if args.smoke else 1) as pool:
        list(pool.map(one, chosen))
    for name, why in skipped.items():
        print(f"not run: {name}: {why}")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r["outcome"] != "failed" for r in report["ran"]) else 1


def machine() -> str:
    """The GPU's name, or the CPU's, for the report."""
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], check=False, capture_output=True,
                              text=True, timeout=20).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return f"cpu ({os.cpu_count()} cores)"


def show(args: argparse.Namespace) -> int:
    _, jobs = load_queue(Path(args.queue))
    for job in jobs:
        status = job.state + (f" {job.date} on {job.machine}" if job.state == "done" else "")
        status += f": {job.reason}" if job.reason else ""
        print(f"{job.name:<22} {job.minutes:>4} min  issue {job.issue}  {status}")
    return 0


def mark(args: argparse.Namespace) -> int:
    """Set a job's state after its results were checked here (done) or its failure understood (failed)."""
    header, jobs = load_queue(Path(args.queue))
    job = find(jobs, args.job)
    if args.state == "done" and not args.machine:
        raise SystemExit("gpu_queue: mark JOB done needs --machine (the GPU it ran on)")
    if args.state == "failed" and not args.reason:
        raise SystemExit("gpu_queue: mark JOB failed needs --reason")
    job.state = args.state
    job.date = datetime.date.today().isoformat() if args.state != "pending" else None
    job.machine = args.machine if args.state == "done" else None
    job.seconds = args.seconds if args.state == "done" else None
    job.reason = args.reason
    save_queue(header, jobs, Path(args.queue))
    return show(args)


def check(args: argparse.Namespace) -> int:
    """A job's results checked on the CPU: see benchmarks/gpu_checks.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_checks import check_job

    _, jobs = load_queue(Path(args.queue))
    problems = check_job(find(jobs, args.job), Path(args.out), smoke=args.smoke)
    for problem in problems:
        print(f"- {problem}")
    print(f"{args.job}: {'checked, no problems' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queue", default=str(QUEUE))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the queue, one line a job").set_defaults(handler=show)
    runner = commands.add_parser("run", help="run the first pending jobs that fit")
    runner.add_argument("--out", required=True)
    runner.add_argument("--budget-s", type=float, default=540, help="seconds this call may spend (default 540)")
    runner.add_argument("--smoke", action="store_true", help="every job, at toy size, on the CPU")
    runner.add_argument("--only", help="comma-separated job names")
    runner.add_argument("--parallel", type=int, default=1, help="with --smoke: jobs run at once (default 1)")
    runner.add_argument("--python", default=sys.executable)
    runner.set_defaults(handler=run)
    checker = commands.add_parser("check", help="check a job's results on the CPU")
    checker.add_argument("job")
    checker.add_argument("--out", required=True, help="what the device call left under $OUT (repo/ and extra/)")
    checker.add_argument("--smoke", action="store_true", help="results of a --smoke run (CPU figures allowed)")
    checker.set_defaults(handler=check)
    marker = commands.add_parser("mark", help="set a job's state")
    marker.add_argument("job")
    marker.add_argument("state", choices=STATES)
    marker.add_argument("--machine")
    marker.add_argument("--seconds", type=float)
    marker.add_argument("--reason")
    marker.set_defaults(handler=mark)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
