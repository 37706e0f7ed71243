"""The worked example (examples/own_images.py) runs end to end on a tiny folder: pre-tokenize, prior, generate."""

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from image_tokenizer import ImagePrior, ImageTokenizer
from tests.helpers import tiny_config


def load_example():
    path = Path(__file__).resolve().parents[1] / "examples" / "own_images.py"
    spec = importlib.util.spec_from_file_location("own_images", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_image_folder_pretokenize_prior_generate(tmp_path):
    torch.manual_seed(0)
    ImageTokenizer(tiny_config()).save_pretrained(tmp_path / "tok")
    rng = np.random.default_rng(0)
    for kind in ("cats", "dogs"):  # class subfolders, as `imagefolder` reads them
        (tmp_path / "photos" / kind).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "photos" / kind / f"{i}.png")
    summary = load_example().run(str(tmp_path / "photos"), str(tmp_path / "tok"), str(tmp_path / "out"), steps=2,
                                 hidden_size=32, layers=1, eval_fraction=0.25, num_images=2, progress=False)
    assert summary["conditional"] and np.isfinite(summary["bits_per_token"])
    assert Path(summary["generated"]).is_file()
    prior = ImagePrior.from_pretrained(summary["prior"])
    assert prior.layout.class_names == ["cats", "dogs"]  # the folder names, not "0"/"1"
