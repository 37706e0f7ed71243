"""The kinds that stack lookups in one shared codebook, as specifications: multiscale (VAR) and residual (RQ-VAE)
ids against a float64 brute force, decoding the same sum that encoding built, the loss, per-step statistics, the
training hooks they share with vq, and the config rules that guard them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from image_tokenizer import ConfigError, ImageTokenizerConfig, QuantizerConfig
from image_tokenizer.modeling import MultiScaleQuantizer, ResidualQuantizer, VQModel, build_quantizer, phi_schedule
from tests.helpers import tiny_config

SCALES = (1, 2, 3, 5, 8)  # uneven area windows (8 -> 3, 5), as VAR's 16 -> 3, 5, 6, 10, 13
CLEAR = 1e-4  # a lookup whose two nearest codes are closer than this is a near-tie, where float32 may choose either


def multiscale(distance="l2", phi_convs=4, **options) -> MultiScaleQuantizer:
    config = QuantizerConfig(kind="multiscale", codebook_size=40, codebook_dim=4, scales=SCALES, distance=distance,
                             phi_convs=phi_convs, distance_chunk_elements=37, **options)
    return build_quantizer(4, config).eval()


def residual(depth=3, **options) -> ResidualQuantizer:
    config = QuantizerConfig(kind="residual", codebook_size=40, codebook_dim=4, depth=depth, distance_chunk_elements=37,
                             **options)
    return build_quantizer(4, config).eval()


def nearest64(rows: torch.Tensor, codes: torch.Tensor, cosine: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Every distance to every code in float64; the argmin and its margin to the runner-up."""
    if cosine:
        rows, codes = F.normalize(rows, dim=-1), F.normalize(codes, dim=-1)
    distances = ((rows[:, None, :] - codes[None, :, :]) ** 2).sum(-1)
    two = distances.topk(2, dim=1, largest=False).values
    return distances.argmin(dim=1), two[:, 1] - two[:, 0]


def multiscale_reference(quantizer: MultiScaleQuantizer, z: torch.Tensor, ids: torch.Tensor):
    """VAR's steps in float64, teacher-forced with the quantizer's own ids: per scale, the float64 nearest code of
    the residual those ids leave (with its margin) and the partial sum f_hat_k."""
    f, codes = z.double(), quantizer.codebook.detach().double()
    side = SCALES[-1]
    rest, f_hat, steps = f.clone(), torch.zeros_like(f), []
    for scale, (p, grid) in enumerate(zip(SCALES, quantizer.step_ids(ids))):
        small = rest if p == side else F.adaptive_avg_pool2d(rest, p)
        expected, margin = nearest64(small.permute(0, 2, 3, 1).reshape(-1, 4), codes, quantizer.config.distance == "cosine")
        vectors = codes[grid].permute(0, 3, 1, 2)
        if p != side:
            vectors = F.interpolate(vectors, size=(side, side), mode="bicubic")
        conv = quantizer.phi[quantizer.phi_of_scale[scale]]
        rho = quantizer.config.phi_ratio
        h = (1 - rho) * vectors + rho * F.conv2d(vectors, conv.weight.double(), conv.bias.double(), padding=1)
        f_hat, rest = f_hat + h, rest - h
        steps.append((expected, margin, grid.reshape(-1), f_hat.clone()))
    return steps


def residual_reference(quantizer: ResidualQuantizer, z: torch.Tensor, ids: torch.Tensor):
    """RQ-VAE's steps in float64, teacher-forced: per depth, the float64 nearest code of what the quantizer's earlier
    codes leave, and the partial sum."""
    rows, codes = z.double().permute(0, 2, 3, 1).reshape(-1, 4), quantizer.codebook.detach().double()
    total, steps = torch.zeros_like(rows), []
    for d in range(quantizer.depth):
        expected, margin = nearest64(rows - total, codes, cosine=False)
        chosen = ids[..., d].reshape(-1)
        total = total + codes[chosen]
        steps.append((expected, margin, chosen, total.reshape(*z.shape[:1], *z.shape[2:], 4).permute(0, 3, 1, 2)))
    return steps


def check_against_reference(steps) -> None:
    for expected, margin, found, _ in steps:
        clear = margin > CLEAR
        assert clear.float().mean() > 0.95
        assert torch.equal(found[clear], expected[clear])


@pytest.mark.parametrize("distance", ["l2", "cosine"])
def test_multiscale_ids_equal_a_float64_brute_force(distance):
    torch.manual_seed(0)
    quantizer = multiscale(distance)
    z = torch.randn(3, 4, 8, 8)
    out = quantizer(z)
    assert out.ids.shape == (3, sum(p * p for p in SCALES))
    steps = multiscale_reference(quantizer, z, out.ids)
    check_against_reference(steps)
    f_hat = steps[-1][3]
    assert torch.allclose(quantizer.features_from_ids(out.ids).double(), f_hat, atol=1e-5)
    assert torch.allclose(out.quantized.double(), f_hat, atol=1e-5)  # straight-through: forward value = f_hat


def test_residual_ids_equal_a_float64_brute_force():
    torch.manual_seed(0)
    quantizer = residual(depth=4)
    z = torch.randn(3, 4, 5, 7)
    out = quantizer(z)
    assert out.ids.shape == (3, 5, 7, 4)
    steps = residual_reference(quantizer, z, out.ids)
    check_against_reference(steps)
    assert torch.allclose(quantizer.features_from_ids(out.ids).double(), steps[-1][3], atol=1e-5)
    # Each depth leaves less: the codes refine what the earlier ones missed.
    errors = [F.mse_loss(s[3], z.double()).item() for s in steps]
    assert errors == sorted(errors, reverse=True)


@pytest.mark.parametrize("make", [multiscale, residual])
def test_decoding_the_ids_gives_what_encoding_summed(make):
    torch.manual_seed(1)
    quantizer = make()
    z = torch.randn(2, 4, 8, 8)
    ids = quantizer.encode_ids(z)
    assert torch.equal(ids, quantizer(z).ids)
    # forward passes f + (f_hat - f) (straight-through), which rounds in the last bits
    assert torch.allclose(quantizer.lookup(ids), quantizer(z).quantized, atol=1e-6, rtol=0)


@pytest.mark.parametrize("make", [multiscale, residual])
@pytest.mark.parametrize("use_ema", [False, True])
def test_loss_is_the_mean_over_steps_of_both_terms(make, use_ema):
    torch.manual_seed(0)
    quantizer = make(beta=0.25, use_ema=use_ema, dead_code_threshold=0.0)
    z = torch.randn(2, 4, 8, 8)
    out = quantizer(z)
    reference = multiscale_reference if isinstance(quantizer, MultiScaleQuantizer) else residual_reference
    partial_sums = [step[3] for step in reference(quantizer, z, out.ids)]
    commitment = torch.stack([F.mse_loss(z.double(), s) for s in partial_sums]).mean()
    assert torch.allclose(out.commitment_loss.double(), commitment, rtol=1e-5)
    assert torch.allclose(out.codebook_loss.double(), commitment, rtol=1e-5)  # the same distance, the other gradient
    expected = 0.25 * out.commitment_loss + (0 if use_ema else out.codebook_loss)
    assert torch.allclose(out.loss, expected)


@pytest.mark.parametrize("make", [multiscale, residual])
def test_gradients_reach_encoder_codebook_and_phi(make):
    torch.manual_seed(0)
    config = tiny_config(kind="multiscale", scales=SCALES) if make is multiscale else tiny_config(kind="residual", depth=3)
    model = VQModel(config)
    out = model(torch.randn(2, 3, 16, 16))
    (F.mse_loss(out.reconstruction, torch.zeros_like(out.reconstruction)) + out.quantizer.loss).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.quantizer.codebook.grad.abs().sum() > 0
    if make is multiscale:
        used = set(model.quantizer.phi_of_scale)
        for i, conv in enumerate(model.quantizer.phi):
            assert (conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0) == (i in used)


@pytest.mark.parametrize("make", [multiscale, residual])
def test_usage_and_perplexity_per_step(make):
    torch.manual_seed(0)
    quantizer = make()
    out = quantizer(torch.randn(4, 4, 8, 8))
    steps = len(quantizer.step_labels)
    assert out.step_usage.shape == out.step_perplexity.shape == (steps,)
    usage, perplexity = quantizer.usage_per_step(out.ids)
    assert torch.equal(usage, out.step_usage) and torch.equal(perplexity, out.step_perplexity)
    counts = quantizer.counts_per_step(out.ids)
    for step, ids in enumerate(quantizer.step_ids(out.ids)):
        assert torch.equal(counts[step], torch.bincount(ids.reshape(-1), minlength=40).float())
        assert usage[step] == (counts[step] > 0).float().mean()
    assert counts.sum() == out.ids.numel()
    if make is multiscale:  # the 1x1 scale of 4 images can use at most 4 codes
        assert quantizer.step_labels[0] == "scale 1x1" and usage[0] <= 4 / 40


@pytest.mark.parametrize("make", [multiscale, residual])
def test_training_hooks_ema_restart_and_kmeans(make):
    torch.manual_seed(0)
    quantizer = make(use_ema=True, dead_code_threshold=0.5).train()
    before = quantizer.codebook.clone()
    quantizer(torch.randn(4, 4, 8, 8) * 3)
    assert not torch.equal(quantizer.codebook, before)  # EMA moved the used codes, restarts replaced the dead ones
    z = torch.randn(4, 4, 8, 8)
    centroids = quantizer.kmeans_init(z, iters=3)
    assert torch.equal(quantizer.codebook, centroids)


def test_phi_schedule_follows_vars_ticks():
    """Conv j sits at tick j of linspace(1/(3n), 1 - 1/(3n), n) when n = 4, else linspace(1/(2n), ...); a scale takes
    the nearest tick to k / (K - 1), the first on a tie."""
    for scales, convs in [(10, 4), (5, 4), (10, 10), (6, 3), (3, 1)]:
        margin = 1 / 3 / convs if convs == 4 else 1 / 2 / convs
        ticks = np.linspace(margin, 1 - margin, convs)
        expected = [int(np.argmin(np.abs(ticks - k / (scales - 1)))) for k in range(scales)]
        schedule = phi_schedule(scales, convs)
        assert schedule == expected
        assert schedule[0] == 0 and schedule[-1] == convs - 1 and schedule == sorted(schedule)
    assert phi_schedule(10, 10) == list(range(10))  # one conv per scale: each its own
    assert phi_schedule(4, 0) == []


def test_no_phi_when_the_ratio_is_zero():
    torch.manual_seed(0)
    quantizer = multiscale(phi_ratio=0.0, phi_convs=None)
    assert len(quantizer.phi) == 0 and quantizer.config.phi_convs == 0
    ids = quantizer.encode_ids(torch.randn(2, 4, 8, 8))
    codes = quantizer.codebook.detach()
    expected = torch.zeros(2, 4, 8, 8)
    for p, grid in zip(SCALES, quantizer.step_ids(ids)):  # upsampled code vectors, the last scale as it is
        vectors = codes[grid].permute(0, 3, 1, 2)
        expected += vectors if p == 8 else F.interpolate(vectors, size=(8, 8), mode="bicubic")
    assert torch.allclose(quantizer.features_from_ids(ids), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("quantizer", "message"),
    [
        ({"kind": "multiscale"}, "scales must be a list"),
        ({"kind": "multiscale", "scales": [4]}, "scales must be a list of 2"),
        ({"kind": "multiscale", "scales": [1, 3, 2, 8]}, "strictly increasing"),
        ({"kind": "multiscale", "scales": list(range(1, 100))}, "scales must be a list of 2 to 64"),
        ({"kind": "multiscale", "scales": [1, 2, 4]}, "last scale 4 must be the side of the token grid 8x8"),
        ({"kind": "multiscale", "scales": [1, 8], "distance": "dot"}, "distance must be one of ('l2', 'cosine')"),
        ({"kind": "multiscale", "scales": [1, 8], "phi_ratio": 1.5}, "phi_ratio must be a number in [0, 1]"),
        ({"kind": "multiscale", "scales": [1, 8], "phi_convs": 0}, "phi_convs must be an integer from 1"),
        ({"kind": "multiscale", "scales": [1, 8], "depth": 2}, "depth applies to kind 'residual'"),
        ({"kind": "residual"}, "depth must be an integer from 1 to 64"),
        ({"kind": "residual", "depth": 65}, "depth must be an integer from 1 to 64"),
        ({"kind": "residual", "depth": 2, "distance": "cosine"}, "distance must be one of ('l2',)"),
        ({"kind": "residual", "depth": 2, "scales": [1, 8]}, "scales applies to kind 'multiscale'"),
        ({"kind": "vq", "depth": 2}, "depth applies to kind 'residual', not 'vq'"),
        ({"kind": "fsq", "levels": [4, 4], "phi_convs": 2}, "phi_convs applies to kind 'multiscale', not 'fsq'"),
    ],
)
def test_config_rules(quantizer, message):
    with pytest.raises(ConfigError) as caught:
        tiny_config(codebook_size=16, **quantizer)
    assert message in str(caught.value)


def test_stacked_kinds_quantize_the_features_themselves():
    with pytest.raises(ConfigError, match="must equal z_channels 8 when use_quant_conv is false"):
        ImageTokenizerConfig(resolution=16, ch=16, ch_mult=(1, 2), num_res_blocks=1, z_channels=8, norm_groups=8,
                             use_quant_conv=False, use_post_quant_conv=False,
                             quantizer=QuantizerConfig(kind="residual", depth=2, codebook_size=16, codebook_dim=4))


def test_defaults_are_vars_and_rq_vaes():
    q = QuantizerConfig(kind="multiscale", scales=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16))
    assert (q.distance, q.phi_ratio, q.phi_convs) == ("l2", 0.5, 4)
    assert QuantizerConfig(kind="residual", depth=4).distance == "l2"
    assert QuantizerConfig(kind="multiscale", scales=(1, 2), l2_normalize=True).distance == "cosine"
