"""Quantizer kinds as specifications: FSQ and LFQ ids against their definitions (float64 brute force) and the
published reference code, dot-product VQ against argmax, and the config rules that guard them."""

import importlib.util

import pytest
import torch

from image_tokenizer import CheckpointError, ConfigError, ImageTokenizer, QuantizerConfig
from image_tokenizer.modeling import build_quantizer
from image_tokenizer.modeling.lfq import entropy_terms
from image_tokenizer.vocab import VOCAB_NAME
from tests.helpers import tiny_config

OPEN_MAGVIT2 = "open_magvit2.taming.modules.vqvae.lookup_free_quantize"


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def fsq(levels, dim=None):
    return build_quantizer(dim or len(levels), QuantizerConfig(kind="fsq", levels=levels)).eval()


def lfq(bits, bit_order="lsb_first", **options):
    return build_quantizer(bits, QuantizerConfig(kind="lfq", bits=bits, bit_order=bit_order, **options)).eval()


def rows_of(z: torch.Tensor) -> torch.Tensor:
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def fsq_reference_ids(z_rows: torch.Tensor, levels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The FSQ definition in float64: bound each channel, take the nearest of its L levels, read the digits as a
    mixed-radix number with channel 0 least significant. Also returns each row's distance to a rounding tie."""
    z = z_rows.double()
    ids = torch.zeros(z.shape[0], dtype=torch.long)
    tie = torch.full((z.shape[0],), float("inf"), dtype=torch.float64)
    radix = 1
    for i, L in enumerate(levels):
        half_l = (L - 1) * (1 + 1e-3) / 2
        offset = 0.5 if L % 2 == 0 else 0.0
        bounded = torch.tanh(z[:, i] + torch.atanh(torch.tensor(offset / half_l, dtype=torch.float64))) * half_l - offset
        grid = torch.arange(L, dtype=torch.float64) - L // 2  # the L integer values a channel can take
        digit = (bounded[:, None] - grid[None, :]).abs().argmin(dim=1)
        tie = torch.minimum(tie, ((bounded - bounded.floor()) - 0.5).abs())
        ids += digit * radix
        radix *= L
    return ids, tie


@pytest.mark.parametrize("levels", [[8, 8, 8, 5, 5, 5], [7, 5, 5, 5], [8, 6, 4], [2, 3]])
def test_fsq_ids_follow_the_definition(levels):
    torch.manual_seed(0)
    quantizer = fsq(levels)
    z = torch.randn(4, len(levels), 9, 11) * 2
    ids = quantizer(z).ids.reshape(-1)
    expected, tie = fsq_reference_ids(rows_of(z), levels)
    clear = tie > 1e-5  # rows whose bounded value is not within float32 rounding of a half-way point
    assert clear.float().mean() > 0.99
    assert torch.equal(ids[clear], expected[clear])


@pytest.mark.parametrize("levels", [[8, 8, 8, 5, 5, 5], [3, 4, 5]])
def test_fsq_codebook_is_a_bijection_with_the_published_codes(levels):
    quantizer = fsq(levels)
    codebook = quantizer.effective_codebook()
    k = torch.tensor(levels).prod().item()
    assert codebook.shape == (k, len(levels))
    assert torch.unique(codebook, dim=0).shape[0] == k  # K distinct codes
    # The digits of id k: channel 0 least significant; code = (digit - L//2) / (L//2).
    for index in (0, 1, levels[0], k - 1, k // 3):
        digits, rest = [], index
        for L in levels:
            digits.append(rest % L)
            rest //= L
        expected = torch.tensor([(d - L // 2) / (L // 2) for d, L in zip(digits, levels)], dtype=torch.float32)
        assert torch.equal(codebook[index], expected)


@pytest.mark.parametrize("kind", ["fsq", "lfq"])
def test_codebook_rows_are_the_quantized_vectors_of_their_ids(kind):
    torch.manual_seed(0)
    quantizer = fsq([8, 5, 5, 5]) if kind == "fsq" else lfq(10)
    z = torch.randn(3, quantizer.dim, 6, 6) * 2
    out = quantizer(z)
    assert torch.equal(quantizer.effective_codebook()[out.ids], out.quantized.permute(0, 2, 3, 1))
    assert torch.equal(quantizer.lookup(out.ids), out.quantized)


def test_fsq_matches_vector_quantize_pytorch_bit_for_bit():
    vqp = pytest.importorskip("vector_quantize_pytorch", reason="pip install vector-quantize-pytorch")
    torch.manual_seed(0)
    for levels in ([8, 8, 8, 5, 5, 5], [8, 6, 4], [7, 5, 5, 5]):
        reference = vqp.FSQ(levels=levels)
        quantizer = fsq(levels)
        z = torch.randn(4, len(levels), 16, 16) * 3
        codes, ids = reference(z)
        out = quantizer(z)
        assert torch.equal(out.ids, ids.long())
        assert torch.equal(out.quantized, codes)
        assert torch.equal(quantizer.effective_codebook(), reference.implicit_codebook)


@pytest.mark.parametrize("bit_order", ["lsb_first", "msb_first"])
def test_lfq_ids_are_the_sign_bits_as_a_binary_number(bit_order):
    torch.manual_seed(0)
    bits = 7
    quantizer = lfq(bits, bit_order)
    z = torch.randn(2, bits, 5, 5)
    z[0, :, 0, 0] = 0.0  # zero is bit 0 (code -1), as in both references
    ids = quantizer.encode_ids(z).reshape(-1)
    for row, index in zip(rows_of(z).tolist(), ids.tolist()):
        place = [2**i for i in range(bits)] if bit_order == "lsb_first" else [2 ** (bits - 1 - i) for i in range(bits)]
        assert index == sum(p for value, p in zip(row, place) if value > 0)


def test_lfq_msb_first_matches_vector_quantize_pytorch():
    vqp = pytest.importorskip("vector_quantize_pytorch", reason="pip install vector-quantize-pytorch")
    torch.manual_seed(0)
    reference = vqp.LFQ(dim=10, codebook_size=2**10).eval()
    quantizer = lfq(10, "msb_first")
    z = torch.randn(4, 10, 16, 16)
    codes, ids, _ = reference(z)
    out = quantizer(z)
    assert torch.equal(out.ids, ids.long())
    assert torch.equal(out.quantized, codes)
    assert torch.equal(quantizer.effective_codebook(), reference.codebook)


@pytest.mark.skipif(not has_module(OPEN_MAGVIT2), reason="pip install --no-deps open-magvit2 (reference LFQ)")
def test_lfq_lsb_first_matches_open_magvit2():
    from open_magvit2.taming.modules.vqvae.lookup_free_quantize import LFQ

    torch.manual_seed(0)
    reference = LFQ(dim=18, codebook_size=2**18).eval()
    quantizer = lfq(18, "lsb_first")
    z = torch.randn(2, 18, 16, 16)
    codes, _, ids = reference(z)
    out = quantizer(z)
    assert torch.equal(out.ids.reshape(-1), ids)
    assert torch.equal(out.quantized, codes)
    assert torch.equal(quantizer.effective_codebook(), reference.codebook)


def test_lfq_at_262144_codes_needs_no_table():
    torch.manual_seed(0)
    quantizer = lfq(18)
    z = torch.randn(2, 18, 16, 16)
    ids = quantizer.encode_ids(z)
    assert int(ids.max()) < 2**18 and ids.dtype == torch.long
    signs = torch.where(z > 0, 1.0, -1.0).permute(0, 2, 3, 1)
    assert torch.equal(quantizer.code_vectors(ids), signs)
    codebook = quantizer.effective_codebook()  # built on demand
    assert codebook.shape == (2**18, 18) and torch.equal(codebook[ids], signs)
    assert not list(quantizer.state_dict())  # nothing learned, nothing saved


@pytest.mark.parametrize("kind", ["vq", "fsq", "lfq"])
def test_ids_do_not_depend_on_the_batch(kind):
    torch.manual_seed(0)
    fields = {"vq": {"codebook_size": 64, "codebook_dim": 6, "distance": "dot"},
              "fsq": {"kind": "fsq", "levels": [5, 5, 4]}, "lfq": {"kind": "lfq", "bits": 5}}[kind]
    quantizer = build_quantizer(6, QuantizerConfig(**fields))  # fsq and lfq through projections 6 -> D -> 6
    z = torch.randn(5, 6, 4, 4)
    together = quantizer.encode_ids(z)
    assert torch.equal(torch.cat([quantizer.encode_ids(z[i : i + 1]) for i in range(5)]), together)
    assert torch.equal(quantizer.eval()(z).ids, together)


def test_half_precision_features_are_quantized_in_float32():
    torch.manual_seed(0)
    quantizer = fsq([8, 8, 8, 5, 5, 5])
    z = (torch.randn(2, 6, 8, 8) * 3).bfloat16()
    assert torch.equal(quantizer.encode_ids(z), quantizer.encode_ids(z.float()))
    assert quantizer(z).quantized.dtype == torch.bfloat16


def test_dot_distance_is_argmax_of_the_dot_product():
    torch.manual_seed(0)
    quantizer = build_quantizer(4, QuantizerConfig(codebook_size=300, codebook_dim=4, distance="dot",
                                                   distance_chunk_elements=1000)).eval()
    z = torch.randn(3, 4, 7, 7)
    expected = (rows_of(z).double() @ quantizer.effective_codebook().double().t()).argmax(dim=1)
    assert torch.equal(quantizer(z).ids.reshape(-1), expected)
    codes = quantizer.effective_codebook()
    assert torch.equal(codes, quantizer.codebook.float())  # no normalisation


def full_softmax_entropies(rows: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Open-MAGVIT2's entropy terms over the explicit 2^D codebook, in float64 (the definition)."""
    d = rows.shape[1]
    codes = ((torch.arange(2**d)[:, None] >> torch.arange(d)) & 1).double() * 2 - 1
    probs = torch.softmax(2 * rows.double() @ codes.t() / temperature, dim=-1)
    per_sample = -(probs * torch.log(probs.clamp_min(1e-300))).sum(-1).mean()
    average = probs.mean(0)
    return per_sample, -(average * torch.log(average + 1e-5)).sum()


def test_factorised_entropy_equals_the_full_softmax():
    torch.manual_seed(0)
    rows = torch.randn(300, 8) * 0.02  # near the decision boundary, where the temperature-0.01 softmax is soft
    per_sample, batch = entropy_terms(rows, temperature=0.01, group_bits=8)
    expected_sample, expected_batch = full_softmax_entropies(rows, 0.01)
    assert per_sample.item() == pytest.approx(expected_sample.item(), rel=1e-4)
    assert batch.item() == pytest.approx(expected_batch.item(), rel=1e-4)
    # In groups of 3 bits the per-sample term stays exact and the batch term bounds the joint entropy from above.
    grouped_sample, grouped_batch = entropy_terms(rows, temperature=0.01, group_bits=3)
    assert grouped_sample.item() == pytest.approx(expected_sample.item(), rel=1e-4)
    assert grouped_batch.item() >= expected_batch.item() - 1e-4


@pytest.mark.skipif(not has_module(OPEN_MAGVIT2), reason="pip install --no-deps open-magvit2 (reference LFQ)")
def test_entropy_terms_match_open_magvit2():
    from open_magvit2.taming.modules.vqvae.lookup_free_quantize import LFQ, entropy_loss

    torch.manual_seed(0)
    reference = LFQ(dim=6, codebook_size=2**6)
    rows = torch.randn(500, 6) * 0.02
    sample, batch, _ = entropy_loss(2 * rows @ reference.codebook.t(), temperature=0.01)
    ours_sample, ours_batch = entropy_terms(rows, temperature=0.01, group_bits=9)
    assert ours_sample.item() == pytest.approx(sample.item(), rel=1e-3, abs=1e-4)
    assert ours_batch.item() == pytest.approx(batch.item(), rel=1e-4)


def test_lfq_training_loss_pushes_towards_confident_and_diverse_bits():
    torch.manual_seed(0)
    quantizer = build_quantizer(6, QuantizerConfig(kind="lfq", bits=6)).train()
    z = (torch.randn(4, 6, 8, 8) * 0.01).requires_grad_(True)
    out = quantizer(z)
    assert out.entropy_loss is not None and out.loss.requires_grad
    out.loss.backward()
    assert z.grad.abs().sum() > 0
    assert float(out.usage) > 0 and float(out.perplexity) >= 1


@pytest.mark.parametrize("fields, named", [
    ({"kind": "fsq", "levels": [8, 1, 5]}, "quantizer.levels"),
    ({"kind": "fsq", "levels": [2] * 21}, "quantizer.levels"),
    ({"kind": "fsq"}, "quantizer.levels"),
    ({"kind": "lfq", "bits": 21}, "quantizer.bits"),
    ({"kind": "lfq", "bits": 0}, "quantizer.bits"),
    ({"kind": "lfq", "bits": 8, "bit_order": "little"}, "quantizer.bit_order"),
    ({"kind": "lfq", "bits": 8, "codebook_size": 1000}, "quantizer.codebook_size"),
    ({"kind": "fsq", "levels": [4, 4], "distance": "dot"}, "quantizer.distance"),
    ({"kind": "vq", "distance": "manhattan"}, "quantizer.distance"),
    ({"kind": "vq", "distance": "l2", "l2_normalize": True}, "quantizer.l2_normalize"),
    ({"kind": "vq", "bits": 8}, "quantizer.bits"),
    ({"kind": "rq"}, "quantizer.kind"),
])
def test_bad_quantizer_settings_name_the_field(fields, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        QuantizerConfig(**fields)


def test_old_l2_normalize_reads_as_a_distance():
    assert QuantizerConfig(l2_normalize=True).distance == "cosine"
    assert QuantizerConfig(l2_normalize=False).distance == "l2"
    assert QuantizerConfig().distance == "cosine" and QuantizerConfig().l2_normalize is True
    assert QuantizerConfig(distance="dot").l2_normalize is False
    assert (QuantizerConfig(kind="fsq", levels=[8, 8, 8, 5, 5, 5]).codebook_size,
            QuantizerConfig(kind="lfq", bits=18).codebook_dim) == (64000, 18)


@pytest.mark.parametrize("fields", [{"kind": "fsq", "levels": [8, 8, 8, 5, 5, 5]}, {"kind": "lfq", "bits": 18}])
def test_implicit_kinds_save_small_files_and_load_to_the_same_ids(tmp_path, fields):
    torch.manual_seed(0)
    tokenizer = ImageTokenizer(tiny_config(codebook_size=None, codebook_dim=None, **fields))
    images = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8).numpy()
    ids = tokenizer.encode(images)
    tokenizer.save_pretrained(tmp_path)
    # No table of K codes and no K x D codebook: vocab.json and codebook.safetensors stay under a few kB.
    assert (tmp_path / VOCAB_NAME).stat().st_size < 4096
    assert (tmp_path / "codebook.safetensors").stat().st_size < 1024
    loaded = ImageTokenizer.from_pretrained(tmp_path)
    assert torch.equal(loaded.encode(images), ids)
    assert torch.equal(loaded.codebook, tokenizer.codebook)
    k = tokenizer.vocab_size
    assert k == loaded.config.quantizer.codebook_size == (64000 if fields["kind"] == "fsq" else 2**18)
    assert loaded.convert_tokens_to_ids(loaded.convert_ids_to_tokens(k - 1)) == k - 1
    assert len(loaded.decode(ids)) == 3


def test_a_codebook_file_that_disagrees_with_the_levels_is_refused(tmp_path):
    from safetensors.torch import save_file

    ImageTokenizer(tiny_config(codebook_size=None, codebook_dim=None, kind="fsq", levels=[5, 5])).save_pretrained(tmp_path)
    save_file({"levels": torch.tensor([5, 4])}, str(tmp_path / "codebook.safetensors"))
    with pytest.raises(CheckpointError, match="levels"):
        ImageTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("bit_order", ["lsb_first", "msb_first"])
def test_factorised_ids_are_the_ids_of_channel_groups(bit_order):
    from image_tokenizer.modeling.lfq import join_ids, split_ids

    torch.manual_seed(0)
    z = torch.randn(2, 18, 4, 4)
    ids = lfq(18, bit_order).encode_ids(z)
    low, high = split_ids(ids, (6, 12), bit_order)
    # Each part is the id a 6-bit and a 12-bit quantizer of the same order give to those channels alone.
    assert torch.equal(low, lfq(6, bit_order).encode_ids(z[:, :6]))
    assert torch.equal(high, lfq(12, bit_order).encode_ids(z[:, 6:]))
    assert torch.equal(join_ids((low, high), (6, 12), bit_order), ids)
    if bit_order == "lsb_first":  # Open-MAGVIT2's factorisation
        assert torch.equal(low, ids & 63) and torch.equal(high, ids >> 6)
