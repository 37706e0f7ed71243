"""`datasets.load_dataset(OUT, split="train")` returns exactly the last completed run's rows (issue 37).

`datasets` keys its cache of a local folder by the folder's name and its card's `data_files` text only (not the
folder's path, the files' names on disk or their times), so two folders named `out`, or one folder deleted and
written again, used to share the first one's prepared rows. Every test here loads a folder, then writes another
run under the same name, and checks the rows that come back."""

from __future__ import annotations

import shutil

import datasets
import pytest
import torch

from image_tokenizer import ImageTokenizer
from image_tokenizer.cli import main
from image_tokenizer.data.shapes import to_dataset
from tests.helpers import tiny_config

MODES = {
    "streaming": ["--streaming", "--shard-size", "4"],
    "parquet": ["--format", "parquet"],
}


@pytest.fixture
def tok_dir(tmp_path):
    torch.manual_seed(0)
    ImageTokenizer(tiny_config()).save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def write(tok_dir, out, rows: int, *extra: str) -> None:
    argv = ["pretokenize", "--model", str(tok_dir), "--data", "shapes", "--num", str(rows), "--batch-size", "4",
            "--no-progress", "--output", str(out), *extra]
    assert main(argv) == 0


def loaded_rows(out) -> int:
    """How many rows `load_dataset` gives, after checking that they are the shapes images 0..n-1 in order."""
    tokens = datasets.load_dataset(str(out), split="train")
    expected = to_dataset(len(tokens), seed=0)["num_shapes"]
    assert tokens["source_index"] == list(range(len(tokens))) and tokens["num_shapes"] == expected
    return len(tokens)


@pytest.mark.parametrize("mode", MODES)
def test_same_folder_name_rewritten_and_overwritten_gives_each_runs_rows(tmp_path, tok_dir, mode):
    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"
    write(tok_dir, a, 10, *MODES[mode])
    assert loaded_rows(a) == 10
    write(tok_dir, b, 4, *MODES[mode])
    assert loaded_rows(b) == 4  # not a's 10 rows, prepared under the same folder name
    shutil.rmtree(a)
    write(tok_dir, a, 7, *MODES[mode])
    assert loaded_rows(a) == 7
    write(tok_dir, a, 5, *MODES[mode], "--overwrite")
    assert loaded_rows(a) == 5
    assert loaded_rows(b) == 4


def test_streaming_into_a_finished_folder_with_other_images_is_refused_not_skipped(tmp_path, tok_dir, capsys):
    """Same spec (`shapes`), other images: the folder is not 'already complete'; --overwrite replaces it."""
    out = tmp_path / "out"
    write(tok_dir, out, 6, *MODES["streaming"])
    assert main(["pretokenize", "--model", str(tok_dir), "--data", "shapes", "--num", "3", "--no-progress",
                 "--output", str(out), *MODES["streaming"]]) == 2
    assert "holds a different pre-tokenization; pass --overwrite" in capsys.readouterr().err
    assert loaded_rows(out) == 6


def test_node_sharded_outputs_of_the_same_name_give_their_own_rows(tmp_path, tok_dir):
    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"
    for out, rows in ((a, 10), (b, 4)):
        for rank in range(2):  # the second node to finish merges
            write(tok_dir, out, rows, *MODES["streaming"], "--num-nodes", "2", "--node-rank", str(rank))
        assert len(datasets.load_dataset(str(out), split="train")) == rows


def test_an_arrow_output_reads_with_load_from_disk_and_load_dataset_names_it(tmp_path, tok_dir):
    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"
    write(tok_dir, a, 10)
    write(tok_dir, b, 4)
    assert len(datasets.load_from_disk(str(a))) == 10 and len(datasets.load_from_disk(str(b))) == 4
    with pytest.raises(ValueError, match="load_from_disk"):  # datasets' own refusal, before our card is read
        datasets.load_dataset(str(a), split="train")
