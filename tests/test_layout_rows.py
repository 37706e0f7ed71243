"""Pre-tokenized rows of the non-grid layouts: a multiscale tokenizer's [N] ids (scales coarse to fine) and a
residual one's [h, w, depth] ids (depth fastest), on the map, DataLoader and streaming paths; the layout is recorded
in pretokenize_info.json and the card's front matter, and `token_layout` reads it back."""

from __future__ import annotations

import json

import datasets
import pytest
import torch

from image_tokenizer import ImageTokenizer
from image_tokenizer.data.shapes import to_dataset
from image_tokenizer.data.specs import load_token_splits, token_layout
from image_tokenizer.model_card import read_front_matter
from image_tokenizer.pretokenize import pretokenize, pretokenize_streaming
from tests.helpers import tiny_config

ROWS = 4
KINDS = {"multiscale": {"kind": "multiscale", "scales": (1, 2, 4, 8)}, "residual": {"kind": "residual", "depth": 3}}


@pytest.fixture(params=sorted(KINDS))
def stacked(request) -> ImageTokenizer:
    torch.manual_seed(0)
    return ImageTokenizer(tiny_config(**KINDS[request.param]))


@pytest.fixture(scope="module")
def shapes():
    return to_dataset(ROWS, seed=0).select_columns(["image", "num_shapes"])


def _expected(tokenizer: ImageTokenizer, shapes) -> list[list[int]]:
    ids = tokenizer.encode([row["image"] for row in shapes])
    return ids.reshape(len(shapes), -1).tolist()


def test_map_and_loader_rows_hold_the_flat_ids_and_the_layout(tmp_path, stacked, shapes):
    expected = _expected(stacked, shapes)
    layout = stacked.layout
    out = pretokenize(shapes, stacked, output_dir=str(tmp_path / "map"), format="parquet", load_from_cache_file=False)
    assert out["input_ids"] == expected and len(expected[0]) == layout.ids_per_image
    assert set(zip(out["grid_h"], out["grid_w"])) == {tuple(stacked.grid_size)}  # the finest grid
    loader = pretokenize(shapes, stacked, num_workers=0, flip=True, load_from_cache_file=False)
    assert loader["input_ids"][::2] == expected and not any(loader["flipped"][::2])

    info = json.loads((tmp_path / "map" / "pretokenize_info.json").read_text())
    assert info["layout"] == layout.to_dict()  # kind, scales or depth, shape, ids_per_image, order
    assert read_front_matter(tmp_path / "map" / "README.md")["image_token_layout"] == layout.to_dict()
    assert token_layout(str(tmp_path / "map")) == layout
    assert load_token_splits(str(tmp_path / "map"))["train"]["input_ids"] == expected


def test_streaming_rows_and_record_match_the_map_path(tmp_path, stacked, shapes):
    summary = pretokenize_streaming(shapes, stacked, str(tmp_path / "s"), shard_size=3, batch_size=2, progress=False)
    assert summary["layout"] == stacked.layout.to_dict()
    rows = datasets.load_dataset(str(tmp_path / "s"), split="train")
    assert rows["input_ids"] == _expected(stacked, shapes)
    assert token_layout(str(tmp_path / "s")) == stacked.layout
    split = stacked.layout.split_scales(torch.tensor(rows["input_ids"])) if stacked.layout.kind == "multiscale" else None
    if split is not None:  # the row splits back into its scales, coarse to fine
        assert [tuple(g.shape[1:]) for g in split] == [(p, p) for p in stacked.layout.scales]


def test_a_grid_output_and_a_bare_folder_have_their_own_answer(tmp_path, tokenizer, shapes):
    pretokenize(shapes, tokenizer, output_dir=str(tmp_path / "grid"), format="parquet", load_from_cache_file=False)
    assert token_layout(str(tmp_path / "grid")) == tokenizer.layout
    assert token_layout(str(tmp_path / "nothing")) is None
