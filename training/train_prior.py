"""Stage 2: train the prior (a transformers causal LM, or masked LM for maskgit) on pre-tokenized images (Trainer).

    python training/train_prior.py --config training/configs/shapes64_prior.json [--max_steps 200]
    accelerate launch --num_processes 8 training/train_prior.py --config ...      # DDP through Trainer
    python training/train_prior.py --config ... --resume          # continue from the last Trainer checkpoint

Data: "shapes" (generated and pre-tokenized with the tokenizer, cached under output_dir/tokens), or a
pre-tokenized dataset (save_to_disk folder, or a parquet folder from `image-tokenizer pretokenize`).
With label_column set, the prior is class-conditional: sequences start with a class token, replaced by a
null class with probability p_uncond during training (classifier-free guidance). Held-out loss is reported
in bits per token. Outputs: output_dir/checkpoint-N (Trainer), final/ (an ImagePrior with a model card),
samples.png.

Every config field is a flag (--help lists them with their defaults); flags override --config. The defaults run
5,000 steps: set max_steps, or time_budget_minutes to fit the run (and its cosine) into a wall-clock time, which the
progress bar's total and ETA then follow. Ctrl-C stops in one line with exit status 130; --resume continues from the
newest complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers.hf_argparser import HfArg

if __package__ in (None, ""):  # run as a script: make `training` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_tokenizer import ImagePrior, ImageTokenizer, TokenLayout
from image_tokenizer.errors import ConfigError
from image_tokenizer.prior import PriorConfig
from image_tokenizer.prior.sampling import MASK_SCHEDULES
from training.config_cli import TrainingError, run_cli
from training.config_cli import parse_config as parse_dataclass_config
from training.prior_collator import ROW_COLUMN, PriorCollator, epoch_callback
from training.prior_data import (  # noqa: F401  (load_token_dataset, shapes_tokens: also imported from here)
    INIT_MODEL_KEYS,
    check_recorded_layout,
    check_tokens,
    class_names,
    load_token_dataset,
    prepare_data,
    shapes_tokens,
)
from training.prior_progress import (
    StepPlan,
    close_progress_bars,
    planned_progress_callback,
    run_start_callback,
    time_budget_callback,
)


@dataclass
class PriorTrainConfig:
    output_dir: str = HfArg(default="runs/prior", help="where checkpoint-N/, final/ and samples.png go")
    model_name: str | None = HfArg(default=None, help="the card's title; none: the output folder's name")
    tokenizer: str = HfArg(default="shapes-64", help="the image tokenizer whose ids the prior models (name or folder)")
    data: str = HfArg(default="shapes", help='"shapes", or a pre-tokenized dataset folder (arrow or parquet)')
    eval_data: str | None = HfArg(default=None, help="a pre-tokenized held-out set; none: shapes seed eval_seed, or "
                                  "eval_fraction of data")
    eval_fraction: float = HfArg(default=0.05, help="without eval_data: hold out this share of data")
    num_train_images: int = HfArg(default=20000, help="shapes only: how many training images to tokenize")
    train_seed: int = HfArg(default=0, help="shapes only: the seed of the training images")
    eval_images: int = HfArg(default=1000, help="shapes only: how many held-out images")
    eval_seed: int = HfArg(default=1, help="shapes only: the seed of the held-out images")
    flip_augment: bool = HfArg(default=True, help="shapes only: add left-right mirrored rows")
    init_from: str | None = HfArg(default=None, help="start from a saved prior's weights (fresh optimizer and "
                                  "schedule), e.g. on more data")
    label_column: str | None = HfArg(default="auto", help='the class column; "auto": num_shapes on the shapes data, '
                                     "unconditional on other data; none: unconditional")
    p_uncond: float = HfArg(default=0.1, help="label dropout for classifier-free guidance")
    prediction: str = HfArg(default="auto", help='"raster" (one id per step), "next_scale" (one scale per forward pass, '
                            'multiscale tokenizers), "maskgit" (masked-token modelling, grid and 1d tokenizers) or '
                            '"auto": next_scale for a multiscale tokenizer, else raster')
    mask_schedule: str = HfArg(default="cosine", help='maskgit: a row masks ratio(u) of its ids: "cosine" or "arccos"')
    architecture: str = HfArg(default="auto", help='"llama" or "gpt2" (causal), "bert" (maskgit), or "auto": bert for '
                              'maskgit, else llama')
    hidden_size: int = HfArg(default=256, help="the transformer's width")
    num_hidden_layers: int = HfArg(default=4, help="transformer layers")
    num_attention_heads: int = HfArg(default=4, help="attention heads (hidden_size must be a multiple)")
    intermediate_size: int | None = HfArg(default=None, help="the MLP's width; none: the architecture's default")
    dropout: float = HfArg(default=0.0, help="dropout in the transformer")
    max_steps: int = HfArg(default=5000, help="optimizer steps (with time_budget_minutes: at most this many)")
    batch_size: int = HfArg(default=32, help="sequences per step and device")
    gradient_accumulation_steps: int = HfArg(default=1, help="batches per optimizer step")
    lr: float = HfArg(default=1e-3, help="the peak learning rate (AdamW)")
    weight_decay: float = HfArg(default=0.05, help="AdamW weight decay")
    warmup_steps: int = HfArg(default=200, help="linear warm-up steps of the learning rate")
    lr_scheduler: str = HfArg(default="cosine", help="a transformers scheduler type (cosine, constant, linear, ...)")
    grad_clip: float = HfArg(default=1.0, help="gradient-norm clipping")
    bf16: bool | None = HfArg(default=None, help="bf16 autocast (a CPU's too); none: on when a CUDA GPU with bf16 "
                              "is present")
    eval_steps: int = HfArg(default=500, help="steps between held-out evaluations")
    save_steps: int = HfArg(default=500, help="steps between checkpoints")
    save_total_limit: int = HfArg(default=2, help="how many of the newest checkpoints to keep")
    logging_steps: int = HfArg(default=50, help="steps between logged losses")
    seed: int = HfArg(default=0, help="model initialisation, data order and label dropout")
    num_proc: int | None = HfArg(default=None, help="shapes only: pre-tokenization processes")
    tokenize_device: str | None = HfArg(default=None, help='shapes pre-tokenization device; none: "cuda" when a GPU '
                                        "is present")
    time_budget_minutes: float | None = HfArg(default=None, help="fit the training loop into this wall-clock time: "
                                              "the last step (and the cosine's end) move to where it runs out")
    sample_images: int = HfArg(default=16, help="a grid of samples written at the end (0 = none)")
    progress: bool = HfArg(default=True, help="show a progress bar")

    def prior_config(self) -> PriorConfig:
        """The prior's architecture and sizes (PriorConfig) from this config's fields, checked."""
        auto = "bert" if self.prediction == "maskgit" else "llama"
        architecture = auto if self.architecture == "auto" else self.architecture
        return PriorConfig(architecture=architecture, hidden_size=self.hidden_size,
                           num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                           intermediate_size=self.intermediate_size, dropout=self.dropout).validate()

    def validate(self) -> None:
        if self.prediction not in ("auto", "raster", "next_scale", "maskgit"):
            raise TrainingError(f"prediction must be 'auto', 'raster', 'next_scale' or 'maskgit', got {self.prediction!r}")
        if self.architecture != "auto" and (self.architecture == "bert") != (self.prediction == "maskgit"):
            raise TrainingError(f"prediction {self.prediction!r} with architecture {self.architecture!r}: maskgit takes "
                                "'bert' (bidirectional), raster and next_scale 'llama' or 'gpt2'; 'auto' picks")
        if self.mask_schedule not in MASK_SCHEDULES:
            raise TrainingError(f"mask_schedule must be one of {MASK_SCHEDULES}, got {self.mask_schedule!r}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise TrainingError(f"p_uncond must be in [0, 1), got {self.p_uncond}")
        if self.max_steps < 1 or self.batch_size < 1:
            raise TrainingError("max_steps and batch_size must be positive")
        try:
            self.prior_config()
        except ConfigError as error:
            raise TrainingError(str(error)) from None
        if self.time_budget_minutes is not None:
            if self.time_budget_minutes <= 0:
                raise TrainingError(f"time_budget_minutes must be positive, got {self.time_budget_minutes}")
            if self.lr_scheduler != "cosine":
                raise TrainingError(f"time_budget_minutes fits a cosine schedule; lr_scheduler is {self.lr_scheduler!r}")


def bits_per_token(loss_nats: float) -> float:
    return loss_nats / math.log(2)


def make_trainer_class() -> type:
    from transformers import Trainer

    class PriorTrainer(Trainer):
        """The Trainer, reporting losses also in bits per token and never dropping labels at evaluation."""

        first_step = 0  # the step this train() call started from (RunStart)

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            for key in ("loss", "eval_loss"):
                if key in logs:
                    logs[key.replace("loss", "bits_per_token")] = round(bits_per_token(logs[key]), 5)
            if logs.get("train_runtime"):  # the Trainer counts max_steps' samples; a time budget ends the run sooner
                steps = self.state.global_step - self.first_step
                samples = steps * self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
                logs["train_samples_per_second"] = round(samples / logs["train_runtime"], 3)
            super().log(logs, *args, **kwargs)

        step_plan: StepPlan | None = None  # set: the schedule's end may move (a time budget)

        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            if self.lr_scheduler is None and self.step_plan is not None:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, self.step_plan.lr_factor)
                self._created_lr_scheduler = True  # the Trainer rebuilds it on a later train() call, as its own
            return super().create_scheduler(num_training_steps, optimizer)

        def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
            train_collator = self.data_collator
            self.data_collator = train_collator.for_eval()
            try:
                return super().get_eval_dataloader(eval_dataset)
            finally:
                self.data_collator = train_collator

    return PriorTrainer


def training_arguments(config: PriorTrainConfig, out: Path) -> Any:
    """The transformers TrainingArguments for a run: the config's schedule, batch and precision."""
    from transformers import TrainingArguments

    auto_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    bf16 = auto_bf16 if config.bf16 is None else config.bf16
    return TrainingArguments(
        output_dir=str(out),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.lr_scheduler,
        max_grad_norm=config.grad_clip,
        bf16=bf16,
        use_cpu=bf16 and not torch.cuda.is_available(),  # the Trainer's way to autocast to bf16 on a CPU
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        seed=config.seed,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=not config.progress,
    )


def checked_layout(config: PriorTrainConfig, tokenizer: ImageTokenizer, train_data: Any, eval_data: Any) -> tuple[TokenLayout, list]:
    """The token layout (codebook, grid, classes) of the run, after checking both splits fit it; returns it
    with the sorted class values, so a bad label column or id fails before any model is built."""
    class_values: list = []
    if config.label_column:
        if config.label_column not in train_data.column_names:
            raise TrainingError(f"label_column {config.label_column!r} not in the data; columns are {train_data.column_names}")
        class_values = sorted(set(train_data[config.label_column]))
    try:
        layout = TokenLayout.for_tokenizer(tokenizer, portable_name(config.tokenizer),
                                           class_names(train_data, config.label_column, class_values), config.label_column,
                                           None if config.prediction == "auto" else config.prediction)
    except ConfigError as error:
        raise TrainingError(f"prediction {config.prediction!r}: {error}") from None
    for path in [p for p in (config.data, config.eval_data) if p and p != "shapes"]:
        check_recorded_layout(path, tokenizer)
    check_tokens(train_data, layout, config.label_column, "training")
    check_tokens(eval_data, layout, config.label_column, "held-out")
    unknown = set(eval_data[config.label_column]) - set(class_values) if config.label_column else set()
    if unknown:
        raise TrainingError(f"held-out labels {sorted(unknown)} never occur in the training data")
    return layout, class_values


def build_prior(config: PriorTrainConfig, layout: TokenLayout, tokenizer: ImageTokenizer) -> ImagePrior:
    """A fresh causal LM of the config's PriorConfig, or one holding --init_from's weights."""
    prior = ImagePrior.from_layout(layout, config.prior_config(), tokenizer=tokenizer)
    if config.init_from:
        load_initial_weights(prior, config.init_from, tokenizer)
    prior.model.generation_config = prior.generation_config()
    return prior


def last_checkpoint(out: Path) -> str:
    """The newest complete checkpoint-N folder in `out`, for --resume. The Trainer writes a checkpoint in place and
    its trainer_state.json last, so a run stopped while saving (Ctrl-C, a kill) leaves a folder without a readable
    one: that folder is passed over and the one before it, intact, is resumed."""
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    found = sorted((int(p.name.rpartition("-")[2]), p) for p in out.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                   if p.is_dir() and p.name.rpartition("-")[2].isdigit()) if out.is_dir() else []
    for _, folder in reversed(found):
        try:
            json.loads((folder / TRAINER_STATE_NAME).read_text())
            return str(folder)
        except (OSError, ValueError):
            print(f"--resume: passing over {folder}, an incomplete checkpoint (no readable {TRAINER_STATE_NAME})")
    raise TrainingError(f"--resume: no checkpoint (a complete checkpoint-N folder) in {out}")


def train(config: PriorTrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train a prior with the transformers Trainer: data, layout, model, then the run and its saved result."""
    from transformers import set_seed

    config.validate()
    if config.label_column == "auto":
        config.label_column = "num_shapes" if config.data == "shapes" else None
    if config.time_budget_minutes and resume:
        raise TrainingError("--resume with time_budget_minutes: the budget plans one uninterrupted run")
    set_seed(config.seed)
    out = Path(config.output_dir)
    tokenizer = ImageTokenizer.from_pretrained(config.tokenizer)
    args = training_arguments(config, out)
    with args.main_process_first(desc="pre-tokenize"):
        train_data, eval_data = prepare_data(config, tokenizer)
    layout, class_values = checked_layout(config, tokenizer, train_data, eval_data)
    prior = build_prior(config, layout, tokenizer)
    collator = PriorCollator(layout, config.label_column, class_values, config.p_uncond, config.seed,
                             mask_schedule=config.mask_schedule)
    if ROW_COLUMN not in train_data.column_names:
        train_data = train_data.add_column(ROW_COLUMN, list(range(len(train_data))))
    trainer = make_trainer_class()(
        model=prior.model, args=args, train_dataset=train_data, eval_dataset=eval_data, data_collator=collator,
        callbacks=[epoch_callback(collator)],
    )
    trainer.add_callback(run_start_callback(trainer))
    if config.time_budget_minutes:
        trainer.step_plan = StepPlan(config.max_steps, config.warmup_steps)
        trainer.add_callback(time_budget_callback(trainer.step_plan, 60 * config.time_budget_minutes))
        if config.progress:  # after the budget, so that the bar shows the step plan of the same step
            from transformers.trainer_callback import ProgressCallback

            trainer.remove_callback(ProgressCallback)
            trainer.add_callback(planned_progress_callback(trainer.step_plan))
    checkpoint = last_checkpoint(out) if resume else None
    try:
        run = trainer.train(resume_from_checkpoint=checkpoint)
    except BaseException:  # Ctrl-C or an error: its line comes after the bar's, not inside it
        close_progress_bars(trainer)
        raise
    metrics = trainer.evaluate()
    if not trainer.is_world_process_zero():
        return {}
    result = _finish(config, prior, trainer, metrics, len(train_data), len(eval_data), out)
    return {**result, "resumed_from": checkpoint, "train_loss": run.training_loss, "train_metrics": run.metrics}


def load_initial_weights(prior: ImagePrior, name_or_path: str, tokenizer: ImageTokenizer) -> None:
    """Copy a saved prior's weights into `prior`; its token layout (codebook, grid, classes) and model sizes must
    equal the run's, so the ids mean the same and every weight fits."""
    initial = ImagePrior.from_pretrained(name_or_path, tokenizer=tokenizer)  # refuses another codebook
    run, saved = _must_match(prior), _must_match(initial)
    differing = [f"{key}: run {run[key]!r} vs saved {saved[key]!r}" for key in run if run[key] != saved[key]]
    if differing:
        raise TrainingError(f"init_from {name_or_path}: it differs from this run ({'; '.join(differing)})")
    prior.model.load_state_dict(initial.model.state_dict(), strict=True)


def _must_match(prior: ImagePrior) -> dict[str, Any]:
    """The token layout, less the tokenizer's name or path (its codebook hash is kept), and the model sizes."""
    layout = {key: value for key, value in dataclasses.asdict(prior.layout).items() if key != "tokenizer"}
    return {**layout, **{key: getattr(prior.model.config, key, None) for key in INIT_MODEL_KEYS}}


def portable_name(tokenizer: str) -> str:
    """How the prior names its tokenizer: a bundled name or Hub id as given, a local folder as an absolute path
    (a relative one would break as soon as the prior is loaded from another directory)."""
    from image_tokenizer.hub import bundled_models

    local = Path(tokenizer).expanduser()
    if local.is_dir() and ((local / "config.json").is_file() or tokenizer not in bundled_models()):
        return str(local.resolve())
    return tokenizer



def _finish(config: PriorTrainConfig, prior: ImagePrior, trainer: Any, metrics: dict, n_train: int, n_eval: int, out: Path) -> dict:
    prior.model = trainer.model.eval()
    bpt = round(bits_per_token(metrics["eval_loss"]), 4)
    params = sum(p.numel() for p in prior.model.parameters())
    command = "python " + " ".join(sys.argv) if sys.argv and sys.argv[0] else "train()"
    prior.card_info = {
        "metrics": {"heldout_bits_per_token": bpt, "heldout_loss_nats": round(metrics["eval_loss"], 4)},
        "training": {
            "command": command,
            "data": config.data if config.data != "shapes" else (
                f"shapes generator seed {config.train_seed}, {config.num_train_images} images"
                + (" + mirrored copies" if config.flip_augment else "") + f", tokenized with {config.tokenizer}"
            ),
            **({"initialised from": config.init_from} if config.init_from else {}),
            "training sequences": n_train,
            "held-out sequences": n_eval,
            "steps": trainer.state.global_step,
            **({"time budget": f"{config.time_budget_minutes} min (max_steps {config.max_steps})"} if config.time_budget_minutes else {}),
            "batch size": config.batch_size * trainer.args.world_size * config.gradient_accumulation_steps,
            "label dropout (CFG)": config.p_uncond if prior.layout.conditional else "n/a",
            "prediction": prior.layout.prediction + (f" ({config.mask_schedule} mask schedule; bits per masked id)"
                                                     if prior.layout.maskgit else ""),
            "parameters": params,
        },
        "prior_config": config.prior_config().to_json(),  # the architecture and sizes, as PriorConfig.from_json reads them
    }
    final = out / "final"
    prior.save_pretrained(final, model_name=config.model_name or Path(config.output_dir).name)
    (out / "prior_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    if config.sample_images > 0:
        from image_tokenizer.visualize import image_grid

        labels = None
        if prior.layout.conditional:
            labels = [i % prior.layout.num_classes for i in range(config.sample_images)]
        images = prior.generate(config.sample_images, seed=0, class_labels=labels)  # the prior's sampling defaults
        image_grid(images, columns=min(8, len(images)), scale=2).save(out / "samples.png")
    print(f"saved {final}; held-out {bpt} bits per token ({metrics['eval_loss']:.4f} nats)")
    return {"final_dir": final, "bits_per_token": bpt, "metrics": metrics}


def parse_config(argv: list[str] | None = None) -> tuple[PriorTrainConfig, bool]:
    config, resume = parse_dataclass_config(PriorTrainConfig, argv, __doc__)
    config.validate()
    return config, resume


def main(argv: list[str] | None = None) -> int:
    return run_cli("train_prior", parse_config, train, argv)


if __name__ == "__main__":
    sys.exit(main())
