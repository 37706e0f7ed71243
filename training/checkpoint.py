"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a directory `step-NNNNNNN/` written under a temporary name and renamed when complete;
the `latest` file, replaced atomically afterwards, names the newest. A kill or a full disk at any moment
leaves the previous checkpoint and `latest` intact. (accelerate's save_state pickles optimizer and RNG
state, and loading a pickle can run code, so we keep our own format.)
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from image_tokenizer.fileio import atomic_write_text, check_state_dict, load_tensors, save_tensors

LATEST = "latest"
STATE = "state.json"


class CheckpointMismatch(RuntimeError):
    """A checkpoint that does not fit the model or run it is being resumed into."""


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value
            else:
                extra.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "extra": extra}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in meta["extra"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    meta = {"numpy": [kind, keys.tolist(), pos, has_gauss, cached], "python": [version, list(internal), gauss]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    root: str | Path,
    step: int,
    models: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    extra: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` under root atomically, point `latest` at it, and keep the newest `keep`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    final = root / name
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for key, model in models.items():
            save_tensors(tmp / f"{key}.safetensors", model.state_dict())
        optimizer_meta = {}
        for key, optimizer in optimizers.items():
            tensors, meta = _flatten_optimizer(optimizer)
            save_tensors(tmp / f"optimizer_{key}.safetensors", tensors)
            optimizer_meta[key] = meta
        rng_tensors, rng_meta = rng_state()
        save_tensors(tmp / "rng.safetensors", rng_tensors)
        state = {
            "step": step,
            "optimizers": optimizer_meta,
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "rng": rng_meta,
            **extra,
        }
        atomic_write_text(tmp / STATE, json.dumps(state) + "\n")
        if final.exists():  # re-saving the same step: move the old one aside only once the new one is complete
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(root / LATEST, name + "\n")
    for old in sorted(root.glob("step-*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    root = Path(root)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / STATE).is_file():
        raise CheckpointMismatch(f"{pointer} names {path.name}, which is missing or incomplete")
    return path


def load_checkpoint(
    path: str | Path,
    models: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
) -> dict[str, Any]:
    """Restore models (strictly), optimizers, schedulers and RNG; returns the JSON state (step, data, ...)."""
    path = Path(path)
    state = json.loads((path / STATE).read_text())
    for key, model in models.items():
        weights = load_tensors(path / f"{key}.safetensors")
        check_state_dict(path / f"{key}.safetensors", weights, model.state_dict())
        model.load_state_dict(weights, strict=True)
    for key, optimizer in optimizers.items():
        tensors = load_tensors(path / f"optimizer_{key}.safetensors")
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizers"][key]))
    for key, scheduler in schedulers.items():
        scheduler.load_state_dict(state["schedulers"][key])
    set_rng_state(load_tensors(path / "rng.safetensors"), state["rng"])
    return state
