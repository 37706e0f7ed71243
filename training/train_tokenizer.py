"""Stage 1: train the VQGAN tokenizer with accelerate, on one CPU up to many GPUs.

    python training/train_tokenizer.py --config training/configs/shapes64.json [--steps 200] [--model.ch 32]
    accelerate launch --num_processes 8 training/train_tokenizer.py --config ... --mixed_precision bf16
    python training/train_tokenizer.py --config ... --resume      # continue from the last checkpoint

Every config field is a flag (--help lists them with their defaults); flags override --config, and a dict field
takes one key at a time (--model.ch 32). Outputs in output_dir: checkpoints/, metrics.jsonl, samples/step-N.png and
final/ (a saved ImageTokenizer with a model card holding its held-out metrics). Unreadable images (truncated, not
an image, over max_pixels) are skipped, counted once each and named, in training and held-out data alike, unless
strict_data; final/ is written whenever the steps are done. Ctrl-C stops in one line with exit status 130; the
last checkpoint is intact (written atomically), and --resume continues from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from tqdm.auto import tqdm
from transformers.hf_argparser import HfArg

if __package__ in (None, ""):  # run as a script: make `training` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_tokenizer import ImageTokenizer, ImageTokenizerConfig
from image_tokenizer.data.sources import split_source
from image_tokenizer.fileio import atomic_path, atomic_write_text
from image_tokenizer.image_processing import MAX_IMAGE_PIXELS, postprocess
from image_tokenizer.modeling import VQModel
from image_tokenizer.visualize import side_by_side
from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.codebook import kmeans_init, parameter_groups, usage_logs
from training.config_cli import TrainingError, run_cli
from training.config_cli import parse_config as parse_dataclass_config
from training.data import StepBatches, open_source, to_model_input
from training.heldout import evaluated_card, finish, held_out_set, held_out_split, named, training_card
from training.losses import LossConfig, PatchDiscriminator, VQGANLoss

__all__ = ["TrainConfig", "evaluated_card", "held_out_set", "kmeans_init", "main", "parse_config", "train",
           "training_card"]  # evaluation and codebook helpers live in heldout.py and codebook.py


@dataclass
class TrainConfig:
    output_dir: str = HfArg(default="runs/tokenizer", help="where checkpoints/, metrics.jsonl, samples/ and final/ go")
    model_name: str = HfArg(default="shapes-64", help="the saved tokenizer's name (its model card's title)")
    model: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "ImageTokenizerConfig fields, as JSON or one at a time (--model.ch 32)"})
    init_from: str | None = HfArg(default=None, help="start from a saved tokenizer's weights (fine-tuning, or more "
                                  "steps on a fresh schedule)")
    loss: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "LossConfig fields, as JSON or one at a time (--loss.gan_weight 0)"})
    data: str = HfArg(default="shapes", help='"shapes", "emoji", an image folder, a saved dataset, or "hf:NAME"')
    data_split: str = HfArg(default="train", help="the split of data to train on")
    image_column: str = HfArg(default="image", help="the image column of a dataset")
    num_train_images: int = HfArg(default=20000, help="shapes only: how many training images to generate")
    train_seed: int = HfArg(default=0, help="shapes only: the seed of the training images")
    eval_images: int = HfArg(default=1000, help="held-out images for the final evaluation (0 = skip): shapes, or "
                             "at most this many of eval_data")
    eval_seed: int = HfArg(default=1, help="shapes only: the seed of the held-out images")
    eval_data: str | None = HfArg(default=None, help='a held-out image folder / saved dataset / hf:NAME / "emoji" '
                                  "(else shapes, or eval_fraction)")
    eval_split: str | None = HfArg(default=None, help="the split of eval_data; none: test, then validation (a folder "
                                   "without split folders: all of it), never its training images unless named")
    eval_fraction: float = HfArg(default=0.0, help="on your own data: hold out this share of it (seeded) for the "
                                 "final evaluation")
    strict_data: bool = HfArg(default=False, help="stop at the first unreadable training or held-out image "
                              "instead of skipping and counting it")
    max_pixels: int = HfArg(default=MAX_IMAGE_PIXELS, help="largest image to decode, in pixels, training and "
                            "held-out alike; a larger one is unreadable (skipped, or an error with strict_data)")
    steps: int = HfArg(default=10000, help="optimizer steps")
    batch_size: int = HfArg(default=64, help="images per step, across all processes")
    lr: float = HfArg(default=2e-4, help="the generator's peak learning rate (AdamW)")
    codebook_lr_scale: float = HfArg(default=1.0, help="a codebook learned by gradient (vq, multiscale, residual "
                                     "without EMA) trains at lr times this")
    disc_lr: float = HfArg(default=2e-4, help="the critic's learning rate (constant)")
    betas: tuple[float, float] = HfArg(default=(0.5, 0.9), help="AdamW's betas, for both optimizers")
    weight_decay: float = HfArg(default=0.0, help="the generator's AdamW weight decay")
    warmup_steps: int = HfArg(default=200, help="linear warm-up steps of the learning rate")
    lr_schedule: str = HfArg(default="cosine", help='"cosine" or "constant" after the warm-up')
    min_lr_ratio: float = HfArg(default=0.1, help="where the cosine ends, as a share of lr")
    grad_clip: float = HfArg(default=1.0, help="gradient-norm clipping (0 = off)")
    mixed_precision: str = HfArg(default="no", help='"no" or "bf16" (the quantizer stays fp32 either way)')
    seed: int = HfArg(default=0, help="model initialisation and batch order")
    kmeans_init: bool = HfArg(default=True, help="initialise a learned codebook by k-means on encoder outputs of "
                              "the first batches (multiscale, residual: on every step's residuals; fsq, lfq: none)")
    kmeans_batches: int = HfArg(default=4, help="batches of encoder outputs for the k-means")
    kmeans_iters: int = HfArg(default=10, help="k-means iterations")
    disc_ch: int = HfArg(default=64, help="the critic's base channels")
    disc_layers: int = HfArg(default=2, help="the critic's downsampling layers")
    log_every: int = HfArg(default=20, help="steps between metrics.jsonl rows (the only reads from the device)")
    image_every: int = HfArg(default=500, help="steps between sample reconstructions in samples/ (0 = none)")
    checkpoint_every: int = HfArg(default=500, help="steps between checkpoints (0 = none)")
    keep_checkpoints: int = HfArg(default=2, help="how many of the newest checkpoints to keep")
    num_workers: int = HfArg(default=0, help="DataLoader workers preparing the next batches ahead of the step "
                             "(0: in this process)")
    channels_last: bool = HfArg(default=False, help="model and images in channels_last (faster convolutions on GPUs)")
    compile: str = HfArg(default="", help='a torch.compile backend for the model ("inductor"; "" = off)')
    progress: bool = HfArg(default=True, help="show a progress bar")

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise TrainingError("steps and batch_size must be positive")
        if self.codebook_lr_scale <= 0:
            raise TrainingError(f"codebook_lr_scale must be positive, got {self.codebook_lr_scale}")
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


def warmup_cosine(warmup: int, steps: int, min_ratio: float, cosine: bool = True) -> Callable[[int], float]:
    """LambdaLR's factor: a linear warm-up over `warmup` steps, then a cosine from 1 to min_ratio at `steps` (or 1
    throughout when not `cosine`)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def load_initial_weights(model: VQModel, name_or_path: str) -> None:
    """Copy a saved tokenizer's weights and codebook into `model`; its architecture must equal the run's."""
    initial = ImageTokenizer.from_pretrained(name_or_path)
    wanted, found = dataclasses.asdict(model.config), dataclasses.asdict(initial.config)
    differing = sorted(key for key in wanted.keys() | found.keys() if wanted.get(key) != found.get(key))
    if differing:
        details = "; ".join(f"{key}: run {wanted.get(key)!r} vs saved {found.get(key)!r}" for key in differing)
        raise TrainingError(f"init_from {name_or_path}: its model config differs from this run's ({details})")
    model.load_state_dict(initial.model.state_dict(), strict=True)
    model.quantizer.protect_codes()  # fine-tuning keeps the loaded codes: none is dead before it has been used


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
    groups = parameter_groups(model, config.lr, config.codebook_lr_scale)
    opt_g = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    parts = Parts({"model": model}, {"g": opt_g}, {"g": torch.optim.lr_scheduler.LambdaLR(
        opt_g, warmup_cosine(config.warmup_steps, config.steps, config.min_lr_ratio, config.lr_schedule == "cosine"))})
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
    if config.eval_data and config.eval_images > 0:
        held_out_split(config)
    source = open_source(
        config.data, tok_config.resolution, tok_config.preprocessing, num_shapes=config.num_train_images,
        seed=config.train_seed, split=config.data_split, image_column=config.image_column,
        num_workers=max(1, config.num_workers), max_pixels=config.max_pixels,
    )
    if config.eval_fraction:
        source, _ = split_source(source, config.eval_fraction, config.seed)  # the held-out part never trains
    start_step, skipped = resume_step(out, resume, parts, accelerator)
    prepare_parts(parts, config, accelerator)
    batches, loader = make_loader(source, config, start_step, end_step, accelerator)
    if config.kmeans_init and start_step == 0 and not config.init_from and tok_config.quantizer.learned_codebook:
        first = [to_model_input(batches[i][0], tok_config.preprocessing).to(accelerator.device)
                 for i in range(min(config.kmeans_batches, len(batches)))]
        kmeans_init(parts.models["model"], first, config.kmeans_iters, accelerator)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        drop_log_rows_after(out / "metrics.jsonl", start_step)  # a killed run may have logged steps past its last checkpoint
        atomic_write_text(out / "train_config.json", json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    step = run_steps(parts, loader, config, tok_config.preprocessing, start_step, end_step, accelerator, skipped)
    if accelerator.num_processes > 1:  # each process met the unreadable images of its own share of the batches
        for part in gather_object([skipped]):
            skipped.update(part)
    if skipped:
        accelerator.print(f"warning: skipped {len(skipped)} unreadable training image(s): {named(skipped.values())}")
    accelerator.wait_for_everyone()
    model = parts.models["model"]
    summary: dict[str, Any] = {"step": step, "model": model, "skipped_images": len(skipped)}
    if accelerator.is_main_process and step == config.steps:
        summary.update(finish(config, tok_config, model, out, step))
    return summary


def resume_step(out: Path, resume: bool, parts: Parts, accelerator: Accelerator) -> tuple[int, dict[int, str]]:
    """The step to start from and the unreadable training images met so far ({source index: error}): 0 and none,
    or the latest checkpoint's (its models, optimizers and schedule restored)."""
    checkpoint = latest_checkpoint(out / "checkpoints") if resume else None
    if resume and checkpoint is None:
        accelerator.print(f"--resume: no checkpoint in {out / 'checkpoints'}, starting from step 0")
    if checkpoint is None:
        return 0, {}
    state = load_checkpoint(checkpoint, parts.models, parts.optimizers, parts.schedulers)
    accelerator.print(f"resumed from {checkpoint} at step {state['step']}")
    return state["step"], {int(index): error for index, error in state.get("skipped_images", {}).items()}


def run_steps(parts: Parts, loader: Any, config: TrainConfig, preprocessing: Any, start_step: int, end_step: int,
              accelerator: Accelerator, skipped: dict[int, str]) -> int:
    """The training loop: steps, logs every log_every steps (the only device read-backs), samples, checkpoints.
    Each unreadable image goes into `skipped` ({source index: error}) once, however often the batches meet it."""
    out = Path(config.output_dir)
    bar = tqdm(total=config.steps, initial=start_step, desc="train", disable=not (config.progress and accelerator.is_main_process))
    step, tick, seen = start_step, time.perf_counter(), 0
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    parts.model_p.train()
    try:  # a closed bar ends its line, so an error or Ctrl-C prints on a line of its own
        for images, skipped_now in loader:
            skipped.update((int(index), error) for index, error in skipped_now)
            x = to_model_input(images.to(accelerator.device, non_blocking=True), preprocessing).contiguous(memory_format=memory_format)
            g_loss, output, logs = train_step(parts, x, step, config, accelerator)
            step += 1
            seen += x.shape[0] * accelerator.num_processes
            bar.update(1)
            checkpoint_now = config.checkpoint_every and (step % config.checkpoint_every == 0 or step == end_step)
            if step % config.log_every == 0 or step == config.steps or checkpoint_now:
                parts.health.check(out)  # the one read-back from the device every log_every steps, and before any save
                logs.update(loss=g_loss.detach(), **usage_logs(output.quantizer, parts.models["model"].quantizer))
                if output.quantizer.entropy_loss is not None:
                    logs["entropy_loss"] = output.quantizer.entropy_loss.detach()
                logs = {name: float(value) for name, value in logs.items()}
                logs.update(lr=parts.schedulers["g"].get_last_lr()[0], skipped_images=len(skipped))
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
                                    {"config": dataclasses.asdict(config), "skipped_images": skipped},
                                    keep=config.keep_checkpoints)
    finally:
        bar.close()
    return step


def _write_samples(path: Path, x: torch.Tensor, x_hat: torch.Tensor, preprocessing) -> None:
    originals = postprocess(x.detach(), preprocessing, "pil")
    recons = postprocess(x_hat.detach().float(), preprocessing, "pil")
    with atomic_path(path) as tmp:
        side_by_side(originals, recons, scale=3).save(tmp, format="PNG")


def main(argv: list[str] | None = None) -> int:
    return run_cli("train_tokenizer", parse_config, train, argv)


if __name__ == "__main__":
    sys.exit(main())
