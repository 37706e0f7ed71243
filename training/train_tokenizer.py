"""Stage 1: train the VQGAN tokenizer with accelerate, on one CPU up to many GPUs.

    python training/train_tokenizer.py --config training/configs/shapes64.json [--steps 200] [--model.ch 32]
    accelerate launch --num_processes 8 training/train_tokenizer.py --config ... --mixed_precision bf16
    python training/train_tokenizer.py --config ... --resume      # continue from the last checkpoint

Every config field can be overridden as --field VALUE or --section.field VALUE (VALUE is parsed as JSON
when it can be). Outputs in output_dir: checkpoints/, metrics.jsonl, samples/step-N.png and final/ (a
saved ImageTokenizer with a model card holding its held-out metrics).
"""

from __future__ import annotations

import dataclasses
import json
import math
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

if __package__ in (None, ""):  # run as a script: make `training` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_tokenizer import ImageTokenizer, ImageTokenizerConfig
from image_tokenizer.data.shapes import generate_arrays
from image_tokenizer.data.sources import split_source
from image_tokenizer.evaluation import evaluate_tokenizer, flat_metrics, source_labels
from image_tokenizer.fileio import atomic_path, atomic_write_text
from image_tokenizer.image_processing import postprocess
from image_tokenizer.modeling import VQModel
from image_tokenizer.visualize import side_by_side
from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.config_cli import TrainingError, run_cli
from training.config_cli import parse_config as parse_dataclass_config
from training.data import StepBatches, open_source, to_model_input
from training.losses import LossConfig, PatchDiscriminator, VQGANLoss


@dataclass
class TrainConfig:
    output_dir: str = "runs/tokenizer"
    model_name: str = "shapes-64"
    model: dict[str, Any] = field(default_factory=dict)  # ImageTokenizerConfig fields
    init_from: str | None = None  # start from a saved tokenizer's weights (fine-tuning, or more steps on a fresh schedule)
    loss: dict[str, Any] = field(default_factory=dict)  # LossConfig fields
    data: str = "shapes"  # "shapes", "emoji", an image folder, a saved dataset, or "hf:NAME"
    data_split: str = "train"
    image_column: str = "image"
    num_train_images: int = 20000  # shapes only
    train_seed: int = 0
    eval_images: int = 1000  # held-out images for the final evaluation (0 = skip): shapes, or at most this many of eval_data
    eval_seed: int = 1
    eval_data: str | None = None  # a held-out image folder / saved dataset / hf:NAME / "emoji" (else shapes, or eval_fraction)
    eval_split: str | None = None  # the split of eval_data ("test" for emoji); None: data_split
    eval_fraction: float = 0.0  # on your own data: hold out this share of it (seeded) for the final evaluation
    strict_data: bool = False
    steps: int = 10000
    batch_size: int = 64  # global, split across processes
    lr: float = 2e-4
    disc_lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    warmup_steps: int = 200
    lr_schedule: str = "cosine"  # "cosine" or "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    mixed_precision: str = "no"  # "no" or "bf16" (the quantizer stays fp32 either way)
    seed: int = 0
    kmeans_init: bool = True  # initialise a vq codebook by k-means on encoder outputs of the first batches (fsq, lfq: none)
    kmeans_batches: int = 4
    kmeans_iters: int = 10
    disc_ch: int = 64
    disc_layers: int = 2
    log_every: int = 20
    image_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    num_workers: int = 0  # DataLoader workers preparing the next batches ahead of the step (0: in this process)
    channels_last: bool = False  # model and images in channels_last (faster convolutions on GPUs)
    compile: str = ""  # a torch.compile backend for the model ("inductor"; "" = off)
    progress: bool = True

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise TrainingError("steps and batch_size must be positive")
        if self.lr_schedule not in ("cosine", "constant"):
            raise TrainingError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise TrainingError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise TrainingError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.eval_fraction and (self.eval_data or self.data == "shapes"):
            raise TrainingError("eval_fraction splits your own data; it goes with neither eval_data nor data 'shapes'")
        if ImageTokenizerConfig(**self.model).encoder_only:  # raises ConfigError with the reason
            raise TrainingError("model.encoder_only: an encoder-only tokenizer has no decoder to train")
        LossConfig(**self.loss).validate()


def parse_config(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    """--config FILE, then --field VALUE / --section.field VALUE overrides; returns (config, resume)."""
    config, resume = parse_dataclass_config(TrainConfig, argv, __doc__)
    config.betas = tuple(config.betas)
    config.validate()
    return config, resume


class LossHealth:
    """Non-finite losses, noticed without reading the device back every step: the first bad step and its
    value stay on the device, and check() (at log steps and before every save) raises. A bad update thus
    never reaches a checkpoint, and the GPU never waits for the host."""

    def __init__(self) -> None:
        self.records: dict[str, torch.Tensor] = {}

    def watch(self, name: str, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        record = self.records.setdefault(name, torch.full((2,), -1.0, device=loss.device))
        fresh = ~torch.isfinite(loss) & (record[0] < 0)
        record.copy_(torch.where(fresh, torch.stack([torch.full_like(loss, step), loss]), record))

    def check(self, out: Path) -> None:
        for name, record in self.records.items():
            step, value = record.tolist()
            if step >= 0:
                raise TrainingError(f"non-finite {name} loss ({value}) at step {int(step)}; "
                                    f"lower lr or resume from the last checkpoint in {out / 'checkpoints'}")


def lr_lambda(config: TrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@torch.no_grad()
def kmeans_init(model: VQModel, batches: list[torch.Tensor], iters: int, accelerator: Accelerator) -> None:
    """Set the codebook to k-means centroids of encoder outputs (the quantizer's public kmeans_init), computed
    on rank 0 and broadcast so every process starts from the same codebook."""
    with torch.no_grad():
        features = torch.cat([model.features(x) for x in batches])
    centroids = model.quantizer.kmeans_init(features, iters)
    if accelerator.num_processes > 1:
        torch.distributed.broadcast(centroids, src=0)
        model.quantizer.set_codebook(centroids)


def load_initial_weights(model: VQModel, name_or_path: str) -> None:
    """Copy a saved tokenizer's weights and codebook into `model`; its architecture must equal the run's."""
    initial = ImageTokenizer.from_pretrained(name_or_path)
    wanted, found = dataclasses.asdict(model.config), dataclasses.asdict(initial.config)
    differing = sorted(key for key in wanted.keys() | found.keys() if wanted.get(key) != found.get(key))
    if differing:
        details = "; ".join(f"{key}: run {wanted.get(key)!r} vs saved {found.get(key)!r}" for key in differing)
        raise TrainingError(f"init_from {name_or_path}: its model config differs from this run's ({details})")
    model.load_state_dict(initial.model.state_dict(), strict=True)


def drop_log_rows_after(log_path: Path, step: int) -> None:
    """Keep metrics.jsonl rows up to `step` (where a resumed run restarts), so each step is logged once."""
    if not log_path.is_file():
        return
    lines = log_path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        atomic_write_text(log_path, "".join(line + "\n" for line in kept))


@dataclass
class Parts:
    """What a run trains with, built once by build_parts: the models, their optimizers and schedule (plain, for
    checkpoints) and what accelerate prepared from them (for the steps)."""

    models: dict[str, Any]
    optimizers: dict[str, Any]
    schedulers: dict[str, Any]
    model_p: Any = None
    opt_g_p: Any = None
    disc_p: Any = None
    opt_d_p: Any = None
    loss_fn: Any = None
    forward: Any = None
    health: LossHealth = field(default_factory=LossHealth)


def build_parts(config: TrainConfig, tok_config: ImageTokenizerConfig) -> Parts:
    """The model (from init_from when given), the critic when the GAN is on, AdamW for each and the lr schedule."""
    model = VQModel(tok_config)
    if config.init_from:
        load_initial_weights(model, config.init_from)
    disc = PatchDiscriminator(ch=config.disc_ch, num_layers=config.disc_layers) if LossConfig(**config.loss).gan_weight > 0 else None
    if config.channels_last:  # before the optimizers see the parameters
        for module in (model, disc):
            if module is not None:
                module.to(memory_format=torch.channels_last)
    opt_g = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    parts = Parts({"model": model}, {"g": opt_g}, {"g": torch.optim.lr_scheduler.LambdaLR(opt_g, lr_lambda(config))})
    if disc is not None:
        parts.models["discriminator"] = disc
        parts.optimizers["d"] = torch.optim.AdamW(disc.parameters(), lr=config.disc_lr, betas=config.betas)  # constant lr
    return parts


def prepare_parts(parts: Parts, config: TrainConfig, accelerator: Accelerator) -> None:
    """accelerate's wrapped model, critic and optimizers, the loss, and the (optionally compiled) forward."""
    disc = parts.models.get("discriminator")
    prepared = accelerator.prepare(parts.models["model"], parts.optimizers["g"], *([disc, parts.optimizers["d"]] if disc else []))
    parts.model_p, parts.opt_g_p = prepared[0], prepared[1]
    if disc is not None:
        parts.disc_p, parts.opt_d_p = prepared[2], prepared[3]
    parts.loss_fn = VQGANLoss(LossConfig(**config.loss), parts.disc_p, critic=disc)
    parts.forward = torch.compile(parts.model_p, backend=config.compile) if config.compile else parts.model_p


def train_step(parts: Parts, x: torch.Tensor, step: int, config: TrainConfig, accelerator: Accelerator) -> tuple[Any, Any, dict]:
    """One generator update and, once the critic is on, one critic update; nothing is read back from the device."""
    with accelerator.autocast():
        output = parts.forward(x)
        g_loss, logs = parts.loss_fn.generator_loss(x, output.reconstruction, output.quantizer.loss, step,
                                                    parts.models["model"].decoder.last_layer)
    parts.health.watch("generator", g_loss, step)
    parts.opt_g_p.zero_grad(set_to_none=True)
    accelerator.backward(g_loss)
    if config.grad_clip > 0:
        logs["grad_norm"] = accelerator.clip_grad_norm_(parts.model_p.parameters(), config.grad_clip)
    parts.opt_g_p.step()
    parts.schedulers["g"].step()
    if parts.disc_p is not None and parts.loss_fn.disc_active(step):
        with accelerator.autocast():
            d_loss, d_logs = parts.loss_fn.discriminator_loss(x, output.reconstruction)
        parts.health.watch("discriminator", d_loss, step)
        parts.opt_d_p.zero_grad(set_to_none=True)
        accelerator.backward(d_loss)
        if config.grad_clip > 0:
            accelerator.clip_grad_norm_(parts.disc_p.parameters(), config.grad_clip)
        parts.opt_d_p.step()
        logs.update(d_logs)
    return g_loss, output, logs


def make_loader(source: Any, config: TrainConfig, start_step: int, end_step: int, accelerator: Accelerator) -> tuple[Any, Any]:
    """This process's batches for steps start_step..end_step, prepared ahead by num_workers workers."""
    batches = StepBatches(source, config.batch_size, config.seed, start_step, end_step,
                          accelerator.process_index, accelerator.num_processes, config.strict_data)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=config.num_workers,
                                         pin_memory=accelerator.device.type == "cuda",
                                         prefetch_factor=4 if config.num_workers else None,
                                         generator=torch.Generator().manual_seed(config.seed))  # workers leave the global RNG alone
    return batches, loader


def train(config: TrainConfig, resume: bool = False, stop_at: int | None = None) -> dict[str, Any]:
    """Run stage-1 training; returns a summary (final step, metrics, paths, the unwrapped model).

    stop_at ends this invocation after that step with a checkpoint but without the final evaluation, as an
    interruption or a time-sliced job would; `resume` continues it."""
    config.validate()
    end_step = min(config.steps, stop_at) if stop_at is not None else config.steps
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    set_seed(config.seed)
    out = Path(config.output_dir)
    tok_config = ImageTokenizerConfig(**config.model)
    parts = build_parts(config, tok_config)
    source = open_source(
        config.data, tok_config.resolution, tok_config.preprocessing, num_shapes=config.num_train_images,
        seed=config.train_seed, split=config.data_split, image_column=config.image_column,
        num_workers=max(1, config.num_workers),
    )
    if config.eval_fraction:
        source, _ = split_source(source, config.eval_fraction, config.seed)  # the held-out part never trains
    start_step = resume_step(out, resume, parts, accelerator)
    prepare_parts(parts, config, accelerator)
    batches, loader = make_loader(source, config, start_step, end_step, accelerator)
    if config.kmeans_init and start_step == 0 and not config.init_from and tok_config.quantizer.kind == "vq":
        first = [to_model_input(batches[i][0], tok_config.preprocessing).to(accelerator.device)
                 for i in range(min(config.kmeans_batches, len(batches)))]
        kmeans_init(parts.models["model"], first, config.kmeans_iters, accelerator)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        drop_log_rows_after(out / "metrics.jsonl", start_step)  # a killed run may have logged steps past its last checkpoint
        (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    step, skipped_total = run_steps(parts, loader, config, tok_config.preprocessing, start_step, end_step, accelerator)
    if skipped_total:
        accelerator.print(f"warning: skipped {skipped_total} unreadable training image(s)")
    accelerator.wait_for_everyone()
    model = parts.models["model"]
    summary: dict[str, Any] = {"step": step, "model": model, "skipped_images": skipped_total}
    if accelerator.is_main_process and step == config.steps:
        summary.update(_finish(config, tok_config, model, out, step))
    return summary


def resume_step(out: Path, resume: bool, parts: Parts, accelerator: Accelerator) -> int:
    """The step to start from: 0, or the latest checkpoint's (its models, optimizers and schedule restored)."""
    checkpoint = latest_checkpoint(out / "checkpoints") if resume else None
    if resume and checkpoint is None:
        accelerator.print(f"--resume: no checkpoint in {out / 'checkpoints'}, starting from step 0")
    if checkpoint is None:
        return 0
    state = load_checkpoint(checkpoint, parts.models, parts.optimizers, parts.schedulers)
    accelerator.print(f"resumed from {checkpoint} at step {state['step']}")
    return state["step"]


def run_steps(parts: Parts, loader: Any, config: TrainConfig, preprocessing: Any, start_step: int, end_step: int,
              accelerator: Accelerator) -> tuple[int, int]:
    """The training loop: steps, logs every log_every steps (the only device read-backs), samples, checkpoints."""
    out = Path(config.output_dir)
    bar = tqdm(total=config.steps, initial=start_step, desc="train", disable=not (config.progress and accelerator.is_main_process))
    step, skipped_total, tick, seen = start_step, 0, time.perf_counter(), 0
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    parts.model_p.train()
    for images, skipped in loader:
        skipped_total += skipped
        x = to_model_input(images.to(accelerator.device, non_blocking=True), preprocessing).contiguous(memory_format=memory_format)
        g_loss, output, logs = train_step(parts, x, step, config, accelerator)
        step += 1
        seen += x.shape[0] * accelerator.num_processes
        bar.update(1)
        checkpoint_now = config.checkpoint_every and (step % config.checkpoint_every == 0 or step == end_step)
        if step % config.log_every == 0 or step == config.steps or checkpoint_now:
            parts.health.check(out)  # the one read-back from the device every log_every steps, and before any save
            logs.update(loss=g_loss.detach(), usage=output.quantizer.usage, perplexity=output.quantizer.perplexity)
            if output.quantizer.entropy_loss is not None:
                logs["entropy_loss"] = output.quantizer.entropy_loss.detach()
            logs = {name: float(value) for name, value in logs.items()}
            logs.update(lr=parts.schedulers["g"].get_last_lr()[0], skipped_images=skipped_total)
        if step % config.log_every == 0 or step == config.steps:
            logs["images_per_s"] = seen / max(time.perf_counter() - tick, 1e-9)
            tick, seen = time.perf_counter(), 0
            bar.set_postfix(loss=f"{logs['loss']:.4f}", usage=f"{logs['usage']:.2f}", ips=f"{logs['images_per_s']:.0f}")
            if accelerator.is_main_process:
                loss = logs.pop("loss")
                with open(out / "metrics.jsonl", "a") as handle:
                    handle.write(json.dumps({"step": step, "loss": loss, **logs}) + "\n")
        if accelerator.is_main_process and config.image_every and (step % config.image_every == 0 or step == config.steps):
            _write_samples(out / "samples" / f"step-{step:07d}.png", x[:8], output.reconstruction[:8], preprocessing)
        if checkpoint_now:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(out / "checkpoints", step, parts.models, parts.optimizers, parts.schedulers,
                                {"config": dataclasses.asdict(config)}, keep=config.keep_checkpoints)
    bar.close()
    return step, skipped_total


def _write_samples(path: Path, x: torch.Tensor, x_hat: torch.Tensor, preprocessing) -> None:
    originals = postprocess(x.detach(), preprocessing, "pil")
    recons = postprocess(x_hat.detach().float(), preprocessing, "pil")
    with atomic_path(path) as tmp:
        side_by_side(originals, recons, scale=3).save(tmp, format="PNG")


def held_out_set(config: TrainConfig, tok_config: ImageTokenizerConfig) -> tuple[Any, Any, str, dict[str, list[str]]]:
    """(images [N, H, W, 3], hole masks or None, what they are, per-image labels to report metrics by) for the
    final evaluation; (None, None, why, {}) if none."""
    if config.eval_images <= 0:
        return None, None, "none (eval_images 0)", {}
    if config.eval_data or config.eval_fraction:
        if config.eval_data:
            source = open_source(config.eval_data, tok_config.resolution, tok_config.preprocessing,
                                 split=config.eval_split or config.data_split, image_column=config.image_column)
        else:
            full = open_source(config.data, tok_config.resolution, tok_config.preprocessing, split=config.data_split,
                               image_column=config.image_column)
            source = split_source(full, config.eval_fraction, config.seed)[1]
        count = min(config.eval_images, len(source))
        images = np.stack([source.load(i) for i in range(count)])
        return images, None, f"{count} images, {source.describe()}", source_labels(source, range(count))
    if config.data != "shapes":
        return None, None, "none: pass eval_data or eval_fraction to measure a model trained on your own images", {}
    images, holes = generate_arrays(config.eval_images, seed=config.eval_seed)
    if images.shape[1] != tok_config.resolution:
        return None, None, f"none: shapes are 64x64, this model works at {tok_config.resolution}", {}
    return images, holes, f"{config.eval_images} shapes images, seed {config.eval_seed}", {}


def evaluated_card(
    tokenizer: ImageTokenizer, config: TrainConfig, steps: Any, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Evaluate on held-out shapes, record metrics and the training record in tokenizer.card_info; returns metrics."""
    metrics: dict[str, Any] = {}
    images, holes, described, labels = held_out_set(config, tokenizer.config)
    if images is not None:
        metrics = flat_metrics(evaluate_tokenizer(tokenizer, images, holes, labels=labels))
    data = config.data if config.data != "shapes" else f"shapes generator, seed {config.train_seed}, {config.num_train_images} images"
    tokenizer.card_info = {
        "metrics": {f"heldout_{k}": v for k, v in metrics.items()},
        "training": {
            "data": data,
            "held-out set": described,
            "steps": steps,
            "batch size": config.batch_size,
            **(extra or {}),
        },
    }
    return metrics


def _finish(config: TrainConfig, tok_config: ImageTokenizerConfig, model: VQModel, out: Path, step: int) -> dict[str, Any]:
    """Evaluate on held-out shapes and save the tokenizer with a model card holding the metrics."""
    tokenizer = ImageTokenizer(tok_config, model.eval())
    command = "python " + " ".join(sys.argv) if sys.argv and sys.argv[0] else "train()"
    metrics = evaluated_card(tokenizer, config, step, {"command": command})
    final = out / "final"
    tokenizer.save_pretrained(final, model_name=config.model_name)
    (out / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"saved {final}; held-out metrics: {json.dumps(metrics)}")
    return {"final_dir": final, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    return run_cli("train_tokenizer", parse_config, train, argv)


if __name__ == "__main__":
    sys.exit(main())
