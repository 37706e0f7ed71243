"""The training scripts' command lines: every config field a flag with its default and help, --config under flags."""

import dataclasses
import json

import pytest

from training import train_prior, train_tokenizer
from training.baselines import train_baseline

SCRIPTS = [(train_tokenizer, train_tokenizer.TrainConfig), (train_prior, train_prior.PriorTrainConfig),
           (train_baseline, train_baseline.BaselineConfig)]


@pytest.mark.parametrize("script, config_class", SCRIPTS)
def test_help_lists_every_field_with_its_default_and_help(script, config_class, capsys):
    assert script.main(["--help"]) == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines (also at hyphens)
    for field in dataclasses.fields(config_class):
        help_text = field.metadata.get("help", "")
        assert help_text, f"{field.name} has no help text"
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        assert f"[--{field.name}" in text, field.name
        assert "".join(f"{help_text} (default: {default})".split()) in text, field.name
    assert "--configFILE.json" in text and "[--resume]" in text


def test_flags_override_the_config_file(tmp_path):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"steps": 10, "betas": [0.4, 0.8], "model": {"ch": 32, "z_channels": 4},
                                       "progress": False, "eval_data": "held_out/"}))
    config, resume = train_tokenizer.parse_config(["--config", str(config_file)])
    assert (config.steps, config.betas, config.model, config.progress, config.eval_data, resume) == (
        10, (0.4, 0.8), {"ch": 32, "z_channels": 4}, False, "held_out/", False)
    config, _ = train_tokenizer.parse_config(["--config", str(config_file), "--steps", "3", "--model.ch", "64",
                                              "--betas", "0.5", "0.99", "--progress", "--eval-data", "none",
                                              "--max-pixels", "1000"])
    assert (config.steps, config.betas, config.model, config.progress, config.eval_data, config.max_pixels) == (
        3, (0.5, 0.99), {"ch": 64, "z_channels": 4}, True, None, 1000)
    prior, _ = train_prior.parse_config(["--label_column", "null", "--bf16", "false", "--no-flip-augment"])
    assert (prior.label_column, prior.bf16, prior.flip_augment) == (None, False, False)


def test_command_line_mistakes_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"stepz": 3}))
    for argv, message in [
        (["--steps", "many"], "argument --steps: invalid int value: 'many'"),
        (["--stepz", "3"], "unknown config field 'stepz'"),
        (["--ste", "3"], "unknown config field 'ste'"),  # no abbreviations: a typo is not another field
        (["--config", str(tmp_path / "c.json")], "unknown config field(s) ['stepz']"),
        (["--steps", "0"], "steps and batch_size must be positive"),
    ]:
        assert train_tokenizer.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("train_tokenizer: error: ") and message in err[0], err
