"""Train the continuous-latent baselines (Autoencoder or VAE) on shapes with accelerate.

    python training/baselines/train_baseline.py --config training/configs/seed_ae.json
    python training/baselines/train_baseline.py --config training/configs/seed_vae.json [--steps 100]

Same data order (training/data.py), encoder/decoder blocks and latent grid as the tokenizer; the VQ-VAE and
VQGAN rows of the comparison are training/train_tokenizer.py with seed_vqvae.json / seed_vqgan.json.
Outputs in output_dir: model.safetensors, baseline_config.json, metrics.jsonl, eval.json.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers.hf_argparser import HfArg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from image_tokenizer.config import ImageTokenizerConfig
from image_tokenizer.data.shapes import generate_arrays
from image_tokenizer.evaluation import reconstruction_metrics
from image_tokenizer.fileio import atomic_write_text, check_state_dict, load_tensors, save_tensors
from image_tokenizer.image_processing import postprocess
from training.baselines.models import VAE, Autoencoder
from training.config_cli import TrainingError, run_cli
from training.config_cli import parse_config as parse_dataclass_config
from training.data import StepBatches, open_source, to_model_input


@dataclass
class BaselineConfig:
    kind: str = HfArg(default="vae", help='"ae" or "vae"')
    output_dir: str = HfArg(default="runs/seed-vae", help="where model.safetensors, metrics.jsonl and eval.json go")
    model: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "encoder/decoder fields of ImageTokenizerConfig, as JSON or one at a time (--model.ch 32)"})
    latent_channels: int = HfArg(default=8, help="values per latent cell (the tokenizer has one code id per cell)")
    kl_weight: float = HfArg(default=1e-3, help="the VAE's KL term weight")
    num_train_images: int = HfArg(default=20000, help="how many shapes training images to generate")
    train_seed: int = HfArg(default=0, help="the seed of the training images")
    eval_images: int = HfArg(default=1000, help="held-out shapes images for the final evaluation (0 = skip)")
    eval_seed: int = HfArg(default=1, help="the seed of the held-out images")
    steps: int = HfArg(default=3000, help="optimizer steps")
    batch_size: int = HfArg(default=16, help="images per step")
    lr: float = HfArg(default=3e-4, help="AdamW learning rate")
    grad_clip: float = HfArg(default=1.0, help="gradient-norm clipping (0 = off)")
    seed: int = HfArg(default=0, help="model initialisation and batch order")
    log_every: int = HfArg(default=50, help="steps between metrics.jsonl rows")
    progress: bool = HfArg(default=True, help="show a progress bar")

    def validate(self) -> None:
        if self.kind not in ("ae", "vae"):
            raise TrainingError(f"kind must be 'ae' or 'vae', got {self.kind!r}")
        if self.steps < 1 or self.batch_size < 1 or self.latent_channels < 1:
            raise TrainingError("steps, batch_size and latent_channels must be positive")


def build(config: BaselineConfig) -> Autoencoder:
    model_config = ImageTokenizerConfig(**config.model)
    if config.kind == "ae":
        return Autoencoder(model_config, config.latent_channels)
    return VAE(model_config, config.latent_channels, config.kl_weight)


def load_baseline(directory: str | Path) -> tuple[Autoencoder, BaselineConfig]:
    """A trained baseline from its folder (safetensors, strict)."""
    directory = Path(directory)
    config = BaselineConfig(**json.loads((directory / "baseline_config.json").read_text()))
    model = build(config)
    weights = load_tensors(directory / "model.safetensors")
    check_state_dict(directory / "model.safetensors", weights, model.state_dict())
    model.load_state_dict(weights, strict=True)
    return model.eval(), config


@torch.no_grad()
def reconstruct(model: Autoencoder, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """uint8 [N, H, W, 3] -> uint8 reconstructions (the VAE decodes its posterior mean)."""
    preprocessing = model.config.preprocessing
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(torch.from_numpy(images[start : start + batch_size]), preprocessing).to(device)
        out.append(postprocess(model.reconstruct(x), preprocessing, "np"))
    return np.concatenate(out)


def train(config: BaselineConfig) -> dict[str, Any]:
    config.validate()
    accelerator = Accelerator()
    set_seed(config.seed)
    model = build(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.99))
    preprocessing = model.config.preprocessing
    source = open_source("shapes", model.config.resolution, preprocessing, num_shapes=config.num_train_images,
                         seed=config.train_seed, num_workers=2)
    batches = StepBatches(source, config.batch_size, config.seed, 0, config.steps,
                          accelerator.process_index, accelerator.num_processes)
    model_p, optimizer_p = accelerator.prepare(model, optimizer)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "metrics.jsonl"
    log_path.unlink(missing_ok=True)
    bar = tqdm(total=config.steps, desc=f"train {config.kind}", disable=not config.progress)
    start, tick = time.perf_counter(), time.perf_counter()
    model_p.train()
    for step in range(1, config.steps + 1):
        images, _ = batches[step - 1]
        x = to_model_input(images, preprocessing).to(accelerator.device)
        _, terms = model_p(x)
        if not torch.isfinite(terms["loss"]):
            raise TrainingError(f"non-finite loss {float(terms['loss'])} at step {step}")
        optimizer_p.zero_grad(set_to_none=True)
        accelerator.backward(terms["loss"])
        if config.grad_clip > 0:
            accelerator.clip_grad_norm_(model_p.parameters(), config.grad_clip)
        optimizer_p.step()
        bar.update(1)
        if step % config.log_every == 0 or step == config.steps:
            logs = {k: float(v.detach()) for k, v in terms.items()}
            logs["seconds_per_step"] = (time.perf_counter() - tick) / config.log_every
            tick = time.perf_counter()
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
            with open(log_path, "a") as handle:
                handle.write(json.dumps({"step": step, **logs}) + "\n")
    bar.close()
    seconds_per_step = (time.perf_counter() - start) / config.steps
    model.eval()
    save_tensors(out / "model.safetensors", {k: v.contiguous() for k, v in model.state_dict().items()})
    atomic_write_text(out / "baseline_config.json", json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    metrics: dict[str, Any] = {"seconds_per_step": seconds_per_step, "steps": config.steps}
    if config.eval_images:
        images, holes = generate_arrays(config.eval_images, seed=config.eval_seed)
        metrics.update(reconstruction_metrics(images, reconstruct(model, images), holes))
    atomic_write_text(out / "eval.json", json.dumps(metrics, indent=2) + "\n")
    print(f"saved {out}: {json.dumps(metrics)}")
    return {"model": model, "metrics": metrics, "output_dir": out}


def parse_config(argv: list[str] | None = None) -> tuple[BaselineConfig, bool]:
    config, resume = parse_dataclass_config(BaselineConfig, argv, __doc__)
    if resume:
        raise TrainingError("baseline runs are short and have no checkpoints; --resume is not supported, rerun instead")
    return config, resume


def main(argv: list[str] | None = None) -> int:
    return run_cli("train_baseline", parse_config, train, argv)


if __name__ == "__main__":
    sys.exit(main())
