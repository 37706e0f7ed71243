"""A prior's classes, by name and by index, everywhere: the API, `generate --class`, `info PRIOR`, the card."""

import json
import re
import subprocess
import sys

import pytest
import torch

from image_tokenizer import ImagePrior, InvalidIdsError, TokenLayout
from image_tokenizer.cli import main

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}


@pytest.fixture
def saved(tmp_path, tokenizer):
    """A user-trained-like conditional prior with two named classes, saved beside its tokenizer."""
    tokenizer.save_pretrained(tmp_path / "tok")
    torch.manual_seed(0)
    layout = TokenLayout.for_tokenizer(tokenizer, str(tmp_path / "tok"), class_names=["cats", "people"], class_label_column="label")
    prior = ImagePrior.from_layout(layout, tokenizer=tokenizer, **SIZES)
    prior.save_pretrained(tmp_path / "my-prior", model_name="my-prior")
    return prior, tmp_path / "my-prior"


def test_class_labels_by_name_index_or_both(saved):
    prior, _ = saved
    by_index = prior.generate(2, seed=0, class_labels=[1, 0], output_type="ids")
    assert torch.equal(prior.generate(2, seed=0, class_labels=["people", 0], output_type="ids"), by_index)
    assert torch.equal(prior.generate(2, seed=0, class_labels="people", output_type="ids"),
                       prior.generate(2, seed=0, class_labels=1, output_type="ids"))
    with pytest.raises(InvalidIdsError, match="no class named 'dogs'.*0=cats, 1=people"):
        prior.generate(2, class_labels="dogs", output_type="ids")


def test_generate_cli_takes_a_class_name_or_index(saved, tmp_path, capsys):
    _, folder = saved
    base = ["generate", "--model", str(folder), "--num", "2", "--no-progress"]
    assert main([*base, "--class", "people", "--output", str(tmp_path / "a.png"), "--ids-output", str(tmp_path / "a.json")]) == 0
    assert "of class 1 (people)" in capsys.readouterr().out
    assert main([*base, "--class", "1", "--output", str(tmp_path / "b.png"), "--ids-output", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads((tmp_path / "b.json").read_text())
    assert main([*base, "--class", "dogs"]) == 2
    assert "no class named 'dogs'" in capsys.readouterr().err


def test_info_describes_a_prior(saved, capsys):
    _, folder = saved
    assert main(["info", str(folder)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "image prior" and info["classes"] == {"0": "cats", "1": "people"}
    assert info["layout"]["grid_size"] == [8, 8] and info["tokenizer"].endswith("tok")
    assert set(info["sampling_defaults"]) >= {"temperature", "top_k", "top_p"}


def test_a_user_trained_priors_card_names_it_its_classes_and_its_task(saved):
    _, folder = saved
    card = (folder / "README.md").read_text()
    assert "\n# my-prior\n" in card and "shapes-64" not in card
    assert "0 = cats, 1 = people" in card
    assert "pipeline_tag: text-to-image" in card and "unconditional" not in card.split("---")[1]
    assert "pypi.org" not in card
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102  (the card's usage snippet runs as written)
    assert len(namespace["images"]) == 8 and len(namespace["completed"]) == 2


def test_generate_help_names_the_default_prior(capsys):
    assert main(["generate", "--help"]) == 0
    assert "(default shapes-64-prior)" in " ".join(capsys.readouterr().out.split())


def test_info_without_a_model_names_the_default_and_survives_a_closed_pipe(capsys):
    assert main(["info"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "shapes-64"
    child = subprocess.Popen([sys.executable, "-m", "image_tokenizer.cli", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # the reader is gone before anything is written, as with `info | head -0`
    assert child.wait(timeout=120) == 141
    assert child.stderr.read() == b""
