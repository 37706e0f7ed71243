"""Training multi-scale (VAR) and residual-depth (RQ-VAE) tokenizers: beta on the commitment term, k-means init and
dead-code restart acting on every step, the collapse rule, and both kinds end to end (train, save, load, encode,
decode) with their usage per scale or depth in the log, the evaluation and the card."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from image_tokenizer import ConfigError, ImageTokenizer, QuantizerConfig
from image_tokenizer.metrics import collapsed, step_usage
from image_tokenizer.modeling import VectorQuantizer, build_quantizer
from tests.helpers import tiny_config
from training.train_tokenizer import TrainConfig, train

SCALES = (1, 2, 3, 4, 6, 8)  # a VAR-like schedule that ends at tiny_config's 8x8 grid


def stacked(kind: str, **options):
    shape = {"scales": SCALES} if kind == "multiscale" else {"depth": 3}
    return build_quantizer(4, QuantizerConfig(kind=kind, codebook_size=40, codebook_dim=4, **shape, **options))


@pytest.mark.parametrize("kind", ["multiscale", "residual"])
def test_beta_weighs_the_commitment_term_not_the_codebook_term(kind):
    """beta scales the encoder's gradient (||f - sg[f_hat_k]||^2) and leaves the codebook's (||sg[f] - f_hat_k||^2)."""
    grads = {}
    for beta in (0.25, 1.0):
        torch.manual_seed(0)
        quantizer = stacked(kind, beta=beta, dead_code_threshold=0.0).eval()
        z = torch.randn(2, 4, 8, 8, requires_grad=True)
        quantizer(z).loss.backward()
        grads[beta] = (z.grad.clone(), quantizer.codebook.grad.clone())
    assert torch.allclose(grads[1.0][0], 4 * grads[0.25][0])
    assert torch.equal(grads[1.0][1], grads[0.25][1]) and grads[1.0][1].abs().sum() > 0


def features_with_small_global_differences(images: int = 32) -> torch.Tensor:
    """Feature maps whose per-image means (the 1x1 scale's rows) differ far less than their positions do, as an
    encoder's outputs do: the case where coarse scales collapse."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(images, 4, 8, 8, generator=generator) + 0.05 * torch.randn(images, 4, 1, 1, generator=generator)


def scale_1x1_codes(quantizer, z: torch.Tensor) -> int:
    return int(quantizer.encode_ids(z)[:, 0].unique().numel())


def test_kmeans_init_gives_every_scale_codes_of_its_own():
    """Fitted to every step's residuals, each step weighing the same, the 1x1 scale of 32 images gets at least its
    share of the 40 codes (40 / 6 scales); the same k-means over the features alone (vq's) leaves it far fewer."""
    z = features_with_small_global_differences()
    torch.manual_seed(0)
    per_step = stacked("multiscale").eval()
    centroids = per_step.kmeans_init(z, iters=5)
    assert torch.equal(per_step.codebook, centroids)
    torch.manual_seed(0)
    features_only = stacked("multiscale").eval()
    VectorQuantizer.kmeans_init(features_only, z, iters=5)
    assert scale_1x1_codes(per_step, z) >= 40 // len(SCALES) > 4 >= scale_1x1_codes(features_only, z)


def test_kmeans_init_gives_the_deeper_residuals_codes_too():
    z = features_with_small_global_differences()
    torch.manual_seed(0)
    quantizer = stacked("residual").eval()
    quantizer.kmeans_init(z, iters=5)
    usage, _ = quantizer.usage_per_step(quantizer.encode_ids(z))
    assert bool((usage > 0.5).all())  # 40 codes, 2,048 positions: every depth uses most of them


@pytest.mark.parametrize("kind", ["vq", "multiscale", "residual"])
def test_kmeans_codes_survive_the_first_training_steps_and_a_fresh_codebook_restarts_from_data(kind):
    """Codes set by k-means start with the restart grace: under the default dead-code restart (threshold 1, usage
    decay 0.99) a zero running usage would declare nearly all of them dead at step 1 and replace them by batch rows.
    A codebook nobody set (random init) still restarts from the batch at step 1."""
    config = QuantizerConfig(kind=kind, codebook_size=40, codebook_dim=4, **({} if kind == "vq" else
                             {"scales": SCALES} if kind == "multiscale" else {"depth": 3}))
    assert config.dead_code_threshold == 1.0 and config.usage_decay == 0.99 and not config.use_ema
    z = features_with_small_global_differences()
    torch.manual_seed(0)
    quantizer = build_quantizer(4, config)
    centroids = quantizer.kmeans_init(z, iters=5).clone()
    for _ in range(3):
        quantizer.train()(z)
    kept = (quantizer.codebook.detach() == centroids).all(dim=1)
    assert kept.float().mean() >= 0.75  # starved-step feeding may move a few; restart none
    torch.manual_seed(0)
    fresh = build_quantizer(4, config)
    random_init = fresh.codebook.detach().clone()
    fresh.train()(z[:2])  # 128 positions: no code gets the 100 hits that keep it alive at decay 0.99
    assert (fresh.codebook.detach() != random_init).any(dim=1).float().mean() >= 0.75


def test_dead_code_restart_counts_every_step_and_restarts_on_coarse_scales_too():
    """A code that only a fine scale chose is alive; a code no scale chose restarts on some scale's residual row,
    the 1x1 scale's (each image's mean feature) among them."""
    torch.manual_seed(0)
    quantizer = stacked("multiscale", dead_code_threshold=0.1, usage_decay=0.5, phi_ratio=0.0, phi_convs=0)
    z = features_with_small_global_differences(8)
    quantizer.set_codebook(quantizer.codebook.detach() * 3)  # far from the features: most codes go unused
    quantizer.usage_count.zero_()  # as a codebook nobody set: no grace
    before = quantizer.codebook.detach().clone()
    step_ids = quantizer.step_ids(quantizer.encode_ids(z))
    first, later = set(step_ids[0].unique().tolist()), set(torch.cat([s.reshape(-1) for s in step_ids[1:]]).tolist())
    quantizer.train()(z)
    after = quantizer.codebook.detach()
    only_later = sorted(later - first)
    assert only_later and torch.equal(after[only_later], before[only_later])  # chosen by a later scale only: kept
    dead = sorted(set(range(40)) - first - later)
    assert dead and not torch.equal(after[dead], before[dead])
    means = z.mean(dim=(2, 3))  # the 1x1 scale's rows (phi off: the residual is the features themselves)
    on_means = [code for code in dead if torch.isclose(after[code][None], means, atol=1e-6).all(dim=1).any()]
    assert len(on_means) >= len(dead) // (2 * len(SCALES))  # drawn from all 1,040 rows alike, 8 are means: ~none


def test_the_collapse_rule():
    assert collapsed(9, codebook_size=1024, positions=100) and not collapsed(10, codebook_size=1024, positions=100)
    assert collapsed(102, codebook_size=1024, positions=500 * 64) and not collapsed(103, 1024, 500 * 64)
    counts = torch.zeros(2, 40)
    counts[0, :2] = 50  # 2 codes over 100 positions: under 10 % of min(40, 100)
    counts[1, :10] = 10
    rows = step_usage(counts, ["scale 1x1", "scale 2x2"], [100, 100])
    assert [row["collapsed"] for row in rows] == [True, False]
    assert rows[0]["codes_used"] == 2 and rows[0]["reachable"] == 40 and rows[1]["perplexity"] == pytest.approx(10)


def image_folder(path, count: int = 24):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path / f"{i:02d}.png")
    return path


@pytest.mark.parametrize("quantizer, labels, ids_shape", [
    ({"kind": "multiscale", "scales": SCALES, "coarse_restart_steps": 2}, [f"scale {p}x{p}" for p in SCALES],
     (2, sum(p * p for p in SCALES))),
    ({"kind": "residual", "depth": 3}, ["depth 0", "depth 1", "depth 2"], (2, 8, 8, 3)),
])
def test_stacked_tokenizers_train_save_load_encode_and_decode(tmp_path, quantizer, labels, ids_shape):
    model = dataclasses.asdict(tiny_config(codebook_dim=8, **quantizer))
    config = TrainConfig(
        output_dir=str(tmp_path / "run"), model=model, loss={"gan_weight": 0.0}, data=str(image_folder(tmp_path / "images")),
        eval_fraction=0.25, eval_images=6, steps=3, batch_size=4, warmup_steps=1, log_every=1, image_every=0,
        checkpoint_every=0, progress=False, kmeans_batches=1, kmeans_iters=2,
    )
    summary = train(config)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(f"usage[{label}]" in rows[-1] and f"perplexity[{label}]" in rows[-1] for label in labels)
    tokenizer = ImageTokenizer.from_pretrained(tmp_path / "run" / "final")
    assert tokenizer.config.quantizer == tiny_config(codebook_dim=8, **quantizer).quantizer
    images = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    ids = tokenizer.encode(images)
    assert ids.shape == ids_shape
    assert torch.equal(ImageTokenizer(tokenizer.config, summary["model"].eval()).encode(images), ids)
    assert np.asarray(tokenizer.decode(ids, output_type="np")).shape == (2, 16, 16, 3)
    card = tokenizer.card_info["metrics"]
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    for label in labels:
        assert 0 < card[f"heldout_usage[{label}]"] <= 1 and card[f"heldout_perplexity[{label}]"] >= 1
        assert evaluation[f"usage[{label}]"] == card[f"heldout_usage[{label}]"]
    assert isinstance(card["heldout_collapsed_steps"], str)


@pytest.mark.parametrize("name, kind", [("tiny_multiscale.json", "multiscale"), ("tiny_residual.json", "residual")])
def test_example_multiscale_and_residual_configs_parse(name, kind):
    from pathlib import Path

    from image_tokenizer import ImageTokenizerConfig
    from training.train_tokenizer import parse_config

    config, _ = parse_config(["--config", str(Path(__file__).resolve().parents[1] / "training" / "configs" / name)])
    assert ImageTokenizerConfig(**config.model).quantizer.kind == kind


def test_evaluate_reports_each_scale_and_marks_the_collapsed_ones(tmp_path, capsys):
    """`image-tokenizer evaluate`'s JSON holds usage_by_step; a multiscale tokenizer whose codes other than a zero
    code 0 lie far from any feature (every lookup picks code 0) has every scale collapsed, and --update-card
    records that in the card."""
    from image_tokenizer.cli import main
    from image_tokenizer.model_card import load_card_info

    torch.manual_seed(0)
    tokenizer = ImageTokenizer(tiny_config(kind="multiscale", scales=SCALES, codebook_dim=8))
    far = 1000 * torch.randn(64, 8)
    far[0] = 0
    tokenizer.model.quantizer.set_codebook(far)
    tokenizer.save_pretrained(tmp_path / "tok")
    folder = image_folder(tmp_path / "images", count=12)
    assert main(["evaluate", "--model", str(tmp_path / "tok"), "--data", str(folder), "--update-card"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    steps = metrics["usage_by_step"]
    assert [row["step"] for row in steps] == [f"scale {p}x{p}" for p in SCALES]
    assert [row["reachable"] for row in steps] == [min(64, 12 * p * p) for p in SCALES]
    assert all(row["codes_used"] == 1 and row["collapsed"] for row in steps)
    card = load_card_info(tmp_path / "tok")["metrics"]
    assert card["heldout_collapsed_steps"] == ", ".join(f"scale {p}x{p}" for p in SCALES)
    assert card["heldout_usage[scale 1x1]"] == round(1 / 64, 4)


def test_a_hit_at_a_coarse_scale_keeps_a_code_alive_as_many_hits_at_the_finest_do():
    """Dead-code restart counts each scale's hits scaled to the finest scale's lookups: one hit in the 1x1 scale of
    8 images (8 lookups) weighs as 64 hits of the 8x8 scale (512 lookups). With usage_decay 0.5 and threshold 1, one
    raw hit (0.5) is dead: codes that only the 1x1 scale chose, once each, survive; one that only the 8x8 scale
    chose once does not."""
    torch.manual_seed(0)
    config = QuantizerConfig(kind="multiscale", scales=(1, 8), codebook_size=40, codebook_dim=4, phi_ratio=0.0,
                             dead_code_threshold=1.0, usage_decay=0.5)
    quantizer = build_quantizer(4, config)
    z = torch.randn(8, 4, 8, 8) + 10 * torch.randn(8, 4, 1, 1)  # image means far apart, and far from the residuals
    z[0, :, 0, 0] += torch.tensor([0.0, 0.0, 0.0, 30.0])  # one outlying position
    means = z.mean(dim=(2, 3))
    codes = torch.randn(40, 4)
    codes[:8] = means  # each image's 1x1 lookup: its own code, once
    codes[8] = z[0, :, 0, 0] - means[0]  # the outlier's 8x8 residual: code 8, once
    quantizer.set_codebook(codes)
    quantizer.usage_count.zero_()  # no grace: one step's hits decide
    hits = torch.stack([torch.bincount(ids.reshape(-1), minlength=40) for ids in quantizer.step_ids(quantizer.encode_ids(z))])
    assert torch.equal(hits[0, :8], torch.ones(8, dtype=torch.long)) and hits[1, :8].sum() == 0
    assert hits[0, 8] == 0 and hits[1, 8] == 1
    quantizer.train()(z)
    after = quantizer.codebook.detach()
    assert torch.equal(after[:8], codes[:8])  # 1 hit x 64: alive
    assert not torch.equal(after[8], codes[8])  # 1 hit x 1: restarted


def test_a_starved_scale_gets_the_least_used_codes_on_its_own_rows():
    """Every lookup of every scale picks code 0 (the others lie far away), so no code is dead and dead-code restart
    does nothing; each scale then chose 1 code where it should choose STARVED_SHARE of min(K, lookups), so the 1x1
    scale of 32 images gets that many codes less one on distinct image means (its rows), and the 8x8 scale its own
    share. With restart off (threshold 0) nothing changes."""
    from math import ceil

    from image_tokenizer.modeling.stacked import STARVED_SHARE

    for threshold in (0.0, 0.01):
        torch.manual_seed(0)
        config = QuantizerConfig(kind="multiscale", scales=(1, 8), codebook_size=100, codebook_dim=4, phi_ratio=0.0,
                                 dead_code_threshold=threshold)
        quantizer = build_quantizer(4, config)
        z = features_with_small_global_differences(32)
        codes = 1000 * torch.randn(100, 4)
        codes[0] = 0
        quantizer.set_codebook(codes)
        quantizer.usage_count.fill_(1.0)  # none dead
        assert bool((quantizer.encode_ids(z) == 0).all())
        quantizer.train()(z)
        changed = (quantizer.codebook.detach() != codes).any(dim=1)
        if threshold == 0:
            assert not changed.any()
            continue
        fed_1x1, fed_8x8 = ceil(STARVED_SHARE * 32) - 1, ceil(STARVED_SHARE * 100) - 1
        assert int(changed.sum()) == fed_1x1 + fed_8x8 and not changed[0]
        means = z.mean(dim=(2, 3))
        matches = [torch.isclose(code[None], means, atol=1e-6).all(dim=1) for code in quantizer.codebook.detach()[changed]]
        assert len({int(m.nonzero()[0]) for m in matches if m.any()}) == fed_1x1


def test_coarse_steps_restart_their_share_at_every_batch_starved_or_not():
    """With coarse_restart_steps 1, the 1x1 scale restarts ceil(share x min(K, lookups)) of the least-used codes on
    its own rows at every batch, even when it already chose as many distinct codes as STARVED_SHARE asks (so the
    starved-step rule alone feeds nothing, as the run without it shows); the 8x8 scale, not coarse, is fed by that
    rule only. The restarted codes get the restart grace, so dead-code restart leaves them be at the next batch."""
    from math import ceil

    for coarse in (None, 1):
        torch.manual_seed(0)
        config = QuantizerConfig(kind="multiscale", scales=(1, 8), codebook_size=100, codebook_dim=4, phi_ratio=0.0,
                                 dead_code_threshold=0.01, coarse_restart_steps=coarse,
                                 coarse_restart_share=coarse and 0.25)
        quantizer = build_quantizer(4, config)
        z = torch.randn(32, 4, 8, 8) + 5 * torch.randn(32, 4, 1, 1)  # image means far apart
        quantizer.set_codebook(torch.cat([z.mean(dim=(2, 3)), torch.randn(68, 4)]))  # a code on each image's mean
        quantizer.usage_count.fill_(1.0)  # none dead
        ids = quantizer.step_ids(quantizer.encode_ids(z))
        assert len(ids[0].unique()) >= ceil(0.25 * 32) and len(ids[1].unique()) >= ceil(0.25 * 100)  # not starved
        codes = quantizer.codebook.detach().clone()
        quantizer.train()(z)
        changed = (quantizer.codebook.detach() != codes).any(dim=1)
        if coarse is None:
            assert not changed.any()
            continue
        assert int(changed.sum()) == ceil(0.25 * min(100, 32))
        means = z.mean(dim=(2, 3))
        for code in quantizer.codebook.detach()[changed]:
            assert torch.isclose(code[None], means, atol=1e-6).all(dim=1).any()  # each on one image's 1x1 row
        assert bool((quantizer.usage_count[changed] == quantizer.restart_grace).all())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "vq", "coarse_restart_steps": 1}, "apply to kinds ('multiscale', 'residual'), not 'vq'"),
        ({"kind": "multiscale", "scales": [1, 8], "coarse_restart_steps": 3}, "from 1 to the multiscale quantizer's 2 steps"),
        ({"kind": "residual", "depth": 2, "coarse_restart_steps": 0}, "from 1 to the residual quantizer's 2 steps"),
        ({"kind": "residual", "depth": 2, "coarse_restart_steps": 1, "coarse_restart_share": 1.5}, "in (0, 1]"),
        ({"kind": "residual", "depth": 2, "coarse_restart_share": 0.5}, "without coarse_restart_steps"),
    ],
)
def test_coarse_restart_config_rules(options, message):
    with pytest.raises(ConfigError) as caught:
        tiny_config(codebook_size=16, **options)
    assert message in str(caught.value)


def test_coarse_restart_defaults_and_leaves_fingerprints_alone():
    """The share defaults to 1 (every row of those steps) once the steps are set; unset, neither field enters the fingerprint, so every
    tokenizer saved before they existed keeps its fingerprint (test_tokenizer pins shapes-64's)."""
    from image_tokenizer import ImageTokenizer
    from image_tokenizer.checkpoint import UNFINGERPRINTED_WHEN_UNSET, tokenizer_fingerprint

    assert QuantizerConfig(kind="residual", depth=2, coarse_restart_steps=1).coarse_restart_share == 1.0
    assert {"coarse_restart_steps", "coarse_restart_share"} <= set(UNFINGERPRINTED_WHEN_UNSET)
    torch.manual_seed(0)
    plain = ImageTokenizer(tiny_config(kind="multiscale", scales=SCALES, codebook_dim=8))
    torch.manual_seed(0)
    coarse = ImageTokenizer(tiny_config(kind="multiscale", scales=SCALES, codebook_dim=8, coarse_restart_steps=2))
    assert tokenizer_fingerprint(plain) != tokenizer_fingerprint(coarse)  # set: part of what the tokenizer is


def test_the_codebook_can_take_a_larger_learning_rate_than_the_rest():
    """parameter_groups puts a codebook learned by gradient in a group of its own at lr x codebook_lr_scale; at
    scale 1, or with an EMA codebook (a buffer), there is one group of every parameter."""
    from image_tokenizer.modeling import VQModel
    from training.codebook import parameter_groups

    model = VQModel(tiny_config(kind="multiscale", scales=SCALES, codebook_dim=8))
    rest, codebook = parameter_groups(model, 1e-3, 10.0)
    assert codebook["params"] == [model.quantizer.codebook] and codebook["lr"] == pytest.approx(1e-2)
    assert rest["lr"] == 1e-3 and len(rest["params"]) == len(list(model.parameters())) - 1
    assert [len(g["params"]) for g in parameter_groups(model, 1e-3, 1.0)] == [len(list(model.parameters()))]
    ema = VQModel(tiny_config(kind="multiscale", scales=SCALES, codebook_dim=8, use_ema=True))
    assert [len(g["params"]) for g in parameter_groups(ema, 1e-3, 10.0)] == [len(list(ema.parameters()))]
    with pytest.raises(Exception, match="codebook_lr_scale"):
        TrainConfig(codebook_lr_scale=0.0).validate()


def test_a_saved_tokenizer_loads_as_it_was_and_init_from_keeps_its_codes(tmp_path):
    """Loading gives back the saved state exactly (fresh training statistics, so the fingerprint is the saved
    model's); training that starts from it (init_from) gives every loaded code the restart grace."""
    from image_tokenizer.checkpoint import tokenizer_fingerprint
    from image_tokenizer.modeling import VQModel
    from training.train_tokenizer import load_initial_weights

    torch.manual_seed(0)
    tokenizer = ImageTokenizer(tiny_config())
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = ImageTokenizer.from_pretrained(tmp_path / "tok")
    assert tokenizer_fingerprint(loaded) == tokenizer_fingerprint(tokenizer)
    model = VQModel(tiny_config())
    load_initial_weights(model, str(tmp_path / "tok"))
    assert torch.equal(model.quantizer.codebook, loaded.model.quantizer.codebook)
    assert torch.all(model.quantizer.usage_count == model.quantizer.restart_grace)
