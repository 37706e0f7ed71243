"""`benchmarks/pretokenize.py --engine ray`: the Ray engine against the local engine on the same image folder.

Both read the same folder of shapes PNGs (a `datasets` Dataset) and end with ids on disk: the local engine with
`pretokenize` (its default path on the device: Dataset.map with --num-proc on a CPU, DataLoader workers on a GPU)
and save_to_disk; the Ray engine with `pretokenize(engine="ray")` writing its parquet shards, once per actor
count in --actors. Runs alternate (this machine's speed drifts); medians are reported. Each run's CPU-seconds
are those of this process and every process under it (Ray's workers included), sampled as they run. Ray's
overhead: its start (ray.init, once), the fixed cost of a run (one on --fixed-images images) and the CPU-seconds
per image beyond the local engine's.
"""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from image_tokenizer import ImageTokenizer
from image_tokenizer.pretokenize import load_image_dataset, pretokenize


class CpuMeter:
    """CPU-seconds (user + system) of this process and its descendants between start() and stop(): each
    process's counters are sampled every `every` seconds and its last reading kept, so a worker that ends mid-run
    still counts (up to its last sample)."""

    def __init__(self, every: float = 0.1):
        import psutil

        self.psutil, self.every, self.last = psutil, every, {}
        self.halt = threading.Event()

    def _sample(self) -> None:
        me = self.psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                times = process.cpu_times()
                self.last[process.pid] = times.user + times.system
            except self.psutil.Error:
                pass

    def _run(self) -> None:
        while not self.halt.wait(self.every):
            self._sample()

    def start(self) -> None:
        self._sample()
        self.first = dict(self.last)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> float:
        """The CPU-seconds since start()."""
        self.halt.set()
        self.thread.join()
        self._sample()
        return sum(value - self.first.get(pid, 0.0) for pid, value in self.last.items())


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU-seconds) of one run."""
    meter = CpuMeter()
    meter.start()
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    return wall, meter.stop()


def compare(args: Any, tokenizer: ImageTokenizer, folder: Path, root: Path) -> dict[str, Any]:
    """Every engine's runs over the folder, alternating, and Ray's overheads."""
    import ray

    load_before = os.getloadavg()
    start = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="WARNING", **({"address": args.ray_address} if args.ray_address else {}))
    ray_init_s = time.perf_counter() - start
    dataset = load_image_dataset(str(folder))
    engines: dict[str, Callable[[Path], None]] = {
        "local": lambda out: pretokenize(dataset, tokenizer, batch_size=args.batch_size, num_proc=args.num_proc,
                                         device=args.device, load_from_cache_file=False).save_to_disk(str(out)),
    }
    for actors in args.actors:
        engines[f"ray, {actors} actor(s)"] = lambda out, actors=actors: pretokenize(
            dataset, tokenizer, engine="ray", actors=actors, gpus_per_actor=args.gpus_per_actor, output_dir=str(out),
            batch_size=args.batch_size, shard_size=args.shard_size, progress=False)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    outputs = {name: root / f"out-{index}" for index, name in enumerate(engines)}
    for _ in range(args.repeats):
        for name, run in engines.items():
            shutil.rmtree(outputs[name], ignore_errors=True)
            runs[name].append(timed(lambda run=run, out=outputs[name]: run(out)))
    agreement = id_agreement(outputs)
    fixed_s = fixed_cpu_s = None
    if args.fixed_images:
        few = dataset.select(range(min(args.fixed_images, len(dataset))))
        fixed_s, fixed_cpu_s = timed(lambda: pretokenize(few, tokenizer, engine="ray", actors=args.actors[0], output_dir=str(root / "few"),
                                               gpus_per_actor=args.gpus_per_actor, progress=False))
    ray.shutdown()
    images = len(dataset)
    rows = {name: {"images_per_s": images / statistics.median(w for w, _ in r),
                   "cpu_s_per_image": statistics.median(c for _, c in r) / images,
                   "wall_s_each_run": [w for w, _ in r], "cpu_s_each_run": [c for _, c in r]} for name, r in runs.items()}
    local_cpu = rows["local"]["cpu_s_per_image"]
    for name, row in rows.items():
        row["extra_cpu_ms_per_image"] = 1000 * (row["cpu_s_per_image"] - local_cpu)
        row["id_agreement_with_local"] = agreement[name]
        if fixed_cpu_s is not None and name != "local":  # beyond the run's fixed cost (actors started, planning)
            marginal = (statistics.median(c for _, c in runs[name]) - fixed_cpu_s) / (images - args.fixed_images)
            row["marginal_extra_cpu_ms_per_image"] = 1000 * (marginal - local_cpu)
    return {"ray_init_s": ray_init_s, "ray_fixed_run_s": fixed_s, "ray_fixed_run_cpu_s": fixed_cpu_s,
            "fixed_images": args.fixed_images, "engines": rows,
            "load_average_before_after": [load_before[0], os.getloadavg()[0]],
            "cpu_count": os.cpu_count()}


def id_agreement(outputs: dict[str, Path]) -> dict[str, float]:
    """The share of each engine's ids equal to the local engine's, row by row (by source_index)."""
    import datasets
    import numpy as np

    local = datasets.load_from_disk(str(outputs["local"])).sort("source_index").with_format("numpy")
    reference = np.stack(local["input_ids"])
    shares = {}
    for name, folder in outputs.items():
        rows = local if name == "local" else datasets.load_dataset(str(folder), split="train").sort("source_index")
        ids = np.stack(rows.with_format("numpy")["input_ids"])
        shares[name] = float((ids == reference).mean()) if ids.shape == reference.shape else 0.0
    return shares


def report_lines(results: dict[str, Any], args: Any) -> list[str]:
    """The markdown table of the engines and the overheads."""
    figures = results["ray"]
    header = ("| engine | images/s (median) | CPU-s per image (median) | extra CPU ms per image vs local | ids equal to local "
              "| wall s, each run |")
    lines = [header, "|---|---|---|---|---|---|"]
    for name, row in figures["engines"].items():
        lines.append(f"| {name} | {row['images_per_s']:.1f} | {row['cpu_s_per_image'] * 1000:.1f} ms | "
                     f"{row['extra_cpu_ms_per_image']:+.1f} | {row['id_agreement_with_local']:.5f} | "
                     + ", ".join(f"{w:.1f}" for w in row["wall_s_each_run"]) + " |")
    fixed = figures["ray_fixed_run_s"]
    fixed_line = ""
    if fixed is not None:
        marginal = ", ".join(f"{name}: {row['marginal_extra_cpu_ms_per_image']:+.1f} ms" for name, row in figures["engines"].items()
                             if "marginal_extra_cpu_ms_per_image" in row)
        fixed_line = (f" A Ray run's fixed cost (actors started, pipeline planned, {figures['fixed_images']} images): "
                      f"{fixed:.1f} s, {figures['ray_fixed_run_cpu_s']:.1f} CPU-s. Ray's CPU per image beyond the local "
                      f"engine's once that fixed cost is set aside: {marginal}.")
    lines += ["", f"Ray's start (`ray.init`, once): {figures['ray_init_s']:.1f} s.{fixed_line}",
              "CPU-seconds are those of this process and every process under it (Ray's workers and daemons, `datasets`' "
              "map processes), sampled every 0.1 s while each run ran. The machine is shared with other work (1-minute "
              "load average {:.1f} before, {:.1f} after, on {} cores): wall-clock rates move with it, CPU-seconds "
              "much less.".format(*figures["load_average_before_after"], figures["cpu_count"])]
    return lines
