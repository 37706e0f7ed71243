import math

import pytest
import torch
from safetensors.torch import load_file

from image_tokenizer import ImagePrior, ImageTokenizer, TokenLayout
from image_tokenizer.errors import CheckpointError
from tests.helpers import tiny_config
from training.train_prior import PriorCollator, PriorTrainConfig, TrainingError, parse_config, train


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tok") / "tok"
    ImageTokenizer(tiny_config()).save_pretrained(path)
    return path


def tiny(tmp_path, tok_dir, **overrides) -> PriorTrainConfig:
    base = {
        "output_dir": str(tmp_path / "run"), "tokenizer": str(tok_dir), "num_train_images": 64, "eval_images": 16,
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "max_steps": 6, "batch_size": 8,
        "warmup_steps": 0, "lr_scheduler": "constant", "eval_steps": 3, "save_steps": 3, "logging_steps": 3,
        "sample_images": 2, "progress": False,
    }
    base.update(overrides)
    return PriorTrainConfig(**base)


def test_collator_prefixes_masks_and_drops_labels(tok_dir):
    tok = ImageTokenizer.from_pretrained(tok_dir)
    layout = TokenLayout.for_tokenizer(tok, "t", class_names=["1", "2"], class_label_column="n")
    rows = [{"input_ids": list(range(64)), "n": 1 + i % 2, "row_index": i} for i in range(400)]
    collator = PriorCollator(layout, "n", [1, 2], p_uncond=0.25)
    batch = collator(rows)
    assert torch.equal(collator(rows)["input_ids"], batch["input_ids"])  # a function of (seed, epoch, row)
    collator.epoch = 1
    assert not torch.equal(collator(rows)["input_ids"], batch["input_ids"])  # other rows dropped next epoch
    assert batch["input_ids"].shape == (400, 66)
    assert (batch["labels"][:, :2] == -100).all() and torch.equal(batch["labels"][:, 2:], batch["input_ids"][:, 2:])
    assert (batch["input_ids"][:, 1] == layout.boi_token_id).all()
    dropped = (batch["input_ids"][:, 0] == layout.null_class_token_id).float().mean().item()
    assert 0.18 < dropped < 0.32
    kept = batch["input_ids"][:, 0] != layout.null_class_token_id
    expected = torch.tensor([layout.first_class_token_id + i % 2 for i in range(400)])
    assert torch.equal(batch["input_ids"][kept, 0], expected[kept])
    evaluation = PriorCollator(layout, "n", [1, 2], p_uncond=0.25).for_eval()(rows)
    assert torch.equal(evaluation["input_ids"][:, 0], expected)  # never dropped at evaluation


def test_tiny_prior_trains_and_saves_a_loadable_model(tmp_path, tok_dir):
    result = train(tiny(tmp_path, tok_dir, max_steps=12, lr=3e-3))
    final = result["final_dir"]
    prior = ImagePrior.from_pretrained(final)
    assert prior.layout.class_names == ["1", "2", "3", "4", "5"] and prior.layout.class_label_column == "num_shapes"
    bpt = prior.card_info["metrics"]["heldout_bits_per_token"]
    assert math.isfinite(bpt) and bpt < math.log2(prior.layout.vocab_size)  # better than uniform guessing
    assert bpt == pytest.approx(result["bits_per_token"])
    assert "bits per token" in (final / "README.md").read_text() or "bits_per_token" in (final / "README.md").read_text()
    assert (tmp_path / "run" / "samples.png").is_file()
    ids = prior.generate(2, seed=0, class_labels=[0, 4], guidance_scale=2.0, output_type="ids")
    assert ids.shape == (2, 8, 8)


def test_a_maskgit_prior_trains_end_to_end_and_samples_in_its_steps(tmp_path, tok_dir):
    """train_prior's --prediction maskgit: a BERT masked LM on the same data path, saved, loaded and sampled in T
    parallel steps (one pass each) into the tokenizer's grid."""
    result = train(tiny(tmp_path, tok_dir, prediction="maskgit", max_steps=6, lr=3e-3))
    prior = ImagePrior.from_pretrained(result["final_dir"])
    assert prior.layout.prediction == "maskgit" and type(prior.model).__name__ == "BertForMaskedLM"
    assert math.isfinite(prior.card_info["metrics"]["heldout_bits_per_token"])
    ids = prior.generate(2, seed=0, class_labels=[0, 4], steps=3, output_type="ids")
    assert ids.shape == (2, 8, 8) and int(ids.max()) < prior.layout.codebook_size


def test_bf16_trains_on_a_cpu_too(tmp_path, tok_dir):
    # bf16 autocast halves a CPU step where the CPU has bf16 units; the Trainer needs use_cpu for it
    result = train(tiny(tmp_path, tok_dir, max_steps=3, bf16=True, eval_steps=3, save_steps=3))
    assert math.isfinite(result["bits_per_token"])
    assert ImagePrior.from_pretrained(result["final_dir"]).model.dtype == torch.float32  # weights stay fp32


def test_a_prior_trained_with_a_relative_tokenizer_path_loads_from_anywhere(tmp_path, tok_dir, monkeypatch):
    import shutil

    shutil.copytree(tok_dir, tmp_path / "tokenizers" / "tiny")
    monkeypatch.chdir(tmp_path)
    result = train(tiny(tmp_path, tok_dir, tokenizer="tokenizers/tiny", max_steps=1, eval_steps=1, save_steps=1,
                        logging_steps=1, sample_images=0))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    prior = ImagePrior.from_pretrained(result["final_dir"])
    assert prior.layout.tokenizer == str((tmp_path / "tokenizers" / "tiny").resolve())
    assert prior.tokenizer.grid_size == (8, 8)  # found from another working directory


def test_resume_through_trainer_checkpoints_matches_a_straight_run(tmp_path, tok_dir):
    straight = train(tiny(tmp_path / "a", tok_dir, sample_images=0))
    train(tiny(tmp_path / "b", tok_dir, max_steps=3, sample_images=0))  # stops after its step-3 checkpoint
    resumed = train(tiny(tmp_path / "b", tok_dir, sample_images=0), resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-3")
    assert resumed["train_loss"] != straight["train_loss"]  # it trained steps 4-6 only, from the checkpoint
    a = load_file(straight["final_dir"] / "model.safetensors")
    b = load_file(resumed["final_dir"] / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_init_from_starts_at_a_saved_prior_and_refuses_one_that_does_not_fit(tmp_path, tok_dir):
    first = train(tiny(tmp_path / "first", tok_dir, max_steps=3, sample_images=0))["final_dir"]
    # lr 0: the run's weights are exactly the saved prior's, so the copy is whole (every tensor, strictly)
    second = train(tiny(tmp_path / "second", tok_dir, max_steps=1, lr=0.0, init_from=str(first), sample_images=0))
    a, b = load_file(first / "model.safetensors"), load_file(second["final_dir"] / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
    assert ImagePrior.from_pretrained(second["final_dir"]).card_info["training"]["initialised from"] == str(first)
    with pytest.raises(TrainingError, match=r"init_from .*hidden_size: run 16 vs saved 32"):
        train(tiny(tmp_path / "third", tok_dir, hidden_size=16, init_from=str(first)))
    with pytest.raises(TrainingError, match=r"init_from .*class_names"):
        train(tiny(tmp_path / "fourth", tok_dir, label_column=None, init_from=str(first)))
    torch.manual_seed(1)
    ImageTokenizer(tiny_config()).save_pretrained(tmp_path / "other-tok")  # same shape, other codebook
    with pytest.raises(CheckpointError, match="codebook vectors differ"):
        train(tiny(tmp_path / "fifth", tok_dir, tokenizer=str(tmp_path / "other-tok"), init_from=str(first)))


def test_more_training_images_encode_only_the_new_ones(tmp_path, tok_dir, monkeypatch):
    import image_tokenizer.pretokenize as pretokenize_module
    from training import prior_data, train_prior

    encoded = []
    real = pretokenize_module.pretokenize
    monkeypatch.setattr(pretokenize_module, "pretokenize", lambda images, *a, **k: encoded.append(len(images)) or real(images, *a, **k))
    monkeypatch.setattr(prior_data, "CACHE_PART_IMAGES", 16)
    tok = ImageTokenizer.from_pretrained(tok_dir)
    small = train_prior.shapes_tokens(tiny(tmp_path, tok_dir, num_train_images=32), tok, "train")
    assert encoded == [16, 16] and len(small) == 64  # two parts, each with its mirrored rows
    large = train_prior.shapes_tokens(tiny(tmp_path, tok_dir, num_train_images=40), tok, "train")
    assert encoded == [16, 16, 8] and len(large) == 80  # the cached parts are reused
    assert large[:64]["input_ids"] == small[:]["input_ids"]
    monkeypatch.setattr(prior_data, "CACHE_PART_IMAGES", 1000)
    fresh = train_prior.shapes_tokens(tiny(tmp_path / "fresh", tok_dir, num_train_images=40), tok, "train")
    assert fresh[:]["input_ids"] == large[:]["input_ids"]  # the same rows as encoding all 40 images at once


def test_time_budget_ends_the_run_in_time_and_progress_follows_the_budget(tmp_path, tok_dir, capsys):
    import re
    import time

    config = tiny(tmp_path, tok_dir, max_steps=100_000, time_budget_minutes=0.05, lr_scheduler="cosine", warmup_steps=5,
                  eval_steps=100_000, save_steps=100_000, sample_images=0, progress=True)
    start = time.monotonic()
    result = train(config)
    assert time.monotonic() - start < 60  # 100,000 steps would take hours
    training = ImagePrior.from_pretrained(result["final_dir"]).card_info["training"]
    steps = training["steps"]
    assert 3 < steps < 100_000 and training["time budget"] == "0.05 min (max_steps 100000)"
    # The bar's total is the steps that fit the budget (none before the first estimate), never max_steps.
    totals = {int(total) for total in re.findall(r"\d+/(\d+) \[", capsys.readouterr().err)}
    assert 100_000 not in totals and steps in totals
    # Samples per second over the wall time of the steps run, not of max_steps' samples.
    metrics = result["train_metrics"]
    assert metrics["train_samples_per_second"] == pytest.approx(steps * config.batch_size / metrics["train_runtime"], rel=1e-3)
    with pytest.raises(TrainingError, match="time_budget_minutes fits a cosine"):
        parse_config(["--time_budget_minutes", "5", "--lr_scheduler", "constant"])
    with pytest.raises(TrainingError, match="uninterrupted"):
        train(config, resume=True)


@pytest.mark.parametrize("slowdown", [1.0, 3.0])  # steady steps; steps three times slower after the first 100
def test_time_budget_ends_the_cosine_at_the_last_step(slowdown):
    """The Trainer's order per step: the optimizer steps at the current lr, the scheduler steps, global_step
    grows, on_step_end runs (the budget may move the end), and the run stops once global_step reaches max_steps."""
    from types import SimpleNamespace

    from training.train_prior import StepPlan, time_budget_callback

    now = [0.0]
    plan = StepPlan(total_steps=100_000, warmup_steps=20)
    callback = time_budget_callback(plan, budget_seconds=60.0, clock=lambda: now[0])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan.lr_factor)
    state = SimpleNamespace(global_step=0, max_steps=100_000)
    callback.on_train_begin(None, state, None)
    used = []
    while state.global_step < state.max_steps:
        used.append(scheduler.get_last_lr()[0])
        now[0] += 0.1 * (slowdown if state.global_step >= 100 else 1.0)
        optimizer.step()
        scheduler.step()
        state.global_step += 1
        callback.on_step_end(None, state, None)
    assert 56.0 < now[0] <= 60.5  # the budget is used, not overrun by more than a re-estimation interval
    assert max(used) > 0.99 and used[-1] < 0.01  # the cosine ran its whole course and ended at the last step
    assert state.max_steps == plan.total_steps == state.global_step


def test_step_plan_is_transformers_cosine_with_a_movable_end():
    from transformers import get_cosine_schedule_with_warmup

    from training.train_prior import StepPlan

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=10, num_training_steps=100).lr_lambdas[0]
    plan = StepPlan(100, 10)
    assert all(plan.lr_factor(step) == pytest.approx(reference(step), abs=1e-12) for step in range(101))
    plan.total_steps = 50
    assert plan.lr_factor(50) == 0.0 and plan.lr_factor(30) == pytest.approx(0.5)


def test_resume_without_a_checkpoint_is_an_error(tmp_path, tok_dir):
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(tiny(tmp_path, tok_dir), resume=True)


def test_config_errors_are_clear(tmp_path, tok_dir):
    with pytest.raises(TrainingError, match="p_uncond"):
        parse_config(["--p_uncond", "1.5"])
    with pytest.raises(TrainingError, match="unknown config field"):
        parse_config(["--hidden", "3"])
    with pytest.raises(TrainingError, match="label_column 'colour'"):
        train(tiny(tmp_path, tok_dir, label_column="colour"))


def test_unconditional_prior_trains_without_labels(tmp_path, tok_dir):
    result = train(tiny(tmp_path, tok_dir, label_column=None, max_steps=3, sample_images=2))
    prior = ImagePrior.from_pretrained(result["final_dir"])
    assert not prior.layout.conditional and prior.layout.vocab_size == 67  # 64 codes + <boi> <eoi> <pad>
    assert prior.generate(2, seed=0, output_type="ids").shape == (2, 8, 8)


def test_own_token_data_trains_unconditional_by_default_and_keeps_classlabel_names(tmp_path, tok_dir):
    import datasets
    import numpy as np

    from image_tokenizer.pretokenize import pretokenize

    tok = ImageTokenizer.from_pretrained(tok_dir)
    rng = np.random.default_rng(0)
    images = datasets.Dataset.from_dict({
        "image": [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(24)],
        "label": [i % 2 for i in range(24)],
    }).cast_column("image", datasets.Image()).cast_column("label", datasets.ClassLabel(names=["cat", "dog"]))
    pretokenize(images, tok, load_from_cache_file=False).save_to_disk(str(tmp_path / "tokens"))
    common = {"data": str(tmp_path / "tokens"), "eval_fraction": 0.25, "max_steps": 1, "eval_steps": 1, "save_steps": 1,
              "logging_steps": 1, "sample_images": 0}
    plain = train(tiny(tmp_path / "a", tok_dir, **common))  # the default label_column "auto": no num_shapes here
    assert not ImagePrior.from_pretrained(plain["final_dir"]).layout.conditional
    labelled = train(tiny(tmp_path / "b", tok_dir, label_column="label", **common))
    assert ImagePrior.from_pretrained(labelled["final_dir"]).layout.class_names == ["cat", "dog"]


def test_store_bfloat16_keeps_everything_but_the_weights_precision(tmp_path, tok_dir):
    """The bundled form of a prior: same files and layout, weights rounded to bfloat16, loaded back in float32."""
    from training.store_bfloat16 import store_bfloat16

    tok = ImageTokenizer.from_pretrained(tok_dir)
    source = ImagePrior.from_layout(TokenLayout.for_tokenizer(tok, str(tok_dir)), tokenizer=tok,
                                    hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    source.save_pretrained(tmp_path / "fp32", model_name="shapes-64-prior")
    store_bfloat16(str(tmp_path / "fp32"), str(tmp_path / "bf16"))
    stored = load_file(tmp_path / "bf16" / "model.safetensors")
    assert {t.dtype for t in stored.values()} == {torch.bfloat16}
    assert (tmp_path / "bf16" / "prior_layout.json").read_text() == (tmp_path / "fp32" / "prior_layout.json").read_text()
    loaded = ImagePrior.from_pretrained(tmp_path / "bf16", tokenizer=tok)
    assert loaded.model.dtype == torch.float32
    for name, weight in source.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], weight.to(torch.bfloat16).float()), name


def test_ctrl_c_is_one_line_and_130_and_resume_passes_over_a_half_written_checkpoint(tmp_path, tok_dir, monkeypatch, capsys):
    """The Trainer writes a checkpoint in place; Ctrl-C while it writes the second leaves checkpoint-6 without its
    trainer_state.json, and --resume continues from checkpoint-3, which is intact."""
    import dataclasses
    import json

    from transformers import Trainer

    from training.train_prior import last_checkpoint, main

    config = tiny(tmp_path, tok_dir, max_steps=9, sample_images=0)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(dataclasses.asdict(config)))
    real_save = Trainer._save_rng_state

    def interrupted(self, output_dir):
        if output_dir.endswith("checkpoint-6"):
            raise KeyboardInterrupt
        return real_save(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", interrupted)
    assert main(["--config", str(config_file)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"train_prior: interrupted; the last checkpoint in {config.output_dir} "
                                            "is intact, continue with --resume")
    assert (tmp_path / "run" / "checkpoint-6").is_dir()  # half-written
    assert last_checkpoint(tmp_path / "run").endswith("checkpoint-3")
    monkeypatch.setattr(Trainer, "_save_rng_state", real_save)
    assert main(["--config", str(config_file), "--resume"]) == 0
    assert ImagePrior.from_pretrained(tmp_path / "run" / "final").card_info["training"]["steps"] == 9
