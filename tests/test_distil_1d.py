"""A 1D tokenizer distilled from a 2D one (training/distil_1d.py): stage 1 learns the proxy's ids, stage 2 leaves
encoder and quantizer as stage 1 left them, and the result is an ordinary ImageTokenizer (saves, loads with the
same ids and pixels, `tok(images)`, `batch_decode`, pre-tokenized rows). A tiny random proxy (tests.helpers
tiny_config: 16x16 images, an 8x8 grid of 64 codes, VQGAN attention) and a tiny ViT student."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from image_tokenizer import ImageTokenizer, ImageTokenizerConfig
from image_tokenizer.errors import CheckpointError, ConfigError
from image_tokenizer.modeling import VQModel
from image_tokenizer.pretokenize import pretokenize
from tests.helpers import tiny_config, tiny_titok_config
from training.distil_1d import DistilConfig, stage1_loss, stage_parameters, train
from training.distil_proxy import check_proxy, copy_pixel_decoder, load_proxy, student_config

VIT = {"num_latent_tokens": 4, "encoder_width": 16, "encoder_layers": 1, "encoder_heads": 2, "decoder_width": 16,
       "decoder_layers": 1, "decoder_heads": 2, "encoder_patch_size": 8, "mlp_ratio": 2.0}
QUANTIZER = {"codebook_size": 32, "codebook_dim": 4}
STAGE1, STAGE2 = 3, 2


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A saved random proxy and a folder of six 16x16 images."""
    root = tmp_path_factory.mktemp("distil")
    torch.manual_seed(0)
    ImageTokenizer(tiny_config()).save_pretrained(root / "proxy")
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    (root / "images").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(root / "images" / f"{i}.png")
    return root


def distil_config(folders, **changes) -> DistilConfig:
    settings = {"output_dir": str(folders / "run"), "proxy": str(folders / "proxy"), "vit": VIT, "quantizer": QUANTIZER,
                "data": str(folders / "images"), "eval_data": None, "eval_images": 0, "stage1_steps": STAGE1,
                "stage2_steps": STAGE2, "batch_size": 2, "kmeans_batches": 1, "log_every": 1, "checkpoint_every": 0,
                "progress": False, **changes}
    return DistilConfig(**settings)


@pytest.fixture(scope="module")
def run(folders):
    """Stage 1, stopped there (as an interruption would), then resumed for stage 2: (the encoder's and quantizer's
    state after stage 1, the finished run's summary)."""
    config = distil_config(folders)
    stopped = train(config, stop_at=STAGE1)["model"]
    frozen = {k: v.clone() for k, v in stopped.state_dict().items() if k.startswith(("encoder.", "quantizer."))}
    decoder = {k: v.clone() for k, v in stopped.state_dict().items() if k.startswith("decoder.")}
    return frozen, decoder, train(config, resume=True)


def test_stage1_cross_entropy_on_the_proxys_ids_falls_on_a_fixed_batch(folders):
    torch.manual_seed(0)
    proxy = load_proxy(str(folders / "proxy"))
    model = VQModel(student_config(proxy, VIT, QUANTIZER, "proxy"))
    copy_pixel_decoder(proxy, model)
    optimizer = torch.optim.Adam(stage_parameters(model, 1, True), lr=1e-2)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        target = proxy.model.encode_ids(x)
    losses = []
    for _ in range(4):
        loss, logs = stage1_loss(model, x, target, 1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(logs["ce"]))
    assert losses[-1] < losses[0] - 0.5, losses


def test_the_pixel_decoder_starts_as_the_proxys_own(folders):
    """Hard logits (one-hot on the proxy's ids) decode through the copied pixel decoder to the proxy's pixels."""
    proxy = load_proxy(str(folders / "proxy"))
    model = VQModel(student_config(proxy, VIT, QUANTIZER, "proxy"))
    copy_pixel_decoder(proxy, model)
    ids = torch.randint(0, 64, (2, 8, 8))
    logits = torch.nn.functional.one_hot(ids, 64).permute(0, 3, 1, 2).float() * 1e4
    with torch.no_grad():
        assert torch.allclose(model.decoder.pixel_decoder(logits), proxy.model.decode_ids(ids), atol=1e-5)


def test_stage2_trains_the_decoder_and_leaves_encoder_and_quantizer_as_stage1_left_them(run):
    frozen, decoder, summary = run
    state = summary["model"].state_dict()
    assert summary["step"] == STAGE1 + STAGE2
    assert all(torch.equal(state[k], v) for k, v in frozen.items())
    assert any(not torch.equal(state[k], v) for k, v in decoder.items())


def test_the_distilled_tokenizer_saves_loads_and_tokenizes_like_any_other(run, folders):
    summary = run[2]
    saved = json.loads((summary["final_dir"] / "config.json").read_text())
    assert saved["layout"]["kind"] == "1d" and saved["layout"]["shape"] == [4]
    assert saved["vit"]["pixel_decoder"] == "vqgan" and saved["vit"]["legacy"] is True
    loaded = ImageTokenizer.from_pretrained(summary["final_dir"])
    trained = ImageTokenizer(summary["model"].config, summary["model"])
    images = [Image.open(folders / "images" / f"{i}.png") for i in range(3)]
    ids = loaded.encode(images)
    assert ids.shape == (3, 4) and torch.equal(ids, trained.encode(images))
    assert np.array_equal(loaded.decode(ids, output_type="np"), trained.decode(ids, output_type="np"))
    sequences = loaded(images)["input_ids"]  # [BOS, N ids, EOS] per image
    assert [row[1:-1] for row in sequences] == ids.tolist()
    decoded = loaded.batch_decode(sequences, output_type="np")
    assert np.array_equal(np.stack(decoded), loaded.decode(ids, output_type="np"))
    dataset = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    rows = pretokenize(dataset, loaded, batch_size=3, load_from_cache_file=False)
    assert rows["input_ids"] == ids.tolist() and set(rows["grid_h"]) == {1} and set(rows["grid_w"]) == {4}


def test_bad_proxies_settings_and_checkpoints_are_our_errors(run, folders):
    where = folders / "proxy" / "config.json"
    with pytest.raises(ConfigError, match=r"proxy/config\.json: field 'quantizer.kind' is 'multiscale': the proxy's "
                                          "ids are layout 'multiscale', not a grid"):
        check_proxy(tiny_config(kind="multiscale", scales=(1, 2, 4, 8)), where)
    with pytest.raises(ConfigError, match=r"config\.json: field 'architecture' is 'titok'"):
        check_proxy(tiny_titok_config(), where)
    proxy = load_proxy(str(folders / "proxy"))
    with pytest.raises(ConfigError, match="vit.decoder_patch_size is 4, but the proxy p decides it: 2"):
        student_config(proxy, {**VIT, "decoder_patch_size": 4}, QUANTIZER, "p")
    with pytest.raises(CheckpointError, match=r"state\.json: tokenizer_config field 'vit\.num_latent_tokens' is 4, "
                                              "this run's is 5"):
        train(distil_config(folders, vit={**VIT, "num_latent_tokens": 5}), resume=True)


def test_the_pixel_decoder_field_stays_out_of_config_json_at_its_default():
    """Converted TiTok folders keep their config.json and fingerprint: vit.pixel_decoder 'maskgit' and
    vit.proxy_codebook_dim None are not written; 'vqgan' is, and reads back."""
    assert "pixel_decoder" not in tiny_titok_config().to_dict()["vit"]
    config = tiny_config()
    student = student_config(ImageTokenizer(config), VIT, QUANTIZER, "p")
    data = student.to_dict()
    assert data["vit"]["pixel_decoder"] == "vqgan" and data["vit"]["proxy_codebook_dim"] == config.quantizer.codebook_dim
    assert ImageTokenizerConfig.from_dict(json.loads(json.dumps(data))) == student
    with pytest.raises(ConfigError, match="vit.pixel_decoder applies to legacy models"):
        tiny_titok_config(pixel_decoder="vqgan")
