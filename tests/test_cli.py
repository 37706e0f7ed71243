import json

import numpy as np
import pytest
import torch
from PIL import Image

from image_tokenizer import ImageTokenizer
from image_tokenizer.cli import main


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.fixture
def image_files(tmp_path, images):
    paths = []
    for i, array in enumerate(images[:3]):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(array).save(path)
        paths.append(str(path))
    return paths


def test_encode_to_npy_and_json(tmp_path, model_dir, image_files, tokenizer, images, capsys):
    out = tmp_path / "ids.npy"
    assert main(["encode", *image_files, "--model", str(model_dir), "--output", str(out), "--no-progress"]) == 0
    ids = np.load(out)
    assert ids.shape == (3, 8, 8) and ids.dtype == np.uint16
    assert f"rows of {out} by file: {tmp_path / 'ids.files.json'}" in capsys.readouterr().err
    np.testing.assert_array_equal(ids, tokenizer.encode(images[:3]).numpy())
    out_json = tmp_path / "ids.json"
    assert main(["encode", image_files[0], "--model", str(model_dir), "--output", str(out_json)]) == 0
    payload = json.loads(out_json.read_text())
    assert payload["images"][0]["grid"] == [8, 8]
    assert payload["images"][0]["ids"] == ids[0].tolist()


def test_encode_prints_json_without_output(model_dir, image_files, capsys):
    assert main(["encode", image_files[0], "--model", str(model_dir)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["images"][0]["ids"]) == 8


def test_decode_writes_pngs(tmp_path, model_dir, tokenizer):
    ids = np.random.default_rng(0).integers(0, 64, (2, 8, 8)).astype(np.uint16)
    np.save(tmp_path / "ids.npy", ids)
    assert main(["decode", str(tmp_path / "ids.npy"), "--model", str(model_dir), "--output", str(tmp_path / "out.png")]) == 0
    decoded = np.asarray(Image.open(tmp_path / "out_0001.png"))
    np.testing.assert_array_equal(decoded, np.asarray(tokenizer.decode(torch.from_numpy(ids[1].astype(np.int64)))))
    (tmp_path / "one.json").write_text(json.dumps(ids[0].tolist()))
    assert main(["decode", str(tmp_path / "one.json"), "--model", str(model_dir), "--output", str(tmp_path / "one.png")]) == 0
    assert Image.open(tmp_path / "one.png").size == (16, 16)


def test_reconstruct_writes_images_and_a_comparison(tmp_path, model_dir, image_files, capsys):
    out_dir = tmp_path / "rec"
    assert main(["reconstruct", *image_files, "--model", str(model_dir), "--output-dir", str(out_dir), "--no-progress"]) == 0
    assert (out_dir / "comparison.png").is_file()
    assert (out_dir / "img0_reconstruction.png").is_file()
    assert "mean PSNR" in capsys.readouterr().out


def test_info_describes_the_model(model_dir, capsys):
    assert main(["info", str(model_dir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["codebook_size"] == 64 and info["grid_size"] == [8, 8] and info["vocab_len"] == 67


def test_shapes_writes_an_image_folder(tmp_path, capsys):
    assert main(["shapes", "--num", "5", "--output-dir", str(tmp_path / "s"), "--no-progress"]) == 0
    assert len(list((tmp_path / "s").glob("*.png"))) == 5
    assert len((tmp_path / "s" / "metadata.jsonl").read_text().splitlines()) == 5


def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch):
    """The demo with the bundled tokenizers, and a tiny prior of the bundled prior's layout in place of its 12 M
    parameters (generating 20 images with it is most of the demo's time). The demo with every bundled model, timed,
    is benchmarks/demo_time.py."""
    from image_tokenizer import ImagePrior, TokenLayout
    from image_tokenizer.hub import PRETRAINED_DIR

    asked = []

    def tiny_prior(cls, name, tokenizer=None, **kwargs):
        asked.append(name)
        torch.manual_seed(0)
        layout = TokenLayout.load(PRETRAINED_DIR / name)  # its classes and its tokenizer's codebook hash
        return cls.from_layout(layout, tokenizer=tokenizer, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)

    monkeypatch.setattr(ImagePrior, "from_pretrained", classmethod(tiny_prior))
    assert main(["demo", "--output-dir", str(tmp_path / "demo"), "--num", "2"]) == 0
    assert asked == ["shapes-64-prior"]
    for name in ("reconstructions.png", "generated.png", "completions.png"):
        assert (tmp_path / "demo" / name).is_file(), name
    out = capsys.readouterr().out
    assert "mean PSNR" in out and "generated 20 images" in out and "completed 2 half-images 3 ways" in out
    # real images too: the bundled held-out emoji through the bundled emoji-64-small (no emoji packages needed)
    emoji_line = next(line for line in out.splitlines() if line.startswith("emoji-64-small on 12 held-out emoji"))
    psnr = float(emoji_line.split("mean PSNR ")[1].split(" dB")[0])
    assert psnr > 24  # 27.8 dB when it was bundled; the shapes models score 11-13 dB on emoji
    with Image.open(tmp_path / "demo" / "emoji_reconstructions.png") as grid:
        assert grid.size == (12 * 130 + 2, 2 * 130 + 2 + 16)  # 12 tiles of 64 px at scale 2, two rows, a caption


@pytest.mark.parametrize(
    "argv, message",
    [
        (["encode", "{missing}", "--model", "{model}"], "no such file"),
        (["encode", "{bad}", "--model", "{model}"], "not an image file"),
        (["encode", "{image}", "--model", "{model}", "--output", "ids.txt"], "--output must end in .npy or .json"),
        (["decode", "{floats}", "--model", "{model}", "--output", "x.png"], "ids must be integers"),
        (["decode", "{range}", "--model", "{model}", "--output", "x.png"], "is out of range"),
        (["info", "{empty}"], "config.json not found"),
        (["shapes", "--num", "0", "--output-dir", "{tmp}/s"], "argument --num: must be at least 1, got 0"),
        (["encode", "{image}", "--model", "{model}", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
        (["encode", "{image}", "--model", "{model}", "--batch-size", "-1"], "argument --batch-size: must be at least 1"),
        (["generate", "--num", "-5", "--output", "x.png"], "argument --num: must be at least 1, got -5"),
        (["pretokenize", "--data", "shapes", "--output", "o", "--num-proc", "-1"], "argument --num-proc: must be at least 1"),
        (["pretokenize", "--data", "shapes", "--output", "o", "--streaming", "--shard-size", "0"], "argument --shard-size"),
        (["shapes", "--num", "3", "--seed", "-1", "--output-dir", "{tmp}/s"], "argument --seed: must be 0 or more"),
        (["encode", "{image}", "--model", "{model}", "--device", "bogus"], "'bogus' is not a device"),
        (["encode", "{image}", "--model", "{model}", "--device", "cuda:0"] if not torch.cuda.is_available() else ["info", "{empty}"],
         "no CUDA GPU" if not torch.cuda.is_available() else "config.json not found"),
    ],
)
def test_user_mistakes_are_one_line_without_traceback(tmp_path, model_dir, image_files, capsys, argv, message):
    (tmp_path / "bad.png").write_text("not an image")
    np.save(tmp_path / "floats.npy", np.zeros((8, 8), np.float32))
    np.save(tmp_path / "range.npy", np.full((8, 8), 999, np.int64))
    (tmp_path / "empty").mkdir()
    values = {
        "missing": str(tmp_path / "missing.png"),
        "bad": str(tmp_path / "bad.png"),
        "image": image_files[0],
        "model": str(model_dir),
        "floats": str(tmp_path / "floats.npy"),
        "range": str(tmp_path / "range.npy"),
        "empty": str(tmp_path / "empty"),
        "tmp": str(tmp_path),
    }
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert message in err[-1] and err[-1].startswith("image-tokenizer ")


def test_installed_console_script_exists():
    import shutil

    assert shutil.which("image-tokenizer") is not None
    assert isinstance(ImageTokenizer, type)


@pytest.mark.parametrize("content, message", [
    ('{"a": 1}', "expected a JSON array of ids"),
    ('{"images": 5}', "'images' must be a list of objects"),
    ('{"images": [{"x": 1}]}', "'images' must be a list of objects"),
    ('[[1, 2], [3]]', "rectangular"),
    ('[["a", "b"]]', "ids must be integers"),
    ('"text"', "expected a JSON array"),
    ("[" * 50_000 + "]" * 50_000, "nested deeper"),  # a hostile ids file: one line, not a RecursionError
    ("[" + "9" * 5000 + "]", "5,000 digits"),
    ("[1, 2", "not valid JSON"),
])
def test_decode_of_malformed_json_is_one_line(tmp_path, model_dir, capsys, content, message):
    (tmp_path / "ids.json").write_text(content)
    assert main(["decode", str(tmp_path / "ids.json"), "--model", str(model_dir), "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_evaluate_skips_a_corrupt_file_unless_strict(tmp_path, model_dir, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    assert main(["evaluate", "--model", str(model_dir), "--data", str(folder), "--num", "0", "--no-progress"]) == 0
    assert '"skipped_images": 1' in capsys.readouterr().out
    assert main(["evaluate", "--model", str(model_dir), "--data", str(folder), "--num", "0", "--strict-data"]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_no_progress_silences_datasets_bars_too(tmp_path, model_dir):
    import datasets

    datasets.enable_progress_bars()
    assert main(["shapes", "--num", "2", "--output-dir", str(tmp_path / "s"), "--no-progress"]) == 0
    assert not datasets.is_progress_bar_enabled()
    datasets.enable_progress_bars()


def test_an_unexpected_exception_is_reported_as_our_bug_in_one_line_with_its_traceback_in_a_file(
    tmp_path, model_dir, capsys, monkeypatch
):
    """A failure that is not the user's (here a RuntimeError from deep inside) exits 1 with one line naming a file
    that holds the traceback, instead of dumping it or blaming the input."""
    def broken(*args, **kwargs):
        raise RuntimeError("something inside went wrong")

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(ImageTokenizer, "from_pretrained", classmethod(lambda cls, *a, **k: broken()))
    assert main(["info", str(model_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bug in image-tokenizer" in err and "RuntimeError" in err
    reports = list(tmp_path.glob("image-tokenizer-crash-*.txt"))
    assert len(reports) == 1 and str(reports[0]) in err
    text = reports[0].read_text()
    assert "something inside went wrong" in text and "Traceback" in text and "'info'" in text
