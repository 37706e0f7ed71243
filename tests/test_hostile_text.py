"""Hostile text files (issue 37, rows 5, 6 and 8): YAML aliases ("billion laughs") in configs and model cards,
JSON nested 50,000 deep or holding a 5,000-digit integer, and our own formats declaring sizes they do not hold.

Each attack is a tiny file built at test time and run in the memory-capped worker (tests/hostile.py). Each is
scaled so that the code before the fix exceeds 1 GiB, runs for many seconds, or raises a traceback; each must now
be refused with our error in one short line (or, for a bad card, be loaded with the card ignored), fast, under
PEAK_LIMIT.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from image_tokenizer import ImageTokenizer, ImageTokenizerConfig, QuantizerConfig
from image_tokenizer.checkpoint import MAX_PARAMETERS, check_model_size, file_sha256
from image_tokenizer.errors import CheckpointError
from tests.helpers import tiny_config
from tests.hostile import PEAK_LIMIT

TIME_LIMIT = 5.0  # seconds per refused call, the worker's round trip included (the attacks took 30 to 200 s)
ALIAS_LEVELS = 7  # 9 leaves aliased 9 times per level: *l7 stands for 9^8 = 43 million strings (1.2 GB unfixed)


# ----- calls the worker runs (module-level, so `hostile.call("tests.test_hostile_text:NAME", ...)` finds them) -----
def load(folder: str) -> str:
    return repr(ImageTokenizer.from_pretrained(folder))


def resave(folder: str, output: str) -> int:
    """Load a saved tokenizer and save it again; returns the size of the card written."""
    ImageTokenizer.from_pretrained(folder).save_pretrained(output)
    return (Path(output) / "README.md").stat().st_size


def encode_file(folder: str, image: str) -> list[int]:
    return list(ImageTokenizer.from_pretrained(folder).encode(image).shape)


# ----- builders -----
def alias_chain(levels: int = ALIAS_LEVELS) -> str:
    """YAML anchors l0..l{levels}: l0 lists 9 strings, each next level lists 9 aliases of the one before, so
    `*l{levels}` is a few hundred bytes that stand for 9^(levels+1) strings once anything walks it."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def saved(folder: Path, config: ImageTokenizerConfig | None = None) -> Path:
    torch.manual_seed(0)
    ImageTokenizer(config or tiny_config()).save_pretrained(folder)
    return folder


def edit_json(folder: Path, name: str, change) -> Path:
    """Change a saved folder's JSON file and record the new sha256, as an attacker rewriting the folder would."""
    path = folder / name
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    config = json.loads((folder / "config.json").read_text())
    if "files_sha256" in config:
        config["files_sha256"] = {f: file_sha256(folder / f) for f in config["files_sha256"]}
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def set_codebook_size(folder: Path, size: int, table: dict | None = None) -> None:
    """codebook_size in config.json and vocab.json, the special ids after it, and the listed table as given."""
    edit_json(folder, "config.json", lambda d: d["quantizer"].update(codebook_size=size))

    def change(vocab: dict) -> None:
        vocab.update(codebook_size=size, special_tokens={t: size + i for i, t in enumerate(vocab["special_tokens"])},
                     vocab_size=size + len(vocab["special_tokens"]))
        vocab.pop("vocab", None)
        if table is not None:
            vocab["vocab"] = table

    edit_json(folder, "vocab.json", change)


TAMING_YAML = """{anchors}model:
  target: {target}
  params:
    embed_dim: 8
    n_embed: 64
    ddconfig:
      double_z: false
      z_channels: 16
      resolution: 16
      in_channels: 3
      out_ch: 3
      ch: {ch}
      ch_mult: [1, 2]
      num_res_blocks: 1
      attn_resolutions: []
      dropout: 0.0
"""


def taming_source(folder: Path, anchors: str = "", target: str = "taming.models.vqgan.VQModel", ch: str = "32") -> Path:
    """A tiny taming log folder (config.yaml + last.ckpt in taming's key names) that converts as it is."""
    from image_tokenizer.converters.taming import config_from_yaml
    from image_tokenizer.modeling import VQModel

    folder.mkdir()
    (folder / "config.yaml").write_text(TAMING_YAML.format(anchors=anchors, target=target, ch=ch))
    if anchors or target != "taming.models.vqgan.VQModel" or ch != "32":
        torch.save({}, folder / "last.ckpt")  # an attack on the yaml, which is read (and refused) before the weights
        return folder
    torch.manual_seed(0)
    model = VQModel(config_from_yaml(folder / "config.yaml"))
    state = {**model.weights_state_dict(), "quantize.embedding.weight": model.quantizer.codebook.detach()}
    torch.save({"state_dict": state}, folder / "last.ckpt")
    return folder


def assert_refused(outcome, seconds: float, error_type: str = "ImageTokenizerError") -> None:
    assert outcome.refused(error_type), f"{outcome.error_type}: {outcome.message[:300]} {outcome.traceback[-800:]}"
    assert "\n" not in outcome.message and len(outcome.message) < 1000, outcome.message[:1200]
    assert outcome.peak_bytes < PEAK_LIMIT, f"peak {outcome.peak_bytes / 2**30:.2f} GiB"
    assert seconds < TIME_LIMIT, f"{seconds:.1f} s"


def timed(hostile, target: str, *args):
    start = time.perf_counter()
    outcome = hostile.call(target, *args)
    return outcome, time.perf_counter() - start


# ----- row 5: YAML aliases -----
def test_an_alias_chain_in_taming_ddconfig_ch_is_refused(hostile, tmp_path):
    source = taming_source(tmp_path / "src", anchors=alias_chain(), ch=f"*l{ALIAS_LEVELS}")
    outcome, seconds = timed(hostile, "image_tokenizer.converters:convert", str(source))
    assert_refused(outcome, seconds, "ConversionError")
    assert "config.yaml" in outcome.message and "alias" in outcome.message


def test_an_alias_chain_in_taming_model_target_is_refused(hostile, tmp_path):
    source = taming_source(tmp_path / "src", anchors=alias_chain(), target=f"*l{ALIAS_LEVELS}")
    outcome, seconds = timed(hostile, "image_tokenizer.converters:convert", str(source))
    assert_refused(outcome, seconds, "ConversionError")
    assert "alias" in outcome.message


def test_yaml_nested_50000_deep_is_refused_in_one_line(hostile, tmp_path):
    source = taming_source(tmp_path / "src", ch="[" * 50_000 + "]" * 50_000)
    outcome, seconds = timed(hostile, "image_tokenizer.converters:convert", str(source))
    assert_refused(outcome, seconds, "ConversionError")
    assert "nested deeper" in outcome.message


def test_a_source_readme_with_an_alias_chain_for_its_license_converts_with_a_small_card(hostile, tmp_path):
    source = taming_source(tmp_path / "src")
    (source / "README.md").write_text(f"---\n{alias_chain()}license: *l{ALIAS_LEVELS}\n---\n# a model\n")
    output = tmp_path / "out"
    outcome, seconds = timed(hostile, "image_tokenizer.cli:main", ["convert", str(source), "--output", str(output)])
    assert outcome.result == 0, outcome.stderr[-500:]
    assert outcome.peak_bytes < PEAK_LIMIT and seconds < TIME_LIMIT
    assert (output / "README.md").stat().st_size < 20_000


def test_a_long_source_license_is_shortened_in_the_card(tmp_path):
    source = taming_source(tmp_path / "src")
    (source / "README.md").write_text(f"---\nlicense: {'x' * 50_000}\n---\n")
    tokenizer = __import__("image_tokenizer").convert(source)
    license_text = tokenizer.card_info["conversion"]["license"]
    assert "from the source's model card" in license_text and len(license_text) < 500


def front_matter_bomb(folder: Path) -> Path:
    """A saved tokenizer whose README front matter holds an alias chain where its metrics go."""
    card = folder / "README.md"
    body = card.read_text().split("\n---\n", 1)[1]
    card.write_text(f"---\n{alias_chain()}image_tokenizer:\n  metrics: *l{ALIAS_LEVELS}\n---\n{body}")
    return folder


def test_cli_info_ignores_a_card_whose_front_matter_is_an_alias_chain(hostile, tmp_path):
    folder = front_matter_bomb(saved(tmp_path / "tok"))
    outcome, seconds = timed(hostile, "image_tokenizer.cli:main", ["info", str(folder)])
    assert outcome.result == 0, outcome.stderr[-500:]
    assert outcome.peak_bytes < PEAK_LIMIT and seconds < TIME_LIMIT
    printed = json.loads(outcome.stderr)  # the worker captures stdout and stderr together: here only the JSON
    assert printed["metrics"] == {} and len(outcome.stderr) < 10_000


def test_load_and_save_of_a_folder_whose_card_is_an_alias_chain_writes_a_small_card(hostile, tmp_path):
    folder = front_matter_bomb(saved(tmp_path / "tok"))
    outcome, seconds = timed(hostile, "tests.test_hostile_text:resave", str(folder), str(tmp_path / "again"))
    assert outcome.error_type is None, outcome.message[:300]
    assert outcome.peak_bytes < PEAK_LIMIT and seconds < TIME_LIMIT
    assert outcome.result < 20_000


def test_card_front_matter_past_its_size_cap_is_ignored(tmp_path):
    from image_tokenizer.model_card import MAX_FRONT_MATTER_BYTES, load_card_info

    folder = saved(tmp_path / "tok")
    (folder / "README.md").write_text("---\nimage_tokenizer: {metrics: {a: 1}}\n---\n" + "prose\n" * MAX_FRONT_MATTER_BYTES)
    assert load_card_info(folder) == {"metrics": {"a": 1}}  # a long card is fine: only its front matter is read
    (folder / "README.md").write_text("---\nimage_tokenizer: {metrics: {a: 1}}\n" + "x: 1\n" * MAX_FRONT_MATTER_BYTES + "---\n")
    assert load_card_info(folder) == {}
    assert ImageTokenizer.from_pretrained(folder).card_info == {}


# ----- row 8: JSON nesting and integers -----
@pytest.mark.parametrize("text, words", [
    ("[" * 50_000 + "]" * 50_000, "nested deeper"),
    ('{"ch": 1' + "0" * 5_000 + "}", "5,001 digits"),
])
def test_config_json_nested_too_deep_or_with_a_huge_integer_is_refused(hostile, tmp_path, text, words):
    folder = saved(tmp_path / "tok")
    (folder / "config.json").write_text(text)
    outcome, seconds = timed(hostile, "tests.test_hostile_text:load", str(folder))
    assert_refused(outcome, seconds, "CheckpointError")
    assert "config.json" in outcome.message and words in outcome.message


@pytest.mark.parametrize("text", ["[" * 50_000 + "]" * 50_000, '{"_class_name": "VQModel", "x": 1' + "0" * 5_000 + "}"])
def test_a_source_config_json_nested_too_deep_or_with_a_huge_integer_is_refused(hostile, tmp_path, text):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text(text)
    outcome, seconds = timed(hostile, "image_tokenizer.converters:convert", str(tmp_path / "src"), "diffusers")
    assert_refused(outcome, seconds, "ConversionError")
    assert "config.json" in outcome.message


def test_a_json_file_past_its_size_cap_is_refused_without_reading_it(tmp_path):
    from image_tokenizer.textfiles import MAX_JSON_BYTES

    folder = saved(tmp_path / "tok")
    with open(folder / "config.json", "ab") as handle:
        handle.truncate(MAX_JSON_BYTES + 1)  # sparse: no disk used
    with pytest.raises(CheckpointError, match="larger than"):
        ImageTokenizer.from_pretrained(folder)


# ----- row 6: our own format declares sizes it does not hold -----
def test_a_vocab_codebook_size_of_ten_million_beside_an_empty_table_is_refused_before_building_it(hostile, tmp_path):
    folder = saved(tmp_path / "tok")
    set_codebook_size(folder, 10**7, table={})
    outcome, seconds = timed(hostile, "tests.test_hostile_text:load", str(folder))
    assert_refused(outcome, seconds, "CheckpointError")
    assert "vocab.json" in outcome.message and "0 entries" in outcome.message


def test_a_token_format_padded_to_a_billion_characters_is_refused(hostile, tmp_path):
    folder = edit_json(saved(tmp_path / "tok"), "vocab.json", lambda d: d.update(token_format="{:>1000000000}"))
    outcome, seconds = timed(hostile, "tests.test_hostile_text:load", str(folder))
    assert_refused(outcome, seconds, "CheckpointError")
    assert "token_format" in outcome.message


@pytest.mark.parametrize("token_format, ok", [
    ("<img_{:05d}>", True), ("{}", True), ("<{:x}>", True), ("<{0:04X}>", True), ("img{:d}", True),
    ("{:>1000000000}", False), ("{:5d}", False), ("{:099d}", False), ("{0}{1}", False), ("{!r}", False),
    ("<{:.3f}>", False), ("x" * 65 + "{}", False), ("no field", False),
])
def test_token_format_must_be_a_documented_form(token_format, ok):
    from image_tokenizer.vocab import ImageVocab

    if ok:
        vocab = ImageVocab(codebook_size=300, grid_size=(2, 2), token_format=token_format)
        assert [vocab.token_to_id(vocab.id_to_token(i)) for i in (0, 7, 299)] == [0, 7, 299]
    else:
        with pytest.raises(CheckpointError, match="token_format"):
            ImageVocab(codebook_size=300, grid_size=(2, 2), token_format=token_format)


def test_ema_copies_count_toward_the_model_size_limit(hostile, tmp_path):
    big = QuantizerConfig(codebook_size=2**26, codebook_dim=8)  # 2^29 codebook values: under the limit alone
    check_model_size(dataclasses.replace(tiny_config(), quantizer=big), tmp_path)
    ema = dataclasses.replace(big, use_ema=True)  # the codebook and its EMA sums, both buffers: over the limit
    with pytest.raises(CheckpointError, match="over the limit"):
        check_model_size(dataclasses.replace(tiny_config(), quantizer=ema), tmp_path)

    folder = saved(tmp_path / "tok", tiny_config(codebook_dim=8))
    edit_json(folder, "config.json", lambda d: d["quantizer"].update(use_ema=True))
    set_codebook_size(folder, 2**26)
    outcome, seconds = timed(hostile, "tests.test_hostile_text:load", str(folder))
    assert_refused(outcome, seconds, "CheckpointError")
    assert f"over the limit of {MAX_PARAMETERS:,}" in outcome.message


def test_nine_hundred_million_declared_parameters_beside_tiny_weights_are_refused_before_allocating(hostile, tmp_path):
    folder = edit_json(saved(tmp_path / "tok"), "config.json", lambda d: d.update(ch=1152))  # 9.0e8 parameters
    outcome, seconds = timed(hostile, "tests.test_hostile_text:load", str(folder))
    assert_refused(outcome, seconds, "CheckpointError")
    assert "model.safetensors" in outcome.message and "mis-shaped" in outcome.message


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(ch=10**9), "channel width 2,000,000,000 (ch=1,000,000,000 * ch_mult) is over the limit"),
    (lambda d: d.update(num_res_blocks=10**6), "num_res_blocks 1,000,000 is over the limit"),
    (lambda d: d.update(ch_mult=[1] * 1000), "ch_mult has 1,000 levels, over the limit"),
    (lambda d: d["quantizer"].update(codebook_dim=10**12), "codebook_dim 1000000000000 is over the limit"),
])
def test_absurd_sizes_in_config_json_are_refused(hostile, tmp_path, change, words):
    folder = edit_json(saved(tmp_path / "tok"), "config.json", change)
    outcome, seconds = timed(hostile, "tests.test_hostile_text:load", str(folder))
    assert_refused(outcome, seconds, "ConfigError")
    assert "config.json" in outcome.message and words in outcome.message


@pytest.mark.parametrize("resolution", [65536, 2**30])
def test_a_resolution_over_the_limit_is_refused_where_it_would_load_silently(hostile, tmp_path, resolution):
    """Without attention levels and with grid sizes to match, nothing else in the folder objects to the size."""
    folder = saved(tmp_path / "tok", dataclasses.replace(tiny_config(), attn_resolutions=()))
    grid = [resolution // 2] * 2
    edit_json(folder, "config.json", lambda d: d.update(resolution=resolution, grid_size=grid))
    edit_json(folder, "vocab.json", lambda d: d.update(grid_size=grid))
    outcome, seconds = timed(hostile, "tests.test_hostile_text:load", str(folder))
    assert_refused(outcome, seconds, "ConfigError")
    assert f"resolution {resolution:,} is over the limit of 16,384 pixels a side" in outcome.message


def test_diffusers_widths_of_a_billion_are_refused_with_our_error(hostile, tmp_path):
    source = tmp_path / "vq"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({
        "_class_name": "VQModel", "block_out_channels": [10**9, 2 * 10**9], "layers_per_block": 1, "latent_channels": 4,
        "num_vq_embeddings": 8, "vq_embed_dim": 4, "sample_size": 32, "in_channels": 3, "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
    }))
    save_file({"quantize.embedding.weight": torch.randn(8, 4)}, str(source / "diffusion_pytorch_model.safetensors"))
    outcome, seconds = timed(hostile, "image_tokenizer.converters:convert", str(source))
    assert_refused(outcome, seconds, "ConversionError")
    assert "config.json" in outcome.message and "channel width" in outcome.message


def test_a_large_resolution_never_makes_preprocessing_allocate_past_the_pixel_budget(hostile, tmp_path):
    """resolution 16,384 is allowed, but resizing a 64x64 PNG to it would take 268 million pixels (over 4 GB as
    float input): refused by the same pixel budget that decoding has."""
    config = dataclasses.replace(tiny_config(), resolution=256, ch_mult=(1,) * 9, attn_resolutions=())  # grid 1x1
    folder = saved(tmp_path / "tok", config)
    # the derived layouts go too, as in a folder saved before they were written (a grid, then, of grid_size)
    edit_json(folder, "config.json", lambda d: (d.update(resolution=16384, grid_size=[64, 64]), d.pop("layout")))
    edit_json(folder, "vocab.json", lambda d: (d.update(grid_size=[64, 64]), d.pop("layout")))
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "small.png")
    outcome, seconds = timed(hostile, "tests.test_hostile_text:encode_file", str(folder), str(tmp_path / "small.png"))
    assert_refused(outcome, seconds, "InvalidImageError")
    assert "pixel budget" in outcome.message
