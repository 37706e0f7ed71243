"""Many files through the command line: folders, --skip-bad, outputs that never collide, and the record of
which input each output came from."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from image_tokenizer.cli import main


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


@pytest.fixture
def photos(tmp_path, images):
    """A folder of good photos in two subfolders, with a 5x3 one among them."""
    folder = tmp_path / "photos"
    for i, array in enumerate(images[:4]):
        (folder / f"set{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / f"set{i % 2}" / f"p{i}.png")
    Image.fromarray(images[5][:3, :5]).save(folder / "set1" / "tiny.png")
    return folder


def test_encode_a_folder_skips_bad_files_and_maps_npy_rows_to_files(tmp_path, model_dir, photos, tokenizer, capsys):
    out = tmp_path / "ids.npy"
    assert main(["encode", str(photos), "--model", model_dir, "--output", str(out), "--no-progress"]) == 2
    assert "tiny.png" in capsys.readouterr().err and not out.exists()
    assert main(["encode", str(photos), "--model", model_dir, "--output", str(out), "--skip-bad", "--no-progress"]) == 0
    assert "skipped 1 file(s)" in capsys.readouterr().err
    record = json.loads((tmp_path / "ids.files.json").read_text())
    paths = [row["path"] for row in record["outputs"]]
    assert [row["row"] for row in record["outputs"]] == [0, 1, 2, 3]
    assert record["skipped"][0]["path"].endswith("tiny.png") and "too small" in record["skipped"][0]["error"]
    ids = np.load(out)
    for row, path in enumerate(paths):
        assert torch.equal(torch.from_numpy(ids[row].astype(np.int64)), tokenizer.encode(path))


def test_reconstruct_never_overwrites_and_records_each_input(tmp_path, model_dir, images, capsys):
    Image.fromarray(images[0]).save(tmp_path / "a.jpg")
    Image.fromarray(images[1]).save(tmp_path / "a.webp")
    (tmp_path / "other").mkdir()
    Image.fromarray(images[2]).save(tmp_path / "other" / "a.jpg")
    inputs = [str(tmp_path / "a.jpg"), str(tmp_path / "a.webp"), str(tmp_path / "other" / "a.jpg")]
    out = tmp_path / "rec"
    assert main(["reconstruct", *inputs, "--model", model_dir, "--output-dir", str(out), "--no-progress"]) == 0
    assert "reconstructed 3 image(s)" in capsys.readouterr().out
    written = sorted(p.name for p in out.glob("*_reconstruction.png"))
    assert len(written) == 3
    record = json.loads((out / "reconstructions.json").read_text())["outputs"]
    assert [row["image"] for row in record] == inputs
    assert sorted(row["output"] for row in record) == written


def test_decode_writes_the_format_its_extension_names_and_records_rows(tmp_path, model_dir, capsys):
    ids = np.random.default_rng(0).integers(0, 64, (2, 8, 8)).astype(np.uint16)
    np.save(tmp_path / "ids.npy", ids)
    assert main(["decode", str(tmp_path / "ids.npy"), "--model", model_dir, "--output", str(tmp_path / "x.jpg")]) == 0
    assert Image.open(tmp_path / "x_0000.jpg").format == "JPEG"
    record = json.loads((tmp_path / "x.files.json").read_text())["outputs"]
    assert [(row["output"], row["row"]) for row in record] == [("x_0000.jpg", 0), ("x_0001.jpg", 1)]
    assert main(["decode", str(tmp_path / "ids.npy"), "--model", model_dir, "--output", str(tmp_path / "x.idz")]) == 2
    assert "not an image format" in capsys.readouterr().err


def test_decode_refuses_special_ids_among_image_ids_naming_the_position(tmp_path, model_dir, tokenizer, capsys):
    sequence = [*range(30), tokenizer.pad_token_id, *range(34)]  # 64 image ids with a <pad> among them
    (tmp_path / "ids.json").write_text(json.dumps(sequence))
    assert main(["decode", str(tmp_path / "ids.json"), "--model", model_dir, "--output", str(tmp_path / "x.png")]) == 2
    assert f"id {tokenizer.pad_token_id} at position 30 is a special token" in capsys.readouterr().err
    padded = [tokenizer.boi_token_id, *range(64), tokenizer.eoi_token_id, tokenizer.pad_token_id]
    assert tokenizer.decode(padded).size == (16, 16)  # framing and padding are not image ids, and still go


def test_encode_of_a_read_only_array_gives_no_warning(tokenizer, images):
    pixels = np.asarray(Image.fromarray(images[0]))
    assert not pixels.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tokenizer.encode(pixels).shape == (8, 8)


def test_info_says_when_a_model_cannot_decode(tmp_path, capsys):
    import dataclasses

    from image_tokenizer import ImageTokenizer
    from tests.helpers import tiny_config

    ImageTokenizer(dataclasses.replace(tiny_config(), encoder_only=True, use_post_quant_conv=False)).save_pretrained(tmp_path / "enc")
    assert main(["info", str(tmp_path / "enc")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["can_decode"] is False and "encoder only" in info["note"]
