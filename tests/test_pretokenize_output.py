"""A pre-tokenization output folder is a dataset in its own right: `datasets.load_dataset(OUT)` reads the token
rows (never the bookkeeping JSON beside them), for every way of writing it, and a push is refused offline
before any work."""

from __future__ import annotations

import json

import datasets
import pytest

from image_tokenizer import HubError, InvalidRequestError
from image_tokenizer.data.shapes import to_dataset
from image_tokenizer.pretokenize import NodeSpec, pretokenize, pretokenize_streaming

ROWS = 6


@pytest.fixture
def shapes():
    return to_dataset(ROWS, seed=0).select_columns(["image", "num_shapes"])


def _rows(folder) -> datasets.Dataset:
    return datasets.load_dataset(str(folder), split="train")


def test_a_map_output_folder_loads_as_its_rows(tmp_path, tokenizer, shapes):
    tokens = pretokenize(shapes, tokenizer, output_dir=str(tmp_path / "out"), format="parquet", source="shapes",
                         model="tiny", load_from_cache_file=False)
    loaded = _rows(tmp_path / "out")
    assert loaded["input_ids"] == tokens["input_ids"] and loaded["source_index"] == list(range(ROWS))
    info = json.loads((tmp_path / "out" / "pretokenize_info.json").read_text())
    assert info["rows"] == ROWS and info["source"] == "shapes" and info["model"] == "tiny"
    arrow = pretokenize(shapes, tokenizer, output_dir=str(tmp_path / "arrow"), load_from_cache_file=False)
    assert datasets.load_from_disk(str(tmp_path / "arrow"))["input_ids"] == arrow["input_ids"]  # save_to_disk's loader


def test_a_streaming_output_loads_as_its_rows_one_node_and_many(tmp_path, tokenizer, shapes):
    single = pretokenize_streaming(shapes, tokenizer, str(tmp_path / "one"), shard_size=2, batch_size=2, progress=False)
    assert single["shards"] == 3
    one = _rows(tmp_path / "one")
    assert sorted(one["source_index"]) == list(range(ROWS))
    by_parquet = datasets.load_dataset("parquet", data_dir=str(tmp_path / "one" / "data"), split="train")
    assert by_parquet["input_ids"] == one["input_ids"]  # the old way keeps working

    for rank in range(2):  # two nodes, one after the other; the second to finish merges
        pretokenize_streaming(shapes, tokenizer, str(tmp_path / "two"), shard_size=2, batch_size=2, progress=False,
                              node=NodeSpec(2, rank))
    two = _rows(tmp_path / "two")
    assert sorted(two["source_index"]) == list(range(ROWS)) and set(two["node_rank"]) == {0, 1}
    assert dict(zip(two["source_index"], two["input_ids"])) == dict(zip(one["source_index"], one["input_ids"]))
    by_parquet = datasets.load_dataset("parquet", data_dir=str(tmp_path / "two" / "data"), split="train")
    assert sorted(by_parquet["source_index"]) == list(range(ROWS))


def test_push_to_hub_is_refused_offline_before_any_work(tmp_path, tokenizer, shapes, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        pretokenize(shapes, tokenizer, output_dir=str(tmp_path / "a"), push_to_hub="me/tokens")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        pretokenize_streaming(shapes, tokenizer, str(tmp_path / "b"), push_to_hub="me/tokens", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing was encoded or written
    with pytest.raises(InvalidRequestError, match="output_dir"):
        pretokenize(shapes, tokenizer, push_to_hub="me/tokens")


def test_cli_push_to_hub_is_refused_offline_in_one_line(tmp_path, tokenizer, capsys, monkeypatch):
    from huggingface_hub import constants

    from image_tokenizer.cli import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    tokenizer.save_pretrained(tmp_path / "model")
    argv = ["pretokenize", "--model", str(tmp_path / "model"), "--data", "shapes", "--num", "2", "--output",
            str(tmp_path / "out"), "--push-to-hub", "me/tokens", "--no-progress"]
    assert main(argv) == 2
    assert "cannot push to 'me/tokens': HF_HUB_OFFLINE=1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_push_to_an_unreachable_hub_is_refused_before_any_work(tmp_path, tokenizer, shapes, capsys, monkeypatch):
    """Online but with no Hub to reach (here a closed local port): the push is checked first, not after the encoding."""
    from huggingface_hub import constants

    from image_tokenizer.cli import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(HubError, match="unreachable"):
        pretokenize(shapes, tokenizer, output_dir=str(tmp_path / "a"), push_to_hub="me/tokens")
    with pytest.raises(HubError, match="unreachable"):
        pretokenize_streaming(shapes, tokenizer, str(tmp_path / "b"), push_to_hub="me/tokens", progress=False)
    tokenizer.save_pretrained(tmp_path / "model")
    argv = ["pretokenize", "--model", str(tmp_path / "model"), "--data", "shapes", "--num", "2", "--output",
            str(tmp_path / "c"), "--push-to-hub", "me/tokens", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot push to 'me/tokens': the Hub is unreachable" in err
    assert not any((tmp_path / name).exists() for name in "abc")


def test_push_without_the_right_to_write_is_refused_before_any_work(tmp_path, tokenizer, shapes, monkeypatch):
    from types import SimpleNamespace

    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    forbidden = SimpleNamespace(status_code=403, headers={}, request=None)  # what the Hub answers a token that may not write

    def refuse(self, repo_id, **kwargs):
        raise HfHubHTTPError("403 Forbidden", response=forbidden)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "create_repo", refuse)
    with pytest.raises(HubError, match="may not write"):
        pretokenize(shapes, tokenizer, output_dir=str(tmp_path / "a"), push_to_hub="someone-else/tokens")
    assert not (tmp_path / "a").exists()


def test_push_to_hub_uploads_the_finished_folder(tmp_path, tokenizer, shapes, monkeypatch):
    from types import SimpleNamespace

    from huggingface_hub import HfApi, constants

    uploads = []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kwargs: uploads.append(kwargs))
    pretokenize(shapes, tokenizer, output_dir=str(tmp_path / "out"), push_to_hub="me/tokens", load_from_cache_file=False)
    assert len(uploads) == 1 and uploads[0]["repo_id"] == "me/tokens" and uploads[0]["repo_type"] == "dataset"
    assert uploads[0]["folder_path"] == str(tmp_path / "out") and (tmp_path / "out" / "README.md").is_file()
