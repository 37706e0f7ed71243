import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from image_tokenizer import ImageTokenizer
from image_tokenizer.pretokenize import PretokenizeError, ids_dtype, pretokenize, tokenizer_fingerprint
from tests.helpers import tiny_config


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def image_dataset(images):
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": _png(a), "path": None} for a in images[:6]], "label": list(range(6)), "caption": list("abcdef")},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64"), "caption": datasets.Value("string")}),
    )


def test_ids_match_encode_and_columns_pass_through(tokenizer, image_dataset, images):
    out = pretokenize(image_dataset, tokenizer, batch_size=4, load_from_cache_file=False)
    assert out.column_names == ["label", "caption", "input_ids", "grid_h", "grid_w", "source_index"]
    assert out["source_index"] == list(range(len(out)))  # which input row (file) each row came from
    assert out.features["input_ids"].feature.dtype == "uint8"  # 64 codes fit a byte
    expected = tokenizer.encode(images[:6]).reshape(6, -1)
    assert torch.equal(torch.tensor(out["input_ids"], dtype=torch.long), expected)
    assert out["label"] == list(range(6)) and out["caption"] == list("abcdef")
    assert set(out["grid_h"]) == {8} and set(out["grid_w"]) == {8}


def test_smallest_integer_type():
    assert ids_dtype(256) == "uint8" and ids_dtype(1024) == "uint16" and ids_dtype(65536) == "uint16"
    assert ids_dtype(65537) == "uint32"


def test_flip_adds_marked_rows(tokenizer, image_dataset, images):
    out = pretokenize(image_dataset, tokenizer, flip=True, load_from_cache_file=False)
    assert len(out) == 12 and out["flipped"] == [False, True] * 6
    mirrored = tokenizer.encode(np.ascontiguousarray(images[0][:, ::-1])).reshape(-1).tolist()
    assert out[1]["input_ids"] == mirrored and out[1]["label"] == 0


def test_fingerprint_depends_on_the_weights(tokenizer):
    other = ImageTokenizer(tiny_config())
    assert tokenizer_fingerprint(tokenizer) == tokenizer_fingerprint(ImageTokenizer(tokenizer.config, tokenizer.model))
    assert tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(other)


def test_a_different_tokenizer_never_reuses_the_cache(tmp_path, tokenizer, image_dataset):
    image_dataset.save_to_disk(str(tmp_path / "ds"))
    on_disk = datasets.load_from_disk(str(tmp_path / "ds"))  # cached maps need a dataset backed by files
    first = pretokenize(on_disk, tokenizer)
    torch.manual_seed(123)
    other = ImageTokenizer(tiny_config())
    second = pretokenize(on_disk, other)
    assert first["input_ids"] != second["input_ids"]
    assert second["input_ids"] == other.encode([np.asarray(r["image"]) for r in datasets.load_from_disk(str(tmp_path / "ds"))]).reshape(6, -1).tolist()


def test_wrong_column_lists_the_columns(tokenizer, image_dataset):
    with pytest.raises(PretokenizeError, match=r"no column 'img'; the dataset has columns \['image', 'label', 'caption'\]"):
        pretokenize(image_dataset, tokenizer, image_column="img")


def _with_bad_rows(images):
    cells = [{"bytes": _png(a), "path": None} for a in images[:4]]
    cells[1] = {"bytes": b"\x89PNG\r\n\x1a\nbroken", "path": None}
    cells[3] = None
    return datasets.Dataset.from_dict(
        {"image": cells, "label": [0, 1, 2, 3]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )


def test_undecodable_row_stops_with_its_index(tokenizer, images):
    with pytest.raises(PretokenizeError, match=r"row 1: cannot decode image .*skip_bad=True"):
        pretokenize(_with_bad_rows(images), tokenizer, load_from_cache_file=False)


def test_skip_bad_drops_and_reports_rows(tokenizer, images):
    out, report = pretokenize(_with_bad_rows(images), tokenizer, skip_bad=True, return_report=True, load_from_cache_file=False)
    assert out["label"] == [0, 2]
    assert report["skipped"] == 2 and report["rows_in"] == 4 and report["rows_out"] == 2
    assert report["errors"][0].startswith("row 1:") and "missing" in report["errors"][1]


def test_several_processes_give_the_same_ids(tokenizer, image_dataset):
    single = pretokenize(image_dataset, tokenizer, batch_size=2, load_from_cache_file=False)
    multi = pretokenize(image_dataset, tokenizer, batch_size=2, num_proc=2, load_from_cache_file=False)
    assert single["input_ids"] == multi["input_ids"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_workers_give_the_same_rows(tokenizer, image_dataset, images, num_workers):
    """The accelerator path (decoding in DataLoader workers, uint8 batches to the device) writes the same
    dataset as the one-process path: ids, mirrors, passthrough columns, order."""
    single = pretokenize(image_dataset, tokenizer, flip=True, load_from_cache_file=False)
    loaded = pretokenize(image_dataset, tokenizer, flip=True, batch_size=4, num_workers=num_workers, load_from_cache_file=False)
    assert loaded.column_names == single.column_names
    assert loaded.to_dict() == single.to_dict()


def test_dataloader_workers_skip_and_stop_on_bad_rows_alike(tokenizer, images):
    out, report = pretokenize(_with_bad_rows(images), tokenizer, skip_bad=True, return_report=True, num_workers=2,
                              load_from_cache_file=False)
    assert out["label"] == [0, 2] and report["skipped"] == 2
    assert report["errors"][0].startswith("row 1:") and "missing" in report["errors"][1]
    with pytest.raises(PretokenizeError, match=r"row 1: cannot decode image .*skip_bad=True"):
        pretokenize(_with_bad_rows(images), tokenizer, num_workers=0, load_from_cache_file=False)


def test_cli_writes_atomically_refuses_other_data_and_reports_skips(tmp_path, tokenizer, capsys):
    import json

    from image_tokenizer.cli import main

    tokenizer.save_pretrained(tmp_path / "model")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{i}.png", "label": i}) + "\n" for i in range(5)))
    out = tmp_path / "tokens"
    base = ["pretokenize", "--model", str(tmp_path / "model"), "--output", str(out), "--no-progress"]
    assert main([*base, "--data", str(folder)]) == 0
    tokens = datasets.load_from_disk(str(out))
    assert len(tokens) == 5 and sorted(tokens["label"]) == [0, 1, 2, 3, 4]
    assert json.loads((out / "pretokenize_info.json").read_text())["rows"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tokens")]  # no temporary folder left
    assert main([*base, "--data", str(folder)]) == 0  # same inputs: a no-op rewrite is allowed

    shapes = ["--data", "shapes", "--num", "3"]
    assert main([*base, *shapes]) == 2
    assert "already holds a different dataset; pass --overwrite" in capsys.readouterr().err
    assert len(datasets.load_from_disk(str(out))) == 5  # untouched
    assert main([*base, *shapes, "--overwrite"]) == 0
    assert len(datasets.load_from_disk(str(out))) == 3


def test_cli_skip_bad_writes_a_report(tmp_path, tokenizer):
    import json

    from image_tokenizer.cli import main

    tokenizer.save_pretrained(tmp_path / "model")
    cells = [{"bytes": _png(np.zeros((16, 16, 3), np.uint8)), "path": None}, {"bytes": b"junk", "path": None}]
    ds = datasets.Dataset.from_dict({"image": cells}, features=datasets.Features({"image": datasets.Image()}))
    ds.save_to_disk(str(tmp_path / "ds"))
    argv = ["pretokenize", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "ds"), "--output", str(tmp_path / "out")]
    assert main(argv) == 2  # stops on the bad row by default
    assert not (tmp_path / "out").exists()
    assert main([*argv, "--skip-bad", "--format", "parquet"]) == 0
    report = json.loads((tmp_path / "out" / "skipped_rows.json").read_text())
    assert report["skipped"] == 1 and report["errors"][0].startswith("row 1:")
    assert len(datasets.load_dataset(str(tmp_path / "out"), split="train")) == 1


def test_streaming_writes_shards_and_resumes_after_an_interruption(tmp_path, tokenizer, image_dataset, monkeypatch):
    from image_tokenizer.pretokenize import pretokenize_streaming

    stream = image_dataset.to_iterable_dataset()
    straight = pretokenize_streaming(stream, tokenizer, str(tmp_path / "a"), shard_size=2, batch_size=2, progress=False)
    assert straight["shards"] == 3 and straight["rows_in"] == 6
    expected = datasets.load_dataset("parquet", data_dir=str(tmp_path / "a" / "data"), split="train")
    assert sorted(expected["label"]) == list(range(6))
    assert expected["input_ids"] == pretokenize(image_dataset, tokenizer, load_from_cache_file=False)["input_ids"]

    real = datasets.Dataset.to_parquet
    calls = {"n": 0}

    def crash_on_third(self, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            real(self, path, *args, **kwargs)  # half-way through writing the third shard...
            raise KeyboardInterrupt("killed")  # ...the process dies
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "to_parquet", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        pretokenize_streaming(stream, tokenizer, str(tmp_path / "b"), shard_size=2, batch_size=2, progress=False)
    written = sorted(p.name for p in (tmp_path / "b" / "data").iterdir())
    straight_names = sorted(p.name for p in (tmp_path / "a" / "data").glob("*.parquet"))
    assert [n for n in written if n.endswith(".parquet")] == straight_names[:2]  # shard-00000-<sha256>.parquet, ...
    assert not [n for n in written if n.startswith(".")]  # the interrupted shard left nothing behind
    monkeypatch.setattr(datasets.Dataset, "to_parquet", real)
    resumed = pretokenize_streaming(stream, tokenizer, str(tmp_path / "b"), shard_size=2, batch_size=2, progress=False)
    assert resumed["shards"] == 3 and resumed["rows_in"] == 6
    again = datasets.load_dataset("parquet", data_dir=str(tmp_path / "b" / "data"), split="train")
    assert again["input_ids"] == expected["input_ids"] and again["label"] == expected["label"]
    assert sorted(p.name for p in (tmp_path / "b" / "data").glob("*.parquet")) == straight_names  # same rows, names

    torch.manual_seed(5)
    with pytest.raises(PretokenizeError, match="holds a different pre-tokenization"):
        pretokenize_streaming(stream, ImageTokenizer(tiny_config()), str(tmp_path / "b"), shard_size=2, progress=False)
