"""The maskgit prior (prior/maskgit.py): a BertForMaskedLM trained on masked ids and sampled in a few parallel steps,
for grid and 1d layouts, saved and loaded as a plain transformers checkpoint."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch

from image_tokenizer import ImagePrior, TokenLayout
from image_tokenizer.errors import ConfigError, InvalidRequestError
from image_tokenizer.prior import maskgit
from image_tokenizer.prior.sampling import SamplingOptions
from training.prior_collator import PriorCollator
from training.train_prior import PriorTrainConfig, TrainingError

SIZES = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}


def _layout(kind: str = "grid", classes=("a", "b"), **fields) -> TokenLayout:
    grid = (1, 6) if kind == "1d" else (4, 4)  # 16 ids on a grid, 6 in one sequence
    return TokenLayout(64, grid, 64, 65, 66, class_names=list(classes), kind=kind, prediction="maskgit", **fields)


@pytest.fixture(scope="module")
def prior() -> ImagePrior:
    torch.manual_seed(0)
    return ImagePrior.from_layout(_layout(), **SIZES)


class Recorder(torch.nn.Module):
    """A masked LM stand-in that records its inputs; class c's rows favour id c by `strength` nats, null rows none."""

    def __init__(self, layout: TokenLayout, strength: float = 1.0):
        super().__init__()
        self.layout, self.strength, self.inputs = layout, strength, []
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        self.inputs.append(input_ids.clone())
        logits = torch.zeros(*input_ids.shape, self.layout.vocab_size)
        classes = input_ids[:, 0] - self.layout.first_class_token_id
        for row, c in enumerate(classes.tolist()):
            if c < self.layout.num_classes:
                logits[row, :, c] = self.strength
        return SimpleNamespace(logits=logits)


def test_the_schedule_keeps_fewer_masked_each_step_and_none_at_the_end():
    for schedule in ("cosine", "arccos"):
        for n, steps in ((256, 8), (16, 16), (6, 1), (6, 4)):
            counts = maskgit.masked_counts(n, steps, schedule)
            assert len(counts) == steps and counts[-1] == 0
            assert all(a > b for a, b in zip([n] + counts, counts))  # every step fills at least one id
            assert all(c >= 1 for c in counts[:-1])
    # unclamped, a step keeps floor(N * ratio((t + 1) / T)) masked: cos(pi/2 p), or arccos(p) / (pi/2) (1d-tokenizer)
    assert maskgit.masked_counts(256, 8) == [math.floor(256 * math.cos(math.pi / 16 * (t + 1))) for t in range(7)] + [0]
    arccos = [math.floor(256 * math.acos((t + 1) / 8) / (math.pi / 2)) for t in range(7)]
    assert maskgit.masked_counts(256, 8, "arccos") == arccos + [0]


@pytest.mark.parametrize("kind", ["grid", "1d"])
def test_each_step_fills_the_scheduled_count_and_never_unfills_a_kept_id(kind):
    layout = _layout(kind)
    model = Recorder(layout)
    torch.manual_seed(0)
    ids = maskgit.sample_maskgit(model, layout, torch.tensor([0, 1, 0]), 3, SamplingOptions(steps=4))
    n = layout.num_image_tokens
    assert ids.shape == (3, *layout.image_shape) and ids.dtype == torch.long and 0 <= ids.min() and ids.max() < 64
    seen = [step[:, layout.prefix_length :] for step in model.inputs] + [ids.reshape(3, -1)]
    assert len(model.inputs) == 4 and (seen[0] == layout.mask_token_id).all()  # one pass per step, from all masked
    for t, (before, after) in enumerate(itertools.pairwise(seen)):
        masked = after == layout.mask_token_id
        assert (masked.sum(1) == maskgit.masked_counts(n, 4)[t]).all()
        kept = before != layout.mask_token_id
        assert torch.equal(after[kept], before[kept])  # a filled id stays as it is


def test_guidance_mixes_the_null_class_rows_of_the_same_pass():
    layout = _layout()
    strong = Recorder(layout, strength=1.0)
    torch.manual_seed(0)
    guided = maskgit.sample_maskgit(strong, layout, torch.tensor([1, 1]), 2, SamplingOptions(guidance_scale=30.0))
    assert (guided == 1).all()  # uncond + 30 * (cond - uncond): class 1's id by 30 nats, everywhere
    rows = strong.inputs[0]
    assert rows.shape[0] == 4 and (rows[2:, 0] == layout.null_class_token_id).all()  # null rows in the same pass
    torch.manual_seed(0)
    plain = maskgit.sample_maskgit(Recorder(layout), layout, torch.tensor([1, 1]), 2, SamplingOptions())
    assert (plain != 1).any()  # 1 nat alone leaves most ids to chance
    linear = SamplingOptions(guidance_scale=3.0, guidance_schedule="linear")
    assert [maskgit.guidance_at(linear, t, 4) for t in range(4)] == [1.0, 1.5, 2.0, 2.5]  # 1d-tokenizer's ramp


def test_training_batches_predict_the_masked_ids_only(prior):
    layout = prior.layout
    rows = [{"input_ids": [(i + j) % 64 for j in range(16)], "n": "ab"[i % 2], "row_index": i} for i in range(300)]
    collator = PriorCollator(layout, "n", ["a", "b"], p_uncond=0.2, mask_schedule="cosine")
    batch = collator(rows)
    assert torch.equal(collator(rows)["input_ids"], batch["input_ids"])  # a function of (seed, epoch, row)
    inputs, labels = batch["input_ids"][:, 2:], batch["labels"]
    masked = inputs == layout.mask_token_id
    assert (labels[:, :2] == -100).all() and torch.equal(labels[:, 2:] != -100, masked)
    original = torch.tensor([row["input_ids"] for row in rows])
    assert torch.equal(labels[:, 2:][masked], original[masked]) and torch.equal(inputs[~masked], original[~masked])
    assert masked.sum(1).min() >= 1 and 0.55 < masked.float().mean() < 0.72  # E[cos(pi/2 u)] = 2/pi
    assert 0.12 < (batch["input_ids"][:, 0] == layout.null_class_token_id).float().mean() < 0.28  # label dropout
    out = prior.model(**batch)
    by_hand = torch.nn.functional.cross_entropy(out.logits[:, 2:][masked], original[masked])
    torch.testing.assert_close(out.loss, by_hand)  # transformers' masked-LM loss, on the masked positions alone


def test_a_tiny_prior_trains_saves_and_loads_with_the_auto_class(tmp_path):
    from transformers import AutoModelForMaskedLM

    layout = _layout("1d")
    torch.manual_seed(0)
    prior = ImagePrior.from_layout(layout, **SIZES)
    rows = [{"input_ids": [i % 4] * 6, "n": "ab"[i % 2], "row_index": i} for i in range(16)]
    batch = PriorCollator(layout, "n", ["a", "b"], p_uncond=0.1)(rows)
    optimizer = torch.optim.AdamW(prior.model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = prior.model.train()(**batch).loss
        loss.backward(), optimizer.step(), optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    prior.model.eval()
    prior.save_pretrained(tmp_path / "p")
    assert '"prediction": "maskgit"' in (tmp_path / "p" / "prior_layout.json").read_text()
    plain = AutoModelForMaskedLM.from_pretrained(tmp_path / "p")
    assert type(plain).__name__ == "BertForMaskedLM"
    torch.testing.assert_close(plain(input_ids=batch["input_ids"]).logits, prior.model(input_ids=batch["input_ids"]).logits)
    loaded = ImagePrior.from_pretrained(tmp_path / "p")
    assert loaded.layout == layout and loaded.sampling_defaults == prior.sampling_defaults
    a = prior.generate(4, seed=3, class_labels="b", output_type="ids", steps=3)
    assert a.shape == (4, 6) and torch.equal(a, loaded.generate(4, seed=3, class_labels="b", output_type="ids", steps=3))


def test_generate_is_seeded_and_leaves_the_global_generator_alone(prior):
    state = torch.random.get_rng_state()
    a = prior.generate(3, seed=1, output_type="ids", guidance_scale=2.0, steps=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.shape == (3, 4, 4) and torch.equal(a, prior.generate(3, seed=1, output_type="ids", guidance_scale=2.0, steps=2))
    assert not torch.equal(a, prior.generate(3, seed=2, output_type="ids", guidance_scale=2.0, steps=2))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"steps": 17}, r"steps must be in 1\.\.16"),
    ({"steps": "8"}, "steps must be a positive integer"),
    ({"mask_schedule": "linear"}, "mask_schedule must be one of"),
    ({"guidance_schedule": "cosine"}, "guidance_schedule must be one of"),
    ({"confidence_temperature": -1}, "confidence_temperature must be >= 0"),
    ({"grid_size": (8, 8)}, "a maskgit prior samples its trained"),
])
def test_bad_requests_are_our_errors(prior, kwargs, match):
    with pytest.raises(InvalidRequestError, match=match):
        prior.generate(2, output_type="ids", **kwargs)


def test_a_maskgit_prior_only_where_it_fits():
    with pytest.raises(ConfigError, match="maskgit prediction is built for grid and 1d tokenizers.*'multiscale'"):
        TokenLayout(64, (4, 4), 64, 65, 66, kind="multiscale", scales=[1, 2, 4], prediction="maskgit")
    with pytest.raises(ConfigError, match="a maskgit prior needs architecture 'bert'"):
        ImagePrior.from_layout(_layout(), architecture="llama", **SIZES)
    raster = ImagePrior(ImagePrior.from_layout(_layout(), **SIZES).model, TokenLayout(64, (4, 4), 64, 65, 66))
    with pytest.raises(InvalidRequestError, match="steps: maskgit options, but this is a raster prior"):
        raster.generate(1, steps=4, output_type="ids")
    with pytest.raises(ConfigError, match="a raster prior has no mask token"):
        _ = raster.layout.mask_token_id
    layout = _layout()
    assert layout.mask_token_id == layout.null_class_token_id + 1 == layout.vocab_size - 1  # after the classes
    assert PriorTrainConfig(prediction="maskgit").prior_config().architecture == "bert"
    assert PriorTrainConfig().prior_config().architecture == "llama"
    with pytest.raises(TrainingError, match="mask_schedule must be one of"):
        PriorTrainConfig(prediction="maskgit", mask_schedule="linear").validate()
    with pytest.raises(TrainingError, match="maskgit takes 'bert'"):
        PriorTrainConfig(prediction="maskgit", architecture="llama").validate()


def test_complete_and_defaults_refuse_what_maskgit_does_not_do(prior):
    with pytest.raises(InvalidRequestError, match="a maskgit prior only generates"):
        prior.complete(torch.zeros(1, 2, 4, dtype=torch.long))
    with pytest.raises(InvalidRequestError, match="only temperature, top_k and top_p are sampling defaults"):
        prior.set_sampling_defaults(steps=4)
