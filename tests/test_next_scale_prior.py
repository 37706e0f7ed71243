"""The next-scale prior (prior/next_scale.py): a plain LlamaForCausalLM that predicts a whole scale of a multiscale
tokenizer per forward pass, under a block-causal 4D mask, with the KV cache; and the raster prior of a residual
tokenizer ([h, w, depth] ids one by one)."""

from __future__ import annotations

import pytest
import torch

from image_tokenizer import ImagePrior, ImageTokenizer, TokenLayout
from image_tokenizer.errors import CheckpointError, ConfigError, InvalidRequestError
from image_tokenizer.prior import next_scale
from image_tokenizer.prior.sampling import SamplingOptions
from tests.helpers import tiny_config

SCALES = (1, 2, 4, 8)  # 85 ids on the tiny 8x8 grid
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}


@pytest.fixture(scope="module")
def multiscale() -> ImageTokenizer:
    torch.manual_seed(0)
    return ImageTokenizer(tiny_config(kind="multiscale", scales=SCALES))


@pytest.fixture(scope="module")
def residual() -> ImageTokenizer:
    torch.manual_seed(0)
    return ImageTokenizer(tiny_config(kind="residual", depth=2))


def _prior(tokenizer: ImageTokenizer, classes=("a", "b"), **kwargs) -> ImagePrior:
    torch.manual_seed(0)
    layout = TokenLayout.for_tokenizer(tokenizer, "tiny", class_names=list(classes), **kwargs)
    return ImagePrior.from_layout(layout, tokenizer=tokenizer, **SIZES)


def _ids(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 64, (count, sum(p * p for p in SCALES)), generator=torch.Generator().manual_seed(seed))


def test_the_layout_predicts_scales_of_a_multiscale_tokenizer_only(multiscale, residual, tokenizer):
    layout = TokenLayout.for_tokenizer(multiscale, "t", class_names=["a"])
    assert layout.next_scale and layout.scales == list(SCALES) and layout.num_image_tokens == 85
    assert layout.sequence_length == 1 + 85  # the class token, <boi> over the first scale, the inputs of the rest
    assert not TokenLayout.for_tokenizer(multiscale, "t", prediction="raster").next_scale
    assert TokenLayout.for_tokenizer(residual, "t").num_image_tokens == 8 * 8 * 2
    for tok in (residual, tokenizer):
        with pytest.raises(ConfigError, match="next_scale prediction needs a multiscale tokenizer"):
            TokenLayout.for_tokenizer(tok, "t", prediction="next_scale")
    with pytest.raises(ConfigError, match="bad prior token layout"):
        TokenLayout(64, (8, 8), 64, 65, 66, kind="multiscale", scales=[3, 2, 8], prediction="next_scale")


def test_the_mask_is_block_causal_a_scale_ignores_later_scales(multiscale):
    prior = _prior(multiscale)
    layout, model = prior.layout, prior.model
    mask = next_scale.block_causal_mask(next_scale.block_sizes(layout))[0, 0]
    assert mask.shape == (86, 86) and (mask[6:22, :22] == 0).all() and (mask[6:22, 22:] < 0).all()  # scale 4x4
    prefix = layout.prefix(torch.tensor([0, 1]), 2)
    ids = _ids(2)
    changed = ids.clone()
    changed[:, 5:21] = (changed[:, 5:21] + 1) % 64  # the 4x4 scale: the input of the 8x8 scale's block
    logits = [model(**{k: v for k, v in next_scale.teacher_forcing(layout, prefix, x).items()
                        if k in ("input_ids", "attention_mask")}).logits for x in (ids, changed)]
    end = 1 + 1 + 4 + 16  # class token, then the 1x1, 2x2 and 4x4 blocks
    assert torch.equal(logits[0][:, :end], logits[1][:, :end])  # earlier scales' predictions unchanged
    assert not torch.allclose(logits[0][:, end:], logits[1][:, end:])  # the 8x8 scale sees the change


def test_teacher_forcing_upsamples_the_previous_scale_and_aligns_targets(multiscale):
    layout = _prior(multiscale).layout
    ids = _ids(1)
    batch = next_scale.teacher_forcing(layout, layout.prefix(None, 1), ids)
    grids = layout.id_layout.split_scales(ids)
    assert batch["input_ids"][0, 1] == layout.boi_token_id  # the 1x1 scale's input
    assert (batch["input_ids"][0, 2:6] == grids[0].reshape(-1)).all()  # 1x1 upsampled to 2x2
    assert torch.equal(batch["input_ids"][0, 22:].reshape(8, 8), grids[2][0].repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert torch.equal(batch["shift_labels"][0, 1:], ids[0]) and batch["shift_labels"][0, 0] == -100
    loss = _prior(multiscale).model(**batch).loss
    assert torch.isfinite(loss)


def test_generation_runs_one_forward_pass_per_scale_and_matches_no_cache(multiscale, monkeypatch):
    prior = _prior(multiscale)
    calls = []
    forward = prior.model.forward
    monkeypatch.setattr(prior.model, "forward", lambda *a, **k: calls.append(k["input_ids"].shape) or forward(*a, **k))
    ids = prior.generate(3, seed=0, class_labels=[0, 1, 0], output_type="ids")
    assert ids.shape == (3, 85) and int(ids.max()) < 64
    assert [shape[1] for shape in calls] == [1 + 1, 4, 16, 64]  # one pass per scale, a whole block each
    monkeypatch.undo()
    # The cached passes give the logits of one uncached pass over the whole teacher-forced sequence.
    layout = prior.layout
    batch = next_scale.teacher_forcing(layout, layout.prefix(torch.tensor([0, 1, 0]), 3), ids)
    full = prior.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    cached, seen = [], []
    forward = prior.model.forward

    def recorded(*args, **kwargs):
        seen.append(kwargs["input_ids"])
        out = forward(*args, **kwargs)
        cached.append(out.logits)
        return out

    monkeypatch.setattr(prior.model, "forward", recorded)
    assert torch.equal(prior.generate(3, seed=0, class_labels=[0, 1, 0], output_type="ids"), ids)  # seeded: the same
    assert torch.equal(torch.cat(seen, dim=1), batch["input_ids"])
    assert torch.allclose(torch.cat(cached, dim=1), full, atol=1e-5)


def test_guidance_runs_the_null_class_in_the_same_pass_and_changes_the_samples(multiscale, monkeypatch):
    prior = _prior(multiscale)
    calls = []
    forward = prior.model.forward
    monkeypatch.setattr(prior.model, "forward", lambda *a, **k: calls.append(k["input_ids"].shape) or forward(*a, **k))
    guided = prior.generate(2, class_labels=1, guidance_scale=4.0, top_k=1, output_type="ids")  # greedy
    assert [shape for shape in calls] == [(4, 2), (4, 4), (4, 16), (4, 64)]  # cond and null rows together
    monkeypatch.undo()
    layout = prior.layout
    scores = [torch.log_softmax(prior.model(**{k: v for k, v in next_scale.teacher_forcing(layout, prefix, guided).items()
                                               if k in ("input_ids", "attention_mask")}).logits[:, 1:, :64], -1)
              for prefix in (layout.prefix(torch.tensor([1, 1]), 2), layout.prefix(None, 2))]
    assert torch.equal((4.0 * (scores[0] - scores[1]) + scores[1]).argmax(-1), guided)  # uncond + g (cond - uncond)
    with pytest.raises(InvalidRequestError, match="sliding-window"):
        prior.generate(1, grid_size=(16, 16), output_type="ids")
    with pytest.raises(InvalidRequestError, match="complete continues a grid"):
        prior.complete(torch.zeros(1, 85, dtype=torch.long))


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_sample_scales_with_top_k_one_is_the_argmax_of_each_scale(multiscale, architecture):
    layout = TokenLayout.for_tokenizer(multiscale, "tiny")
    prior = ImagePrior.from_layout(layout, architecture=architecture, **SIZES)
    ids = next_scale.sample_scales(prior.model, prior.layout, None, 1, SamplingOptions(top_k=1))
    batch = next_scale.teacher_forcing(prior.layout, prior.layout.prefix(None, 1), ids)
    logits = prior.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(logits[0, :, :64].argmax(-1), ids[0])  # no class token: the sequence starts at <boi>


def test_save_and_load_keep_next_scale_prediction(tmp_path, multiscale):
    from transformers import AutoModelForCausalLM

    prior = _prior(multiscale)
    prior.save_pretrained(tmp_path / "p")
    loaded = ImagePrior.from_pretrained(tmp_path / "p", tokenizer=multiscale)
    assert loaded.layout == prior.layout and loaded.layout.next_scale
    assert torch.equal(loaded.generate(2, seed=3, output_type="ids"), prior.generate(2, seed=3, output_type="ids"))
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "p")).__name__ == "LlamaForCausalLM"
    assert "block-causal attention mask" in (tmp_path / "p" / "README.md").read_text()
    images = loaded.generate(1, seed=0, class_labels="a", output_type="np")
    assert images.shape == (1, 16, 16, 3)
    other = ImageTokenizer(tiny_config(kind="multiscale", scales=(2, 4, 8)))
    with pytest.raises(CheckpointError, match="id layout"):
        ImagePrior.from_pretrained(tmp_path / "p", tokenizer=other)


def test_a_residual_prior_samples_its_ids_one_by_one_depth_fastest(tmp_path, residual):
    prior = _prior(residual, classes=())
    assert not prior.layout.next_scale and prior.layout.sequence_length == 1 + 128
    ids = prior.generate(2, seed=0, output_type="ids")
    assert ids.shape == (2, 8, 8, 2)
    assert prior.generate(1, seed=0, output_type="np").shape == (1, 16, 16, 3)
    prior.save_pretrained(tmp_path / "r")
    assert ImagePrior.from_pretrained(tmp_path / "r", tokenizer=residual).layout.kind == "residual"


def test_a_bad_layout_file_is_our_error(tmp_path, multiscale):
    import json

    prior = _prior(multiscale)
    prior.save_pretrained(tmp_path / "p")
    path = tmp_path / "p" / "prior_layout.json"
    data = json.loads(path.read_text())
    for field, value in (("prediction", "sideways"), ("scales", [1, 2]), ("kind", "grid")):
        path.write_text(json.dumps({**data, field: value}))
        with pytest.raises(CheckpointError, match="prior_layout.json"):
            TokenLayout.load(tmp_path / "p")


def test_train_prior_trains_a_next_scale_prior_with_teacher_forcing(tmp_path, multiscale):
    from training.train_prior import PriorCollator, PriorTrainConfig, train

    multiscale.save_pretrained(tmp_path / "tok")
    layout = _prior(multiscale).layout
    rows = [{"input_ids": _ids(1, seed=i)[0].tolist(), "n": i % 2, "row_index": i} for i in range(4)]
    batch = PriorCollator(layout, "n", [0, 1], p_uncond=0.0)(rows)
    assert batch["attention_mask"].shape == (4, 1, 86, 86) and batch["input_ids"].shape == (4, 86)
    config = PriorTrainConfig(
        output_dir=str(tmp_path / "run"), tokenizer=str(tmp_path / "tok"), num_train_images=32, eval_images=8,
        max_steps=4, batch_size=8, warmup_steps=0, lr_scheduler="constant", eval_steps=4, save_steps=4,
        logging_steps=4, sample_images=2, progress=False, **SIZES,
    )
    result = train(config)
    prior = ImagePrior.from_pretrained(result["final_dir"])
    assert prior.layout.next_scale and prior.card_info["training"]["prediction"] == "next_scale"
    assert prior.generate(2, seed=0, class_labels=[0, 1], output_type="ids").shape == (2, 85)
    assert (tmp_path / "run" / "samples.png").is_file()


def test_train_prior_refuses_rows_of_another_layout(tmp_path, multiscale, residual):
    from image_tokenizer.data.shapes import to_dataset
    from image_tokenizer.pretokenize import pretokenize
    from training.train_prior import PriorTrainConfig, TrainingError, train

    residual.save_pretrained(tmp_path / "tok")
    shapes = to_dataset(4, seed=0).select_columns(["image"])
    pretokenize(shapes, multiscale, output_dir=str(tmp_path / "rows"), format="parquet", load_from_cache_file=False)
    config = PriorTrainConfig(output_dir=str(tmp_path / "run"), tokenizer=str(tmp_path / "tok"), data=str(tmp_path / "rows"),
                              eval_fraction=0.5, max_steps=1, progress=False, **SIZES)
    with pytest.raises(TrainingError, match="its rows hold multiscale ids"):
        train(config)
    config.prediction = "next_scale"
    with pytest.raises(TrainingError, match="next_scale prediction needs a multiscale tokenizer"):
        train(config)


def test_cli_generates_from_a_next_scale_prior(tmp_path, multiscale, capsys):
    from image_tokenizer.cli import main

    multiscale.save_pretrained(tmp_path / "tok")
    layout = TokenLayout.for_tokenizer(multiscale, str(tmp_path / "tok"), class_names=["a", "b"])
    ImagePrior.from_layout(layout, **SIZES).save_pretrained(tmp_path / "p")
    argv = ["generate", "--model", str(tmp_path / "p"), "--num", "2", "--class", "b", "--guidance", "2",
            "--output", str(tmp_path / "g.png")]
    assert main(argv) == 0
    assert "(85 multiscale tokens each)" in capsys.readouterr().out and (tmp_path / "g.png").is_file()
