"""Distil a TiTok-style 1D tokenizer (N ids per image, the `1d` layout) from any saved 2D ImageTokenizer, in TiTok's
two stages.

    python training/distil_1d.py --config training/configs/emoji64_titok_distil_cpu.json [--vit.num_latent_tokens 16]
    python training/distil_1d.py --proxy emoji-64-small --data emoji --eval_data emoji --stage1_steps 2000 ...
    python training/distil_1d.py --config ... --resume      # continue from the last checkpoint

The proxy (a saved tokenizer folder, a bundled name or a Hub repo) must be a grid tokenizer with our VQGAN decoder.
Stage 1 (`stage1_steps`): a ViT encoder reads the image into N latent tokens, a VQ codebook (l2-normalised codes,
commitment `quantizer.beta` 0.25 on ||z - sg[e]||^2, fp32 lookups) quantizes them, and a ViT decoder predicts the
proxy's id at every cell of its grid: cross-entropy over the proxy's codebook, as TiTok's legacy models learn
MaskGIT-VQGAN's codes. Stage 2 (`stage2_steps`): encoder and quantizer frozen, the decoder is fine-tuned to pixels
through the proxy's own pixel decoder (soft codes = softmax(logits) @ the proxy's code vectors, then its
post_quant_conv and decoder, which start as the proxy's and train too unless --no_train_pixel_decoder), with an
L2 (or L1) pixel loss. The result, final/, is an ordinary ImageTokenizer (architecture titok, legacy, pixel decoder
"vqgan") with held-out metrics in its card. Checkpoints (checkpoints/, pickle-free, atomic) hold both stages'
optimizers; --resume continues bit for bit. Every config field is a flag; --help lists them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import set_seed
from transformers.hf_argparser import HfArg

if __package__ in (None, ""):  # run as a script: make `training` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_tokenizer import ImageTokenizer
from image_tokenizer.data.sources import split_source
from image_tokenizer.errors import CheckpointError
from image_tokenizer.fileio import atomic_write_text
from image_tokenizer.image_processing import MAX_IMAGE_PIXELS
from image_tokenizer.modeling import VQModel
from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.config_cli import TrainingError, run_cli
from training.config_cli import parse_config as parse_dataclass_config
from training.data import StepBatches, open_source, to_model_input
from training.distil_proxy import copy_pixel_decoder, load_proxy, student_config
from training.heldout import finish
from training.train_tokenizer import drop_log_rows_after, warmup_cosine

AUTOCAST = {"no": torch.float32, "bf16": torch.bfloat16}
__all__ = ["DistilConfig", "main", "parse_config", "stage1_loss", "stage2_loss", "train"]


@dataclass
class DistilConfig:
    output_dir: str = HfArg(default="runs/distil-1d", help="where checkpoints/, metrics.jsonl and final/ go")
    model_name: str = HfArg(default="titok-distilled", help="the saved tokenizer's name (its model card's title)")
    proxy: str = HfArg(default="emoji-64-small", help="the 2D ImageTokenizer to distil: a saved folder, a bundled "
                       "name or a Hub repo id")
    vit: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "ViTConfig fields of the 1D tokenizer (num_latent_tokens, widths, layers, heads, encoder_patch_size); "
        "legacy, pixel_decoder, proxy_codebook_size/dim and decoder_patch_size follow from the proxy"})
    quantizer: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "QuantizerConfig fields of its codebook (kind vq; TiTok: 4096 codes of 12 dims, distance cosine)"})
    data: str = HfArg(default="emoji", help='"shapes", "emoji", an image folder, a saved dataset, or "hf:NAME"')
    data_split: str = HfArg(default="train", help="the split of data to train on")
    image_column: str = HfArg(default="image", help="the image column of a dataset")
    num_train_images: int = HfArg(default=20000, help="shapes only: how many training images to generate")
    train_seed: int = HfArg(default=0, help="shapes only: the seed of the training images")
    eval_images: int = HfArg(default=1000, help="held-out images for the final evaluation (0 = skip)")
    eval_seed: int = HfArg(default=1, help="shapes only: the seed of the held-out images")
    eval_data: str | None = HfArg(default="emoji", help="the held-out data (a spec like data; none: shapes or "
                                  "eval_fraction)")
    eval_split: str | None = HfArg(default=None, help="the split of eval_data; none: test, then validation")
    eval_fraction: float = HfArg(default=0.0, help="on your own data: hold out this share of it (seeded)")
    strict_data: bool = HfArg(default=False, help="stop at the first unreadable image instead of skipping it")
    max_pixels: int = HfArg(default=MAX_IMAGE_PIXELS, help="largest image to decode, in pixels")
    stage1_steps: int = HfArg(default=5000, help="stage 1 steps: predict the proxy's ids (cross-entropy)")
    stage2_steps: int = HfArg(default=2000, help="stage 2 steps: the decoder fine-tuned to pixels (0 = none)")
    batch_size: int = HfArg(default=32, help="images per step")
    lr: float = HfArg(default=1e-3, help="stage 1 peak learning rate (AdamW)")
    stage2_lr: float = HfArg(default=2e-4, help="stage 2 peak learning rate")
    betas: tuple[float, float] = HfArg(default=(0.9, 0.99), help="AdamW's betas (TiTok's)")
    weight_decay: float = HfArg(default=1e-4, help="AdamW weight decay (TiTok's)")
    warmup_steps: int = HfArg(default=100, help="linear warm-up steps at the start of each stage")
    min_lr_ratio: float = HfArg(default=0.1, help="where each stage's cosine schedule ends, as a share of its lr")
    grad_clip: float = HfArg(default=1.0, help="gradient-norm clipping (0 = off)")
    quantizer_weight: float = HfArg(default=1.0, help="stage 1: weight of the VQ loss beside the cross-entropy")
    pixel_loss: str = HfArg(default="l2", help='stage 2: "l2" (TiTok\'s) or "l1"')
    train_pixel_decoder: bool = HfArg(default=True, help="stage 2: fine-tune the proxy's pixel decoder too (TiTok "
                                      "does), not only the ViT decoder")
    kmeans_init: bool = HfArg(default=True, help="initialise the codebook by k-means on the first batches' latents")
    kmeans_batches: int = HfArg(default=4, help="batches of latents for the k-means")
    mixed_precision: str = HfArg(default="no", help='"no" or "bf16" (the quantizer stays fp32 either way)')
    seed: int = HfArg(default=0, help="model initialisation and batch order")
    log_every: int = HfArg(default=50, help="steps between metrics.jsonl rows")
    checkpoint_every: int = HfArg(default=500, help="steps between checkpoints (0 = only at the end of each stage)")
    keep_checkpoints: int = HfArg(default=2, help="how many of the newest checkpoints to keep")
    progress: bool = HfArg(default=True, help="show a progress bar")

    @property
    def steps(self) -> int:
        return self.stage1_steps + self.stage2_steps

    def validate(self) -> None:
        if self.stage1_steps < 1 or self.stage2_steps < 0 or self.batch_size < 1:
            raise TrainingError("stage1_steps and batch_size must be positive, stage2_steps at least 0")
        if self.pixel_loss not in ("l1", "l2"):
            raise TrainingError(f"pixel_loss must be 'l1' or 'l2', got {self.pixel_loss!r}")
        if self.mixed_precision not in ("no", "bf16"):
            raise TrainingError(f"mixed_precision must be 'no' or 'bf16', got {self.mixed_precision!r}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise TrainingError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")


def parse_config(argv: list[str] | None = None) -> tuple[DistilConfig, bool]:
    """--config FILE, then --field VALUE / --vit.field VALUE overrides; returns (config, resume)."""
    config, resume = parse_dataclass_config(DistilConfig, argv, __doc__)
    config.betas = tuple(config.betas)
    config.validate()
    return config, resume


def stage1_loss(model: VQModel, x: torch.Tensor, proxy_ids: torch.Tensor, quantizer_weight: float) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of the decoder's logits [B, K, h, w] against the proxy's ids [B, h, w], plus the VQ loss."""
    quantized = model.encode(x)
    logits = model.decoder.patch_outputs(quantized.quantized)
    ce = F.cross_entropy(logits.float(), proxy_ids)
    total = ce + quantizer_weight * quantized.loss
    agree = (logits.argmax(1) == proxy_ids).float().mean()
    return total, {"ce": ce.detach(), "vq_loss": quantized.loss.detach(), "proxy_id_accuracy": agree.detach(),
                   "usage": quantized.usage, "perplexity": quantized.perplexity}


def stage2_loss(model: VQModel, x: torch.Tensor, kind: str) -> tuple[torch.Tensor, dict]:
    """The pixel loss of the reconstruction through the proxy's pixel decoder; encoder and quantizer run frozen."""
    with torch.no_grad():
        quantized = model.encode(x)
    x_hat = model.decoder(quantized.quantized.detach())
    loss = F.mse_loss(x_hat.float(), x.float()) if kind == "l2" else (x_hat.float() - x.float()).abs().mean()
    return loss, {"pixel_loss": loss.detach(), "usage": quantized.usage, "perplexity": quantized.perplexity}


def stage_parameters(model: VQModel, stage: int, train_pixel_decoder: bool) -> list[torch.nn.Parameter]:
    """Stage 1 trains encoder, codebook and ViT decoder (the pixel decoder takes no part); stage 2 the decoder
    (with the proxy's pixel decoder unless told not to)."""
    if stage == 1:
        return [p for name, p in model.named_parameters() if not name.startswith("decoder.pixel_decoder.")]
    return [p for name, p in model.decoder.named_parameters() if train_pixel_decoder or not name.startswith("pixel_decoder.")]


def build_optimizers(model: VQModel, config: DistilConfig) -> tuple[dict, dict]:
    """One AdamW and schedule per stage (both saved in every checkpoint, so a resume restores whichever runs)."""
    optimizers, schedulers = {}, {}
    for stage, lr, steps in ((1, config.lr, config.stage1_steps), (2, config.stage2_lr, config.stage2_steps)):
        params = stage_parameters(model, stage, config.train_pixel_decoder)
        opt = torch.optim.AdamW(params, lr=lr, betas=config.betas, weight_decay=config.weight_decay)
        optimizers[f"stage{stage}"] = opt
        warmup = min(config.warmup_steps, max(1, steps // 2))
        schedulers[f"stage{stage}"] = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup, steps, config.min_lr_ratio))
    return optimizers, schedulers


def resume_step(config: DistilConfig, model: VQModel, optimizers: dict, schedulers: dict, resume: bool) -> int:
    """0, or the latest checkpoint's step with its model, optimizers, schedules and RNG restored; a checkpoint of
    another 1D tokenizer (its latent count, widths or proxy) is refused by name."""
    checkpoint = latest_checkpoint(Path(config.output_dir) / "checkpoints") if resume else None
    if checkpoint is None:
        return 0
    derived = ("grid_size", "layout")  # follow from the fields compared
    saved = {k: v for k, v in json.loads((checkpoint / "state.json").read_text()).get("tokenizer_config", {}).items()
             if k not in derived}
    wanted = {k: v for k, v in json.loads(json.dumps(model.config.to_dict())).items() if k not in derived}  # lists
    found = differences(wanted, saved)
    if found:
        key, mine, theirs = found[0]
        raise CheckpointError(f"{checkpoint / 'state.json'}: tokenizer_config field {key!r} is {theirs!r}, this run's "
                              f"is {mine!r}; resume with the settings it was trained with, or use a new output_dir")
    state = load_checkpoint(checkpoint, {"model": model}, optimizers, schedulers)
    print(f"resumed from {checkpoint} at step {state['step']}")
    return state["step"]


def differences(mine: dict, theirs: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, mine, theirs) for every value that differs between two JSON objects, nested ones entered."""
    found = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append((f"{prefix}{key}", a, b))
    return found


def train(config: DistilConfig, resume: bool = False, stop_at: int | None = None) -> dict[str, Any]:
    """Both stages; returns a summary (final step, the student model, final_dir and metrics when done). stop_at ends
    this invocation after that step with a checkpoint, as an interruption would; `resume` continues it."""
    config.validate()
    set_seed(config.seed)
    proxy = load_proxy(config.proxy)
    tok_config = student_config(proxy, config.vit, config.quantizer, config.proxy)
    model = VQModel(tok_config)
    copy_pixel_decoder(proxy, model)
    optimizers, schedulers = build_optimizers(model, config)
    start = resume_step(config, model, optimizers, schedulers, resume)
    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    source = open_source(config.data, tok_config.resolution, tok_config.preprocessing, num_shapes=config.num_train_images,
                         seed=config.train_seed, split=config.data_split, image_column=config.image_column,
                         max_pixels=config.max_pixels)
    if config.eval_fraction:
        source, _ = split_source(source, config.eval_fraction, config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    proxy.model.to(device).eval()
    batches = StepBatches(source, config.batch_size, config.seed, start, end, strict=config.strict_data)
    if config.kmeans_init and start == 0 and len(batches):  # k-means of the first batches' latents (cosine space)
        with torch.no_grad():
            first = [model.features(to_model_input(batches[i][0], tok_config.preprocessing).to(device))
                     for i in range(min(config.kmeans_batches, len(batches)))]
            model.quantizer.kmeans_init(torch.cat(first), 10, seed=config.seed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if start:
        drop_log_rows_after(out / "metrics.jsonl", start)  # a killed run may have logged steps past its last checkpoint
    atomic_write_text(out / "train_config.json", json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    step = run_steps(model, proxy, batches, config, (optimizers, schedulers), start, end, device)
    summary: dict[str, Any] = {"step": step, "model": model}
    if step == config.steps:
        extra = {"distilled from": config.proxy, "stage 1 steps": config.stage1_steps,
                 "stage 2 steps": config.stage2_steps}
        summary.update(finish(config, tok_config, model, out, step, extra))
    return summary


def run_steps(model: VQModel, proxy: ImageTokenizer, batches: StepBatches, config: DistilConfig, training: tuple,
              start: int, end: int, device: torch.device) -> int:
    """The loop over both stages: logs (metrics.jsonl), checkpoints every checkpoint_every steps and at the end of
    stage 1 and of this invocation."""
    optimizers, schedulers = training
    out = Path(config.output_dir)
    preprocessing = model.config.preprocessing
    bar = tqdm(total=config.steps, initial=start, desc="distil", disable=not config.progress)
    step, tick = start, time.perf_counter()
    try:
        for k in range(len(batches)):
            images, _ = batches[k]
            x = to_model_input(images, preprocessing).to(device)
            stage = 1 if step < config.stage1_steps else 2
            name = f"stage{stage}"
            set_stage_modes(model, stage)
            with torch.autocast(device.type, dtype=AUTOCAST[config.mixed_precision], enabled=config.mixed_precision != "no"):
                if stage == 1:
                    with torch.no_grad():
                        proxy_ids = proxy.model.encode_ids(x)
                    loss, logs = stage1_loss(model, x, proxy_ids, config.quantizer_weight)
                else:
                    loss, logs = stage2_loss(model, x, config.pixel_loss)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(optimizers[name].param_groups[0]["params"], config.grad_clip)
            optimizers[name].step()
            schedulers[name].step()
            step += 1
            bar.update(1)
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite stage {stage} loss at step {step}; lower the learning rate or resume "
                                    f"from the last checkpoint in {out / 'checkpoints'}")
            if step % config.log_every == 0 or step in (config.stage1_steps, end):
                row = {"step": step, "stage": stage, "loss": float(loss.detach()), **{n: float(v) for n, v in logs.items()},
                       "lr": schedulers[name].get_last_lr()[0], "seconds": round(time.perf_counter() - tick, 2)}
                with open(out / "metrics.jsonl", "a") as handle:
                    handle.write(json.dumps(row) + "\n")
                bar.set_postfix(stage=stage, loss=f"{row['loss']:.4f}")
            every = config.checkpoint_every and step % config.checkpoint_every == 0
            if every or step in (config.stage1_steps, end):
                save_checkpoint(out / "checkpoints", step, {"model": model}, optimizers, schedulers,
                                {"tokenizer_config": model.config.to_dict(), "config": dataclasses.asdict(config)},
                                keep=config.keep_checkpoints)
    finally:
        bar.close()
    return step


def set_stage_modes(model: VQModel, stage: int) -> None:
    """Stage 1 trains everything but the pixel decoder; stage 2 keeps encoder and quantizer in eval mode (no
    dead-code restarts, no usage updates: their weights and codebook stay as stage 1 left them)."""
    model.train()
    if stage == 2:
        model.encoder.eval()
        model.quantizer.eval()


def main(argv: list[str] | None = None) -> int:
    return run_cli("distil_1d", parse_config, train, argv)


if __name__ == "__main__":
    sys.exit(main())
