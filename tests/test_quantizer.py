import pytest
import torch
import torch.nn.functional as F

from image_tokenizer import QuantizerConfig
from image_tokenizer.modeling import VectorQuantizer, VQModel, usage_and_perplexity
from tests.helpers import tiny_config


def brute_force_ids(z_lookup: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Full pairwise squared distances in float64, then argmin: the reference the quantizer must match."""
    distances = ((z_lookup.double()[:, None, :] - codes.double()[None, :, :]) ** 2).sum(-1)
    return distances.argmin(dim=1)


@pytest.mark.parametrize("l2_normalize", [False, True])
@pytest.mark.parametrize("dim", [4, 12])  # 12 > codebook_dim 4: low-dimensional lookup through projections
def test_ids_equal_brute_force_nearest_neighbour(l2_normalize, dim):
    torch.manual_seed(0)
    config = QuantizerConfig(codebook_size=50, codebook_dim=4, l2_normalize=l2_normalize, distance_chunk_elements=137)
    quantizer = VectorQuantizer(dim, config).eval()
    z = torch.randn(3, dim, 5, 7)
    out = quantizer(z)
    z_lookup = quantizer._to_lookup_space(z.permute(0, 2, 3, 1).reshape(-1, dim))
    expected = brute_force_ids(z_lookup, quantizer.effective_codebook())
    assert torch.equal(out.ids.reshape(-1), expected)
    assert out.ids.shape == (3, 5, 7)
    assert out.quantized.shape == z.shape


def test_nearest_is_argmin_not_argmax():
    """The lecture's listing takes argmax of the distances; a vector equal to a code must map to that code."""
    config = QuantizerConfig(codebook_size=16, codebook_dim=3, l2_normalize=False)
    quantizer = VectorQuantizer(3, config).eval()
    codes = quantizer.effective_codebook()
    z = codes[[5, 0, 11]].reshape(1, 3, 3, 1).permute(0, 2, 1, 3)  # [1, 3 channels, 3, 1]
    ids = quantizer(z).ids.reshape(-1)
    assert ids.tolist() == [5, 0, 11]


def test_large_codebook_is_chunked_and_exact():
    """K=16384: the lookup runs in chunks whose distance matrix stays <= 128 MiB (batch 64 on a 32x32 grid, 65,536 x
    16,384 distances, would be 4 GiB at once), and the argmin is exact in every chunk and across their boundaries
    (2.5 chunks here, every row near a boundary checked against float64 brute force)."""
    torch.manual_seed(0)
    config = QuantizerConfig(codebook_size=16384, codebook_dim=8)
    quantizer = VectorQuantizer(8, config)
    rows = max(1, config.distance_chunk_elements // config.codebook_size)
    assert rows * config.codebook_size * 4 <= 2**27  # each chunk's distance matrix stays <= 128 MiB
    assert 64 * 32 * 32 > rows  # so batch 64 at 32x32 is chunked
    z = F.normalize(torch.randn(rows * 5 // 2, 8), dim=-1)
    codes = quantizer.effective_codebook()
    ids = quantizer.nearest_codes(z, codes)
    boundaries = torch.tensor([0, rows - 1, rows, 2 * rows - 1, 2 * rows, z.shape[0] - 1])
    sample = torch.cat([torch.arange(0, z.shape[0], 97), boundaries])
    assert torch.equal(ids[sample], brute_force_ids(z[sample], codes))


def test_straight_through_gradients_reach_the_encoder_side():
    torch.manual_seed(0)
    model = VQModel(tiny_config())
    pixels = torch.randn(2, 3, 16, 16)
    out = model(pixels)
    F.mse_loss(out.reconstruction, pixels).backward()
    assert model.encoder.conv_in.weight.grad is not None
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.quant_conv.weight.grad.abs().sum() > 0
    # The reconstruction loss reaches the codebook only through the codebook term, never through the STE.
    assert model.quantizer.codebook.grad is None or model.quantizer.codebook.grad.abs().sum() == 0


def _grads(quantizer: VectorQuantizer, z: torch.Tensor, term: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    quantizer.zero_grad()
    z = z.clone().requires_grad_(True)
    out = quantizer(z)
    getattr(out, term).backward()
    return z.grad, quantizer.codebook.grad


@pytest.mark.parametrize("dim", [4, 12])
def test_each_loss_term_reaches_only_its_own_parameters(dim):
    torch.manual_seed(0)
    quantizer = VectorQuantizer(dim, QuantizerConfig(codebook_size=32, codebook_dim=4, dead_code_threshold=0.0))
    z = torch.randn(2, dim, 4, 4)
    z_grad, code_grad = _grads(quantizer, z, "codebook_loss")
    assert z_grad is None or z_grad.abs().sum() == 0  # ||sg[z] - e||^2 moves codes only
    assert code_grad.abs().sum() > 0
    if quantizer.project_in is not None:
        assert quantizer.project_in.weight.grad is None or quantizer.project_in.weight.grad.abs().sum() == 0
    z_grad, code_grad = _grads(quantizer, z, "commitment_loss")
    assert z_grad.abs().sum() > 0  # ||z - sg[e]||^2 moves the encoder only
    assert code_grad is None or code_grad.abs().sum() == 0


def test_beta_weighs_the_commitment_term_not_the_codebook_term():
    torch.manual_seed(0)
    beta = 0.25
    quantizer = VectorQuantizer(4, QuantizerConfig(codebook_size=32, codebook_dim=4, beta=beta, l2_normalize=False, dead_code_threshold=0.0))
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = quantizer(z)
    assert torch.allclose(out.loss, out.codebook_loss + beta * out.commitment_loss)
    out.loss.backward()
    # d/dz of beta * mean((z - sg[e])^2) is beta * 2 (z - e) / N; the codebook term adds nothing to z.
    chosen = quantizer.effective_codebook()[out.ids.reshape(-1)].reshape(2, 3, 3, 4).permute(0, 3, 1, 2)
    expected = beta * 2 * (z.detach() - chosen) / z.numel()
    assert torch.allclose(z.grad, expected, atol=1e-7)
    # ... and the codebook's gradient is the unweighted codebook term.
    counts = torch.bincount(out.ids.reshape(-1), minlength=32).float()
    assert torch.allclose(quantizer.codebook.grad.abs().sum(dim=1) > 0, counts > 0)


def test_distances_stay_fp32_under_bf16_autocast():
    """Codes 1e-3 apart: bf16 (8 mantissa bits) cannot tell them apart, fp32 can."""
    torch.manual_seed(0)
    quantizer = VectorQuantizer(4, QuantizerConfig(codebook_size=2, codebook_dim=4, l2_normalize=False)).eval()
    base = torch.tensor([1.0, 2.0, 3.0, 4.0])
    with torch.no_grad():
        quantizer.codebook.copy_(torch.stack([base, base + torch.tensor([0.0, 0.0, 0.0, 0.004])]))
    z = (base + torch.tensor([0.0, 0.0, 0.0, 0.003])).reshape(1, 4, 1, 1)
    codes_bf16 = quantizer.codebook.to(torch.bfloat16)
    # Sanity check that the test has teeth: in bf16 both codes round to the same vector.
    assert torch.equal(codes_bf16[0], codes_bf16[1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.mm(z.reshape(1, 4), quantizer.codebook.t()).dtype == torch.bfloat16  # autocast is active
        out = quantizer(z)
    assert out.ids.item() == 1
    assert out.commitment_loss.dtype == torch.float32
    fp32 = quantizer(z)
    assert out.ids.item() == fp32.ids.item()


def test_ema_updates_codes_without_gradients():
    torch.manual_seed(0)
    config = QuantizerConfig(codebook_size=8, codebook_dim=2, l2_normalize=False, use_ema=True, ema_decay=0.5,
                             dead_code_threshold=0.0)
    quantizer = VectorQuantizer(2, config).train()
    assert not any(p is quantizer.codebook for p in quantizer.parameters())
    target = torch.tensor([3.0, -2.0])
    z = target.reshape(1, 2, 1, 1).expand(1, 2, 4, 4).contiguous()
    chosen = quantizer(z).ids.unique()
    assert chosen.numel() == 1
    before = (quantizer.codebook[chosen] - target).norm()
    for _ in range(10):
        quantizer(z)
    after = (quantizer.codebook[chosen] - target).norm()
    assert after < before * 0.01
    out = quantizer(z)
    assert torch.allclose(out.loss, config.beta * out.commitment_loss)  # no codebook term under EMA


def test_dead_codes_are_restarted_from_encoder_outputs():
    torch.manual_seed(0)
    config = QuantizerConfig(codebook_size=16, codebook_dim=2, l2_normalize=False, dead_code_threshold=1.0)
    quantizer = VectorQuantizer(2, config).train()
    with torch.no_grad():
        quantizer.codebook.fill_(100.0)  # every code far away: all but the winner are dead
    z = torch.randn(4, 2, 8, 8)
    quantizer(z)
    batch_vectors = z.permute(0, 2, 3, 1).reshape(-1, 2)
    distances = torch.cdist(quantizer.codebook.detach(), batch_vectors).min(dim=1).values
    restarted = distances < 1e-6
    assert restarted.sum() >= 15  # the dead codes now sit exactly on encoder outputs
    assert (quantizer.usage_count[restarted] == 2.0).all()  # with a grace period


def test_usage_and_perplexity():
    usage, perplexity = usage_and_perplexity(torch.tensor([5.0, 5.0, 0.0, 0.0]))
    assert usage.item() == pytest.approx(0.5)
    assert perplexity.item() == pytest.approx(2.0)
    quantizer = VectorQuantizer(4, QuantizerConfig(codebook_size=64, codebook_dim=4)).eval()
    out = quantizer(torch.randn(2, 4, 8, 8))
    used = out.ids.unique().numel()
    assert out.usage.item() == pytest.approx(used / 64)
    assert 1.0 <= out.perplexity.item() <= used


def test_rotation_trick_forwards_the_code_and_rotates_the_gradient():
    from image_tokenizer.modeling.quantizer import rotate_to

    torch.manual_seed(0)
    z = torch.randn(6, 5, requires_grad=True)
    codes = torch.randn(6, 5)
    out = rotate_to(z, codes)
    assert torch.allclose(out, codes, atol=1e-5)  # forward value is the code
    upstream = torch.randn(6, 5)
    out.backward(upstream)
    scale = codes.norm(dim=1) / z.detach().norm(dim=1)
    # The rotation is orthogonal, so the gradient keeps the upstream norm up to the norm ratio ...
    assert torch.allclose(z.grad.norm(dim=1), upstream.norm(dim=1) * scale, rtol=1e-4)
    # ... and unlike the straight-through estimator it is not the upstream gradient itself.
    assert not torch.allclose(z.grad, upstream, atol=1e-3)


def test_rotation_option_reaches_the_encoder_and_keeps_ids():
    torch.manual_seed(0)
    ste = VectorQuantizer(4, QuantizerConfig(codebook_size=16, codebook_dim=4)).eval()
    rot = VectorQuantizer(4, QuantizerConfig(codebook_size=16, codebook_dim=4, gradient="rotation")).eval()
    rot.load_state_dict(ste.state_dict())
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = rot(z)
    assert torch.equal(out.ids, ste(z).ids)
    out.quantized.sum().backward()
    assert z.grad.abs().sum() > 0


def test_encode_ids_equals_the_ids_of_the_full_encode():
    torch.manual_seed(0)
    model = VQModel(tiny_config()).eval()
    pixels = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        full = model.encode(pixels).ids
        fast = model.encode_ids(pixels)
    assert fast.shape == full.shape == (5, 8, 8)
    assert torch.equal(fast, full)


def test_kmeans_init_is_public_and_finds_separated_clusters():
    from image_tokenizer import QuantizerConfig
    from image_tokenizer.modeling.quantizer import VectorQuantizer

    quantizer = VectorQuantizer(2, QuantizerConfig(codebook_size=2, codebook_dim=2, l2_normalize=False))
    centres = torch.tensor([[5.0, 0.0], [-5.0, 3.0]])
    points = torch.cat([centres[0] + 0.1 * torch.randn(50, 2), centres[1] + 0.1 * torch.randn(50, 2)])
    z = points.T.reshape(1, 2, 10, 10)  # a [B, dim, H, W] feature map
    found = quantizer.kmeans_init(z, iters=10)
    assert torch.equal(quantizer.codebook.data, found)
    order = found[:, 0].argsort(descending=True)
    torch.testing.assert_close(found[order], centres, atol=0.1, rtol=0)
