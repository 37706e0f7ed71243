"""Stage-1 training on CPU with a tiny config: resume equivalence, atomic checkpoints, guards, bad data."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from image_tokenizer import ConfigError, ImageTokenizer, ImageTokenizerConfig
from training import checkpoint as checkpoint_module
from training import losses as losses_module
from training.data import DataError, global_batch_indices
from training.train_tokenizer import TrainConfig, TrainingError, parse_config, train

TINY_MODEL = {
    "resolution": 64, "ch": 8, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "z_channels": 8, "norm_groups": 4,
    "use_mid_attention": False,
    "quantizer": {"codebook_size": 32, "codebook_dim": 4, "dead_code_threshold": 0.05},
}


def tiny(tmp_path, **overrides) -> TrainConfig:
    base = {
        "output_dir": str(tmp_path / "run"), "model": TINY_MODEL, "loss": {"disc_start": 2, "gan_start": 3},
        "num_train_images": 64, "eval_images": 16, "steps": 6, "batch_size": 8, "warmup_steps": 2, "disc_ch": 8,
        "log_every": 2, "image_every": 3, "checkpoint_every": 3, "progress": False, "kmeans_batches": 1, "kmeans_iters": 2,
    }
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.parametrize("codebook_lr_scale", [1.0, 10.0])  # 10: the codebook in a parameter group of its own
def test_resume_gives_the_same_weights_as_one_straight_run(tmp_path, codebook_lr_scale):
    straight = train(tiny(tmp_path / "a", steps=7, codebook_lr_scale=codebook_lr_scale))
    first = train(tiny(tmp_path / "b", steps=7, checkpoint_every=100, codebook_lr_scale=codebook_lr_scale),
                  stop_at=4)  # interrupted after step 4
    assert first["step"] == 4 and not (tmp_path / "b" / "run" / "final").exists()
    resumed = train(tiny(tmp_path / "b", steps=7, checkpoint_every=100, codebook_lr_scale=codebook_lr_scale), resume=True)
    assert resumed["step"] == 7
    a, b = straight["model"].state_dict(), resumed["model"].state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The GAN was active, so the resumed run also restored the critic and both optimizers.
    assert "gan_loss" in (tmp_path / "a" / "run" / "metrics.jsonl").read_text()


def test_a_resumed_run_logs_each_step_once(tmp_path):
    """A run killed after logging step 6 but before saving it resumes from step 4 and logs 5-6 again: once each."""
    import shutil

    train(tiny(tmp_path, steps=8, log_every=1, checkpoint_every=4), stop_at=6)
    checkpoints = tmp_path / "run" / "checkpoints"
    shutil.rmtree(checkpoints / "step-0000006")  # as if the process died before its checkpoint was complete
    (checkpoints / "latest").write_text("step-0000004\n")
    assert train(tiny(tmp_path, steps=8, log_every=1, checkpoint_every=4), resume=True)["step"] == 8
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_run_writes_logs_samples_checkpoints_and_a_final_tokenizer(tmp_path):
    summary = train(tiny(tmp_path))
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4, 6]
    assert {"loss", "rec_loss", "vq_loss", "usage", "perplexity", "images_per_s", "lr"} <= set(lines[-1])
    assert (run / "samples" / "step-0000003.png").is_file()
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0000006"
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-0000003", "step-0000006"]
    tokenizer = ImageTokenizer.from_pretrained(run / "final")
    metrics = tokenizer.card_info["metrics"]
    assert set(metrics) >= {"heldout_psnr_db", "heldout_ssim", "heldout_codebook_usage", "heldout_hole_recall"}
    assert metrics == {f"heldout_{k}": v for k, v in summary["metrics"].items()}
    assert "heldout_psnr_db" in (run / "final" / "README.md").read_text()


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    train(tiny(tmp_path, steps=6, checkpoint_every=3), stop_at=3)
    ckpts = tmp_path / "run" / "checkpoints"
    before = (ckpts / "step-0000003" / "model.safetensors").read_bytes()
    real_save = checkpoint_module.save_tensors
    calls = {"n": 0}

    def failing_save(path, tensors, metadata=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real_save(path, tensors, metadata)

    monkeypatch.setattr(checkpoint_module, "save_tensors", failing_save)
    with pytest.raises(OSError, match="No space left"):
        train(tiny(tmp_path, steps=6, checkpoint_every=3), resume=True)
    assert (ckpts / "latest").read_text().strip() == "step-0000003"
    assert (ckpts / "step-0000003" / "model.safetensors").read_bytes() == before
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]  # no half-written directory left
    monkeypatch.setattr(checkpoint_module, "save_tensors", real_save)
    assert train(tiny(tmp_path, steps=6, checkpoint_every=3), resume=True)["step"] == 6


def test_non_finite_loss_stops_with_the_step(tmp_path, monkeypatch):
    real = losses_module.reconstruction_loss
    calls = {"n": 0}

    def poisoned(x, x_hat, kind):
        calls["n"] += 1
        value = real(x, x_hat, kind)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(losses_module, "reconstruction_loss", poisoned)
    with pytest.raises(TrainingError, match=r"non-finite generator loss \(nan\) at step 2"):
        train(tiny(tmp_path))


def test_impossible_configs_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="not divisible by the downsampling factor"):
        train(tiny(tmp_path, model={**TINY_MODEL, "resolution": 62}))
    with pytest.raises(ConfigError, match="codebook_size must be at least 1, got 0"):
        train(tiny(tmp_path, model={**TINY_MODEL, "quantizer": {"codebook_size": 0, "codebook_dim": 4}}))
    assert not (tmp_path / "run").exists()


def _image_folder(root, count=12, corrupt=1):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    for i in range(corrupt):
        (root / f"broken{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def test_corrupt_training_images_are_skipped_and_counted(tmp_path):
    folder = _image_folder(tmp_path / "images")
    summary = train(tiny(tmp_path, data=str(folder), steps=4, eval_images=0, kmeans_init=False))
    assert summary["step"] == 4 and summary["skipped_images"] >= 1
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["skipped_images"] == summary["skipped_images"]


def test_strict_data_makes_a_corrupt_image_an_error(tmp_path):
    folder = _image_folder(tmp_path / "images")
    with pytest.raises(DataError, match=r"--strict-data.*broken0\.png"):
        train(tiny(tmp_path, data=str(folder), steps=4, eval_images=0, kmeans_init=False, strict_data=True))


def test_dataset_source_with_a_wrong_column_lists_the_columns(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"label": [1, 2]}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataError, match=r"no column 'image'; columns are \['label'\]"):
        train(tiny(tmp_path, data=str(tmp_path / "ds")))


def test_batch_order_is_a_pure_function_of_the_step():
    a = global_batch_indices(5, 8, 20, seed=0)
    assert np.array_equal(a, global_batch_indices(5, 8, 20, seed=0))
    epoch = np.concatenate([global_batch_indices(s, 4, 20, seed=0) for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(20))  # one epoch visits every item once


def test_command_line_overrides(tmp_path):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"steps": 10, "model": {"ch": 32}}))
    config, resume = parse_config(["--config", str(config_file), "--steps", "3", "--model.ch", "64", "--resume"])
    assert config.steps == 3 and config.model == {"ch": 64} and resume
    with pytest.raises(TrainingError, match="unknown config field 'stepz'"):
        parse_config(["--stepz", "3"])


def test_export_a_checkpoint_as_a_tokenizer(tmp_path):
    from training.export_checkpoint import export

    train(tiny(tmp_path, steps=6, checkpoint_every=3), stop_at=3)
    metrics = export(tmp_path / "run" / "checkpoints" / "step-0000003", tmp_path / "exported", 8, 1, "tiny", "stopped early")
    tokenizer = ImageTokenizer.from_pretrained(tmp_path / "exported")
    assert tokenizer.card_info["metrics"]["heldout_psnr_db"] == metrics["psnr_db"]
    assert tokenizer.card_info["training"]["steps"].startswith("3 of 6 planned")
    assert tokenizer.card_info["training"]["note"] == "stopped early"


def test_init_from_starts_at_a_saved_tokenizer_and_refuses_another_architecture(tmp_path, monkeypatch):
    from training import train_tokenizer as train_module

    saved = train(tiny(tmp_path / "first", steps=3))["model"].state_dict()
    start = {}

    def record_start(model, name_or_path):  # the weights the second run starts from, before its first step
        train_module_load(model, name_or_path)
        start.update({k: v.clone() for k, v in model.state_dict().items()})

    train_module_load = train_module.load_initial_weights
    monkeypatch.setattr(train_module, "load_initial_weights", record_start)
    second = train(tiny(tmp_path / "second", steps=2, init_from=str(tmp_path / "first" / "run" / "final")))
    assert second["step"] == 2
    for key in ("encoder.conv_in.weight", "quantizer.codebook", "decoder.conv_out.weight"):
        assert torch.equal(start[key], saved[key]), key  # loaded as saved, and k-means did not overwrite the codebook

    other = dict(TINY_MODEL, ch=16)
    with pytest.raises(TrainingError, match="model config differs.*ch: run 16 vs saved 8"):
        train(tiny(tmp_path / "third", model=other, init_from=str(tmp_path / "first" / "run" / "final")))
    assert not (tmp_path / "third" / "run").exists()  # refused before anything was written


def test_own_images_hold_out_a_fraction_and_the_card_says_what_was_held_out(tmp_path):
    folder = _image_folder(tmp_path / "images", count=20, corrupt=0)
    summary = train(tiny(tmp_path, data=str(folder), steps=2, eval_images=100, eval_fraction=0.25, kmeans_init=False))
    card = ImageTokenizer.from_pretrained(tmp_path / "run" / "final").card_info
    assert card["metrics"]["heldout_num_images"] == 5 and "heldout_psnr_db" in card["metrics"]
    assert "held-out part: 5 of image folder" in card["training"]["held-out set"]
    assert summary["metrics"]["num_images"] == 5
    other = _image_folder(tmp_path / "other", count=3, corrupt=0)
    train(tiny(tmp_path / "b", data=str(folder), eval_data=str(other), steps=1, kmeans_init=False))
    assert "3 images, image folder" in ImageTokenizer.from_pretrained(tmp_path / "b" / "run" / "final").card_info["training"]["held-out set"]
    with pytest.raises(TrainingError, match="eval_fraction splits your own data"):
        train(tiny(tmp_path / "c", eval_fraction=0.1))  # shapes have their own held-out seed


def _count_device_reads(monkeypatch) -> dict[str, int]:
    """Counts our code's calls of the Tensor methods that make a GPU wait for the host: item, tolist, float(),
    bool(). (torch's Adam reads its step counter with item(), but that tensor lives on the CPU by design.)"""
    import sys

    reads = {"n": 0}
    ours = ("/image_tokenizer/", "/training/")
    for name in ("item", "tolist", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            reads["n"] += any(part in caller for part in ours)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


def test_training_steps_do_not_read_the_device_back(tmp_path, monkeypatch):
    """Losses, usage, gradient norms, dead-code restarts and the non-finite check stay on the device between
    log steps: six steps read back exactly as often as two (the reads are the logging and the final checks)."""
    counts = []
    for steps in (2, 6):
        reads = _count_device_reads(monkeypatch)
        train(tiny(tmp_path / str(steps), steps=steps, log_every=100, image_every=0, checkpoint_every=100, eval_images=4,
                   loss={"disc_start": 0, "gan_start": 0}))
        counts.append(reads["n"])
        monkeypatch.undo()
    assert counts[0] == counts[1] > 0


def test_loader_workers_prepare_the_same_batches(tmp_path):
    """Batches prepared ahead of the step by DataLoader workers train bit for bit the same model."""
    inline = train(tiny(tmp_path / "inline", steps=4, checkpoint_every=100))["model"].state_dict()
    ahead = train(tiny(tmp_path / "ahead", steps=4, checkpoint_every=100, num_workers=1))["model"].state_dict()
    for key in inline:
        assert torch.equal(inline[key], ahead[key]), key


def test_channels_last_and_compile_train_the_same_model(tmp_path):
    """channels_last and torch.compile change only float rounding (the eager backend here; inductor is for
    GPUs, benchmarks/train_throughput.py)."""
    plain = train(tiny(tmp_path / "plain", steps=4, log_every=1, checkpoint_every=100))
    fast = train(tiny(tmp_path / "fast", steps=4, log_every=1, checkpoint_every=100, channels_last=True, compile="eager"))
    assert fast["model"].encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    logs = [[json.loads(line) for line in (tmp_path / run / "run" / "metrics.jsonl").read_text().splitlines()]
            for run in ("plain", "fast")]
    assert [row["step"] for row in logs[1]] == [1, 2, 3, 4]
    assert logs[0][0]["loss"] == pytest.approx(logs[1][0]["loss"], rel=1e-5)  # the first forward: rounding only
    for a, b in zip(*logs):  # Adam's first steps and the adaptive GAN weight amplify that rounding a little
        assert a["loss"] == pytest.approx(b["loss"], rel=5e-3) and a["usage"] == b["usage"]
    assert plain["metrics"]["psnr_db"] == pytest.approx(fast["metrics"]["psnr_db"], abs=0.01)


@pytest.mark.parametrize("quantizer", [{"kind": "fsq", "levels": [5, 4, 4]}, {"kind": "lfq", "bits": 8}])
def test_fsq_and_lfq_tokenizers_train_save_load_encode_and_decode(tmp_path, quantizer):
    model = {**TINY_MODEL, "quantizer": quantizer}
    summary = train(tiny(tmp_path, model=model, loss={"gan_weight": 0.0}, steps=4, checkpoint_every=4))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"usage", "perplexity", "vq_loss"} <= set(lines[-1])
    assert ("entropy_loss" in lines[-1]) == (quantizer["kind"] == "lfq")
    tokenizer = ImageTokenizer.from_pretrained(tmp_path / "run" / "final")
    assert tokenizer.config.quantizer.kind == quantizer["kind"]
    assert tokenizer.vocab_size == (80 if quantizer["kind"] == "fsq" else 256)
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    ids = tokenizer.encode(images)
    assert torch.equal(ImageTokenizer(tokenizer.config, summary["model"].eval()).encode(images), ids)
    assert ids.shape == (2, 16, 16) and int(ids.max()) < tokenizer.vocab_size
    assert np.asarray(tokenizer.decode(ids, output_type="np")).shape == (2, 64, 64, 3)
    assert 0 < tokenizer.card_info["metrics"]["heldout_codebook_usage"] <= 1


@pytest.mark.parametrize("name, kind", [("tiny_fsq.json", "fsq"), ("tiny_lfq.json", "lfq")])
def test_example_fsq_and_lfq_configs_parse(name, kind):
    from pathlib import Path

    config, _ = parse_config(["--config", str(Path(__file__).resolve().parents[1] / "training" / "configs" / name)])
    assert ImageTokenizerConfig(**config.model).quantizer.kind == kind


def test_a_bad_training_image_is_counted_once_and_named(tmp_path, capsys):
    """4 steps of 8 draw 32 images from 13 files, so the broken one comes up in two or three batches: it is one
    unreadable image, counted once, and the log names it."""
    folder = _image_folder(tmp_path / "images")
    summary = train(tiny(tmp_path, data=str(folder), steps=4, eval_images=0, kmeans_init=False, checkpoint_every=2))
    assert summary["skipped_images"] == 1
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["skipped_images"] for row in logged] == [1, 1]
    assert "skipped 1 unreadable training image(s): " in capsys.readouterr().out
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-0000002" / "state.json").read_text())
    assert next(iter(state["skipped_images"].values())).startswith(str(folder / "broken0.png"))
    resumed = train(tiny(tmp_path, data=str(folder), steps=6, eval_images=0, kmeans_init=False, checkpoint_every=2),
                    resume=True)
    assert resumed["skipped_images"] == 1  # the same file, met again after the resume


def _held_out_folder(root, good=3):
    """Readable held-out images and three that are not: truncated, not an image, a header declaring 10527x16000."""
    from tests.test_bad_input import declared_png

    _image_folder(root, count=good, corrupt=1)
    (root / "notes.png").write_bytes(b"not an image at all")
    (root / "huge.png").write_bytes(declared_png(10527, 16000))
    return root


def test_bad_held_out_images_are_skipped_counted_and_named_and_final_is_written(tmp_path, capsys):
    train_folder = _image_folder(tmp_path / "images", count=8, corrupt=0)
    held_out = _held_out_folder(tmp_path / "held_out")
    summary = train(tiny(tmp_path, data=str(train_folder), eval_data=str(held_out), steps=1, kmeans_init=False))
    card = ImageTokenizer.from_pretrained(tmp_path / "run" / "final").card_info
    assert card["metrics"]["heldout_num_images"] == 3 and card["metrics"]["heldout_skipped_images"] == 3
    assert summary["metrics"]["skipped_images"] == 3
    assert card["training"]["held-out set"].endswith("; 3 unreadable skipped")
    warning = next(line for line in capsys.readouterr().out.splitlines() if "held-out image(s)" in line)
    assert warning.startswith("warning: skipped 3 unreadable held-out image(s): ")
    for name, why in [("broken0.png", "truncated"), ("notes.png", "not an image"), ("huge.png", "declares 10527x16000")]:
        assert name in warning and why in warning


def test_strict_data_stops_at_a_bad_held_out_image_after_saving_final(tmp_path):
    train_folder = _image_folder(tmp_path / "images", count=8, corrupt=0)
    held_out = _held_out_folder(tmp_path / "held_out")
    with pytest.raises(TrainingError, match=r"without held-out metrics: unreadable held-out image \(--strict-data\)"):
        train(tiny(tmp_path, data=str(train_folder), eval_data=str(held_out), steps=1, kmeans_init=False, strict_data=True))
    card = ImageTokenizer.from_pretrained(tmp_path / "run" / "final").card_info
    assert card["metrics"] == {} and card["training"]["held-out set"].startswith("not evaluated: ")


def test_max_pixels_bounds_training_and_held_out_images(tmp_path, capsys):
    """A 80x80 image (6,400 pixels) is over a max_pixels of 5,000, in training data and held-out data alike."""
    train_folder = _image_folder(tmp_path / "images", count=8, corrupt=0)
    Image.new("RGB", (80, 80)).save(train_folder / "big.png")
    held_out = _image_folder(tmp_path / "held_out", count=2, corrupt=0)
    Image.new("RGB", (80, 80)).save(held_out / "big.png")
    summary = train(tiny(tmp_path, data=str(train_folder), eval_data=str(held_out), steps=2, kmeans_init=False,
                         max_pixels=5000))
    assert summary["skipped_images"] == 1 and summary["metrics"]["skipped_images"] == 1
    assert summary["metrics"]["num_images"] == 2
    assert "declares 80x80 = 6,400 pixels, over the pixel budget of 5,000" in capsys.readouterr().out
    assert train(tiny(tmp_path / "b", data=str(train_folder), eval_data=str(held_out), steps=2,
                      kmeans_init=False))["skipped_images"] == 0  # the default budget reads them


def test_ctrl_c_is_one_line_and_130_and_leaves_the_last_checkpoint_intact(tmp_path, monkeypatch, capsys):
    from training.train_tokenizer import main

    config = tiny(tmp_path, steps=6, checkpoint_every=3)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(dataclasses.asdict(config)))
    real_save = checkpoint_module.save_tensors

    def interrupted_save(path, tensors, metadata=None):
        if path.parent.name.startswith(".step-0000006") and path.name == "optimizer_g.safetensors":
            raise KeyboardInterrupt  # Ctrl-C halfway through writing the second checkpoint
        return real_save(path, tensors, metadata)

    monkeypatch.setattr(checkpoint_module, "save_tensors", interrupted_save)
    assert main(["--config", str(config_file)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"train_tokenizer: interrupted; the last checkpoint in {config.output_dir} "
                                            "is intact, continue with --resume")
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step-0000003"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step-0000003"]  # nothing half-written
    monkeypatch.setattr(checkpoint_module, "save_tensors", real_save)
    assert main(["--config", str(config_file), "--resume"]) == 0
    assert ImageTokenizer.from_pretrained(tmp_path / "run" / "final").card_info["training"]["steps"] == 6
