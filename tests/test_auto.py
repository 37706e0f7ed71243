"""transformers' Auto classes load our folders after `import image_tokenizer`, with no remote code."""

import importlib
import json
import subprocess
import sys

import pytest
import torch

from image_tokenizer import ImageTokenizer, InvalidRequestError
from tests.helpers import tiny_config

FRESH = """
import json, sys
import numpy as np, torch
import image_tokenizer  # registers the Auto classes when transformers is imported
assert "transformers" not in sys.modules  # not imported by ours: every CLI call would pay for it
import image_tokenizer.converters.taming as taming  # a converter module imported: `convert` is still the function
convert = [callable(image_tokenizer.convert), taming.NAME]
from transformers import AutoConfig, AutoModel, AutoTokenizer
folder = sys.argv[1]
config = AutoConfig.from_pretrained(folder)
model = AutoModel.from_pretrained(folder)
tokenizer = AutoTokenizer.from_pretrained(folder)
image = np.zeros((16, 16, 3), np.uint8)
out = model(torch.zeros(1, 3, 16, 16))
print(json.dumps({"config": type(config).__name__, "model_type": config.model_type, "model": type(model).__name__,
                  "tokenizer": type(tokenizer).__name__, "ids": tokenizer.encode(image).tolist(),
                  "model_ids": out.ids[0].tolist(), "input_ids": len(tokenizer(image)["input_ids"][0]), "convert": convert}))
"""


def test_auto_classes_load_our_folder_in_a_fresh_interpreter(tmp_path):
    """One fresh interpreter (they cost a CPU second each): the Auto classes, and `image_tokenizer.convert` still
    the function after a converter module is imported."""
    torch.manual_seed(0)
    tok = ImageTokenizer(tiny_config())
    tok.save_pretrained(tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "config.json").read_text())["model_type"] == "image_tokenizer"
    run = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "tok")], capture_output=True, text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert (result["config"], result["model_type"]) == ("ImageTokenizerHFConfig", "image_tokenizer")
    assert (result["model"], result["tokenizer"]) == ("ImageTokenizerModel", "ImageTokenizer")
    expected = tok.encode(torch.zeros(3, 16, 16, dtype=torch.uint8)).tolist()
    assert result["ids"] == expected and result["input_ids"] == 8 * 8 + 2
    assert result["model_ids"] == tok.model.encode_ids(torch.zeros(1, 3, 16, 16))[0].tolist()
    assert result["convert"] == [True, "taming"]


def test_a_function_runs_when_its_module_is_imported_before_or_after(tmp_path, monkeypatch):
    """image_tokenizer.lazy_imports: how the Auto classes are registered without importing transformers."""
    from image_tokenizer.lazy_imports import call_when_imported

    (tmp_path / "lazy_probe_module.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_probe_module", raising=False)
    calls = []
    call_when_imported("lazy_probe_module", lambda: calls.append(sys.modules["lazy_probe_module"].VALUE))
    assert calls == []  # not imported yet
    import lazy_probe_module

    assert calls == [1] and lazy_probe_module.VALUE == 1  # run once the module's own code ran, before the importer got it
    call_when_imported("lazy_probe_module", lambda: calls.append("now"))
    assert calls == [1, "now"]  # already imported: at once
    importlib.reload(lazy_probe_module)
    assert calls == [1, "now"]  # one shot
    monkeypatch.delitem(sys.modules, "lazy_probe_module")


def test_folders_saved_before_model_type_existed_still_load(tmp_path):
    tok = ImageTokenizer(tiny_config())
    tok.save_pretrained(tmp_path / "tok")
    path = tmp_path / "tok" / "config.json"
    data = json.loads(path.read_text())
    del data["model_type"], data["files_sha256"]
    path.write_text(json.dumps(data))
    assert ImageTokenizer.from_pretrained(tmp_path / "tok").grid_size == (8, 8)


def test_bundled_tokenizer_folders_carry_model_type_and_hashes():
    """Bundled folders are ordinary saved folders: AutoConfig reads them, and their files are hash-checked."""
    from transformers import AutoConfig

    from image_tokenizer.checkpoint import verify_files
    from image_tokenizer.hub import PRETRAINED_DIR, bundled_models

    tokenizers = [name for name in bundled_models() if (PRETRAINED_DIR / name / "codebook.safetensors").is_file()]
    assert {"shapes-64", "shapes-64-small"} <= set(tokenizers)
    for name in tokenizers:
        data = json.loads((PRETRAINED_DIR / name / "config.json").read_text())
        assert data["model_type"] == "image_tokenizer"
        assert set(data["files_sha256"]) == {"model.safetensors", "codebook.safetensors", "vocab.json"}
        verify_files(PRETRAINED_DIR / name)
        assert AutoConfig.from_pretrained(str(PRETRAINED_DIR / name)).model_type == "image_tokenizer"


def test_dtype_by_name_as_transformers_passes_it():
    tok = ImageTokenizer(tiny_config())
    assert tok.to(dtype="bfloat16").dtype == torch.bfloat16
    assert tok.to(dtype="auto").dtype == torch.bfloat16  # "auto" keeps what it is
    assert tok.to(dtype="torch.float32").dtype == torch.float32
    with pytest.raises(InvalidRequestError, match="dtype must be.*got 'int8'"):
        tok.to(dtype="int8")
