"""Token layouts through the tokenizer: encode/decode shapes and round trips, tok() framing, batch_decode, the
text-vocab extension, split/join of scales, save/load (config.json and vocab.json carry the layout), the model
card and `info`, and ids of the wrong length or depth as our errors."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from image_tokenizer import (
    CheckpointError,
    ConfigError,
    ImageTokenizer,
    ImageTokenizerError,
    InvalidIdsError,
    InvalidImageError,
    InvalidRequestError,
)
from image_tokenizer.cli import main
from image_tokenizer.config import CONFIG_NAME, FILES_SHA256
from image_tokenizer.vocab import VOCAB_NAME, ImageVocab
from tests.fuzz import random_ids
from tests.helpers import tiny_config, tiny_titok_config
from tests.test_text_vocab import tiny_text_tokenizer

SCALES = (1, 2, 3, 5, 8)
N = sum(p * p for p in SCALES)  # 103 ids per image
DEPTH = 3
LAYOUTS = {
    "grid": ({}, (8, 8)),
    "multiscale": ({"kind": "multiscale", "scales": SCALES}, (N,)),
    "residual": ({"kind": "residual", "depth": DEPTH}, (8, 8, DEPTH)),
    "1d": ({}, (6,)),  # a TiTok-style ViT's 6 latent tokens (tiny_titok_config)
}


def make(kind: str) -> ImageTokenizer:
    torch.manual_seed(0)
    return ImageTokenizer(tiny_titok_config() if kind == "1d" else tiny_config(**LAYOUTS[kind][0]))


@pytest.fixture(params=list(LAYOUTS))
def kind(request) -> str:
    return request.param


@pytest.fixture
def tok(kind) -> ImageTokenizer:
    return make(kind)


def test_encode_gives_the_layouts_shape_and_decode_takes_it(tok, kind, images):
    shape = LAYOUTS[kind][1]
    batch = tok.encode(images[:3])
    assert batch.shape == (3, *shape) and batch.dtype == torch.long
    assert tok.encode(images[0]).shape == shape
    assert tok.layout.kind == kind and tok.layout.shape == shape and tok.layout.ids_per_image == int(np.prod(shape))
    pixels = tok.decode(batch, output_type="pt")
    assert pixels.shape == (3, 3, 16, 16)
    # One image's ids, a flat sequence and a framed one decode to the batch's first image (decoding is not padded
    # to a fixed batch, so pixels may differ from the batch's in the last bits; ids never do).
    single = tok.decode(batch[0], output_type="pt")
    assert torch.allclose(single, pixels[0], atol=1e-5)
    for ids in (batch[0].reshape(-1), [tok.boi_token_id, *batch[0].reshape(-1).tolist(), tok.eoi_token_id]):
        assert torch.equal(tok.decode(ids, output_type="pt"), single)
    assert tok.encode([]).shape == (0, *shape)
    assert tok.decode(torch.empty((0, *shape), dtype=torch.long), output_type="pt").shape == (0, 3, 16, 16)


def test_decoding_is_the_quantizers_sum_of_the_ids(tok, kind, images):
    """Round trip at the feature level: the decoder receives exactly what encoding quantized to."""
    pixels = torch.stack([tok.preprocess(image)[0][0] for image in images[:2]])
    ids = tok.encode(images[:2])
    with torch.no_grad():
        out = tok.model.encode(pixels)
        assert torch.equal(out.ids, ids)
        as_map = ids.unsqueeze(1) if kind == "1d" else ids  # the quantizer sees 1d ids as a [1, N] map
        assert torch.allclose(tok.model.quantizer.lookup(as_map.clone()), out.quantized, atol=1e-6, rtol=0)


def test_ids_do_not_depend_on_the_batch(tok, images):
    together = tok.encode(images[:9])  # 9 images: a full micro-batch of 8 and a padded one
    alone = torch.stack([tok.encode(image) for image in images[:9]])
    assert torch.equal(together, alone)


def test_call_frames_the_flat_ids_and_batch_decode_reads_them(tok, images):
    ids = tok.encode(images[:2])
    encoded = tok(images[:2], return_tensors="pt")
    flat = ids.reshape(2, -1)
    assert torch.equal(encoded["input_ids"][:, 0], torch.full((2,), tok.boi_token_id))
    assert torch.equal(encoded["input_ids"][:, -1], torch.full((2,), tok.eoi_token_id))
    assert torch.equal(encoded["input_ids"][:, 1:-1], flat)
    assert tok.model_max_length == flat.shape[1] + 2
    assert torch.equal(tok.batch_decode(encoded["input_ids"], output_type="pt"), tok.decode(ids, output_type="pt"))
    assert tok(images[0])["input_ids"] == [encoded["input_ids"][0].tolist()]  # one image: a batch of one sequence
    assert np.asarray(tok([], return_tensors="np")["input_ids"]).shape == (0, flat.shape[1] + 2)


@pytest.mark.parametrize("add_eol", [False, True])
def test_text_vocab_extension(tok, kind, images, add_eol):
    text_tok = tiny_text_tokenizer()
    mapping = tok.extend_text_tokenizer(text_tok, add_eol=add_eol)
    ids = tok.encode(images[0])
    text_ids = tok.to_text_ids(ids, mapping)
    rows = {"grid": 8, "multiscale": sum(SCALES), "residual": 8, "1d": 1}[kind]  # grid, scale or position rows; 1d: one
    assert len(text_ids) == ids.numel() + 2 + (rows if add_eol else 0)
    image_part = text_ids[1:-1] if not add_eol else text_ids[1:-1][text_ids[1:-1] != mapping.eol_id]
    assert torch.equal(mapping.text_ids_to_image(image_part), ids.reshape(-1))
    assert torch.equal(tok.from_text_ids(text_ids, mapping), ids)
    assert torch.equal(tok.from_text_ids(torch.stack([text_ids, text_ids]), mapping), torch.stack([ids, ids]))
    if add_eol and kind == "multiscale":  # <eol> closes each row of each scale: 1 | 2 2 | 3 3 3 | ...
        ends = torch.nonzero(text_ids == mapping.eol_id).reshape(-1) - 1  # positions after <boi>
        lengths = torch.diff(torch.cat([torch.tensor([-1]), ends])) - 1
        assert lengths.tolist() == [p for p in SCALES for _ in range(p)]


def test_split_and_join_scales():
    tok = make("multiscale")
    ids = tok.encode(np.zeros((4, 16, 16, 3), np.uint8) + np.arange(4)[:, None, None, None].astype(np.uint8) * 60)
    grids = tok.split_scales(ids)
    assert [tuple(g.shape) for g in grids] == [(4, p, p) for p in SCALES]
    assert torch.equal(grids[1].reshape(4, -1), ids[:, 1:5])  # scale 2x2 follows the single 1x1 id, row-major
    assert torch.equal(tok.join_scales(grids), ids)
    one = tok.split_scales(ids[0].tolist())
    assert [tuple(g.shape) for g in one] == [(p, p) for p in SCALES] and torch.equal(tok.join_scales(one), ids[0])
    assert torch.equal(tok.model.quantizer.step_ids(ids)[2], grids[2])  # the quantizer's steps are these scales
    with pytest.raises(InvalidIdsError, match=f"split_scales takes ids \\[..., {N}\\]"):
        tok.split_scales(ids[:, :-1])
    with pytest.raises(InvalidIdsError, match="join_scales takes 5 grids"):
        tok.join_scales(grids[:-1])
    with pytest.raises(InvalidRequestError, match="applies to multiscale tokenizers; this one's layout is 'grid'"):
        make("grid").split_scales(torch.zeros(8, 8, dtype=torch.long))


@pytest.mark.parametrize(
    ("kind", "ids", "error", "message"),
    [
        ("multiscale", torch.zeros(N - 1, dtype=torch.long), InvalidIdsError, f"a multiscale image holds {N} ids"),
        ("multiscale", torch.zeros(2, N + 1, dtype=torch.long), InvalidIdsError, f"holds {N} ids .* got {N + 1}"),
        ("multiscale", torch.zeros(2, 8, 8, dtype=torch.long), InvalidIdsError, "multiscale ids must have rank 1"),
        ("multiscale", torch.zeros(2, N, dtype=torch.long).index_fill_(1, torch.tensor([7]), 70), InvalidIdsError,
         r"id 70 at position \(0, 7\) is out of range: image token ids are 0..63"),
        ("residual", torch.zeros(8, 8, DEPTH - 1, dtype=torch.long), InvalidIdsError, "got depth 2 in shape"),
        ("residual", torch.zeros(2, 8, 8, DEPTH + 1, dtype=torch.long), InvalidIdsError, r"\[h, w, 3\] per image"),
        ("residual", torch.zeros(8 * 8 * DEPTH - 1, dtype=torch.long), InvalidIdsError, "must be a multiple of 3"),
        ("residual", torch.zeros(7 * 8 * DEPTH, dtype=torch.long), InvalidIdsError, r"holds 192 ids \(8x8 positions"),
        ("residual", torch.zeros(8, 8, dtype=torch.long), InvalidIdsError, "residual ids must have rank 1"),
        ("grid", torch.zeros(63, dtype=torch.long), InvalidIdsError, "must hold 64 image tokens"),
        ("1d", torch.zeros(5, dtype=torch.long), InvalidIdsError, "a 1d image holds 6 ids .*got 5"),
        ("1d", torch.zeros(2, 7, dtype=torch.long), InvalidIdsError, "a 1d image holds 6 ids .*got 7"),
        ("1d", torch.zeros(2, 2, 3, dtype=torch.long), InvalidIdsError, r"1d ids must have rank 1 \(\[6\]"),
        ("1d", torch.zeros(2, 6, dtype=torch.long).index_fill_(1, torch.tensor([5]), 70), InvalidIdsError,
         r"id 70 at position \(0, 5\) is out of range"),
    ],
)
def test_ids_of_the_wrong_length_or_depth_are_our_errors(kind, ids, error, message):
    tok = make(kind)
    with pytest.raises(error, match=message):
        tok.decode(ids)
    with pytest.raises(error):
        tok.batch_decode([ids.reshape(-1)])


def test_pretokenize_writes_a_1d_row_as_its_ids_one_by_n(images):
    """A 1d row is its N ids, grid_h 1 and grid_w N, on the map path and the DataLoader path alike."""
    import datasets

    from image_tokenizer.pretokenize import pretokenize

    tok = make("1d")
    dataset = datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in images[:5]], "label": list(range(5))},
                                         features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    mapped = pretokenize(dataset, tok, batch_size=2, flip=True, load_from_cache_file=False)
    loaded = pretokenize(dataset, tok, batch_size=2, flip=True, num_workers=0, load_from_cache_file=False)
    assert mapped.to_dict() == loaded.to_dict()
    unflipped = [row for row, flipped in zip(mapped["input_ids"], mapped["flipped"]) if not flipped]
    assert torch.equal(torch.tensor(unflipped, dtype=torch.long), tok.encode(images[:5]))
    assert set(mapped["grid_h"]) == {1} and set(mapped["grid_w"]) == {6}


def test_layout_specific_requests_are_refused(images):
    with pytest.raises(InvalidRequestError, match="native_size does not apply to a multiscale tokenizer"):
        make("multiscale").encode(images[0], native_size=True)
    with pytest.raises(InvalidRequestError, match="grid_size applies to grid and residual tokenizers"):
        make("multiscale").decode(torch.zeros(N, dtype=torch.long), grid_size=(4, 4))
    with pytest.raises(InvalidRequestError, match="native_size does not apply to a 1d tokenizer"):
        make("1d").encode(images[0], native_size=True)
    with pytest.raises(InvalidRequestError, match="grid_size applies to grid and residual tokenizers; this 1d one"):
        make("1d").decode(torch.zeros(6, dtype=torch.long), grid_size=(2, 3))
    with pytest.raises(InvalidImageError, match="a 1d tokenizer encodes 16x16 images, got \\(32, 32\\)"):
        make("1d").encode_pixels(torch.zeros(1, 3, 32, 32))
    residual = make("residual")  # native-size grids: residual ids of another h x w decode too
    assert residual.decode(torch.zeros(4, 6, DEPTH, dtype=torch.long), output_type="pt").shape == (3, 8, 12)
    flat = torch.zeros(4 * 6 * DEPTH, dtype=torch.long)
    assert residual.decode(flat, output_type="pt", grid_size=(4, 6)).shape == (3, 8, 12)


def test_save_and_load_carry_the_layout(tok, kind, images, tmp_path):
    tok.save_pretrained(tmp_path)
    vocab = json.loads((tmp_path / VOCAB_NAME).read_text())  # plain JSON: a data pipeline needs no library
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    shape = list(LAYOUTS[kind][1])
    for layout in (vocab["layout"], config["layout"]):
        assert layout["kind"] == kind and layout["shape"] == shape and layout["ids_per_image"] == int(np.prod(shape))
    assert vocab["version"] == (1 if kind == "grid" else 2)  # a version-1 reader reads grids, and refuses the others
    assert vocab["layout"].get("scales") == (list(SCALES) if kind == "multiscale" else None)
    loaded = ImageTokenizer.from_pretrained(tmp_path)
    assert loaded.layout == tok.layout
    assert torch.equal(loaded.encode(images[:3]), tok.encode(images[:3]))
    card = (tmp_path / "README.md").read_text()
    assert f"token layout | `{kind}`" in card
    assert (tok.layout.describe() if kind != "grid" else "| 64 (8x8, row-major) |") in card
    assert ("tok.split_scales(ids)" in card) == (kind == "multiscale")
    assert main(["info", str(tmp_path)]) == 0


def test_info_names_the_layout(tmp_path, capsys):
    make("residual").save_pretrained(tmp_path)
    capsys.readouterr()
    assert main(["info", str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layout"]["kind"] == "residual" and info["layout"]["depth"] == DEPTH
    assert "depth 3" in info["layout"]["meaning"] and "depth=3" in info["summary"]


@pytest.mark.parametrize("kind", ["multiscale", "residual", "1d"])
def test_cli_decodes_a_layouts_ids(kind, tmp_path, images):
    tok = make(kind)
    tok.save_pretrained(tmp_path / "model")
    ids = tok.encode(images[:2]).numpy().astype(np.uint16)
    np.save(tmp_path / "ids.npy", ids)
    assert main(["decode", str(tmp_path / "ids.npy"), "--model", str(tmp_path / "model"), "--output", str(tmp_path / "x.png")]) == 0
    assert sorted(p.name for p in tmp_path.glob("x_*.png")) == ["x_0000.png", "x_0001.png"]
    np.save(tmp_path / "one.npy", ids[0])
    assert main(["decode", str(tmp_path / "one.npy"), "--model", str(tmp_path / "model"), "--output", str(tmp_path / "y.png")]) == 0
    assert (tmp_path / "y.png").is_file()


def rewrite_vocab(folder, change) -> None:
    """Edit vocab.json and forget the recorded hashes (as a folder saved before they existed)."""
    vocab = json.loads((folder / VOCAB_NAME).read_text())
    change(vocab)
    (folder / VOCAB_NAME).write_text(json.dumps(vocab))
    config = json.loads((folder / CONFIG_NAME).read_text())
    config.pop(FILES_SHA256)
    (folder / CONFIG_NAME).write_text(json.dumps(config))


def test_old_vocab_files_load_as_grids(tmp_path):
    make("grid").save_pretrained(tmp_path)
    rewrite_vocab(tmp_path, lambda v: v.pop("layout"))
    vocab, _ = ImageVocab.load(tmp_path)
    assert vocab.layout.kind == "grid" and vocab.layout.shape == (8, 8)
    assert ImageTokenizer.from_pretrained(tmp_path).layout.kind == "grid"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v["layout"].update(scales=[1, 2, 4, 8], shape=[85], ids_per_image=85), "disagrees with the multiscale layout"),
        (lambda v: v["layout"].update(ids_per_image=100), "layout.ids_per_image 100 disagrees"),
        (lambda v: v.update(version=1), "a multiscale layout needs version 2"),
        (lambda v: v.update(version=7), "version 7 is not one this library reads"),
        (lambda v: v["layout"].update(kind="spiral"), "layout: bad token layout: kind must be one of"),
        (lambda v: v["layout"].update(scales=list(range(1, 10**5))), "layout.scales must be a list of at most 64"),
        (lambda v: v.update(layout=[1]), "field 'layout' must be a JSON object"),
        (lambda v: v.update(layout={"kind": "grid"}), "disagrees with the multiscale layout"),
    ],
)
def test_a_vocab_layout_that_disagrees_is_refused(tmp_path, change, message):
    make("multiscale").save_pretrained(tmp_path)
    rewrite_vocab(tmp_path, change)
    with pytest.raises(CheckpointError, match=message):
        ImageTokenizer.from_pretrained(tmp_path)


def test_a_config_layout_that_disagrees_is_refused(tmp_path):
    make("residual").save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    config["layout"]["depth"] = 2
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="config layout .* disagrees with the quantizer's"):
        ImageTokenizer.from_pretrained(tmp_path)


def layout_ids(rng, tok: ImageTokenizer):
    """Ids near the layout's shapes (a scale short, a depth more, a batch, another grid) or anything at all."""
    if rng.random() < 0.3:
        return random_ids(rng)
    n = tok.layout.ids_per_image
    shapes = [(n,), (n - 1,), (n + 3,), (2, n), (0, n), (2, n - 1), (8, 8, DEPTH), (8, 8, DEPTH - 1), (2, 8, 8, DEPTH),
              (4, 6, DEPTH), (1, 1, 1, 1, 1), (8, 8), (2, 8, 8), (3 * DEPTH,), (64,)]
    low, high = (0, 64) if rng.random() < 0.7 else (-1, 68)  # image ids, or now and then specials and worse
    return np.random.default_rng(rng.randrange(2**32)).integers(low, high, size=rng.choice(shapes))


@pytest.mark.parametrize("kind", ["multiscale", "residual", "1d"])
def test_fuzzed_ids_give_results_or_our_errors(kind, images):
    """The tests/fuzz.py contract for the layouts' own entry points: a result or an ImageTokenizerError."""
    rng = random.Random(0)
    tok = make(kind)
    mapping = tok.extend_text_tokenizer(tiny_text_tokenizer(), add_eol=True)
    calls = [
        lambda ids: tok.decode(ids, output_type="np"),
        lambda ids: tok.batch_decode(ids, output_type="np"),
        lambda ids: tok.split_scales(ids),
        lambda ids: tok.join_scales([ids, ids]),
        lambda ids: tok.to_text_ids(ids, mapping),
        lambda ids: tok.from_text_ids(ids, mapping),
        lambda ids: tok.decode(ids, grid_size=rng.choice([(8, 8), (4, 6), (2, 2)])),
    ]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        try:
            rng.choice(calls)(layout_ids(rng, tok))
            outcomes["ok"] += 1
        except ImageTokenizerError:
            outcomes["error"] += 1
    assert outcomes["ok"] > 10 and outcomes["error"] > 10


@pytest.mark.parametrize(
    ("key", "value"),
    [("scales", [1, 2, "3", 8]), ("scales", {"a": 1}), ("scales", [1, 2, 3, 5, 9]), ("scales", list(range(1, 10**4))),
     ("scales", [True, 8]), ("depth", 10**12), ("depth", 3), ("phi_ratio", "0.5"), ("phi_ratio", -1), ("phi_convs", 10**9),
     ("phi_convs", 1.5), ("kind", "residual"), ("kind", "grid")],
)
def test_tampered_quantizer_fields_in_config_json_are_our_errors(tmp_path, key, value):
    make("multiscale").save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    config["quantizer"][key] = value
    config.pop("layout")  # the derived layout would disagree first; without it the fields themselves must be refused
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ImageTokenizerError) as caught:
        ImageTokenizer.from_pretrained(tmp_path)
    assert "config.json" in str(caught.value) and "\n" not in str(caught.value) and len(str(caught.value)) < 1000


def test_a_multiscale_tokenizer_encodes_its_own_resolution_only(images):
    tok = make("multiscale")
    with pytest.raises(InvalidImageError, match="a multiscale tokenizer encodes 16x16 images, got \\(32, 32\\)"):
        tok.encode_pixels(torch.zeros(1, 3, 32, 32))
    assert tok.encode_pixels(torch.zeros(2, 3, 16, 16)).shape == (2, N)


def test_a_grid_tokenizer_keeps_the_fingerprint_it_had_before_layouts_existed():
    """The layout fields are left out of the fingerprint while unset, so outputs pre-tokenized before them (which
    record the fingerprint) are still recognised as this tokenizer's. The value is shapes-64's fingerprint as the
    version before layouts computed it."""
    from image_tokenizer import ImageTokenizer
    from image_tokenizer.checkpoint import tokenizer_fingerprint

    before_layouts = "70857f37f153885ba84415ccaf4647138fb721111714f7e4673f6c5e31cda487"
    assert tokenizer_fingerprint(ImageTokenizer.from_pretrained("shapes-64")) == before_layouts
