import itertools

import numpy as np
import pytest
import torch

from image_tokenizer import CheckpointError, InvalidImageError
from image_tokenizer.data.shapes import generate
from image_tokenizer.feature_classifier import LabelClassifier, LabelClassifierConfig
from image_tokenizer.shapes_classifier import ShapesClassifier, ShapesClassifierConfig, frechet_distance


def test_frechet_distance_matches_the_closed_form():
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=3)))  # mean 0, sample covariance 8/7 I
    shift = np.array([1.0, -2.0, 0.5])
    # N(0, s I) vs N(c, 4 s I): |c|^2 + 3 (s + 4 s - 2 sqrt(4 s^2)) = |c|^2 + 3 s
    expected = (shift**2).sum() + 3 * 8 / 7
    assert frechet_distance(signs, 2 * signs + shift) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(signs, signs) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 4)), rng.normal(size=(400, 4)) @ rng.normal(size=(4, 4))
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)  # symmetric
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, b[:, :3])


def test_classifier_shapes_save_load_and_bad_input(tmp_path):
    torch.manual_seed(0)
    model = ShapesClassifier(ShapesClassifierConfig(channels=(8, 16), feature_dim=12)).eval()
    images = np.stack([s.image for s in generate(5, seed=2)])
    assert model(images).shape == (5, 5, 6)
    assert model.embed(images).shape == (5, 12)
    assert model.predict_counts(images).shape == (5, 5)
    model.save_pretrained(tmp_path / "clf", {"per_type_count_accuracy": 0.5})
    loaded = ShapesClassifier.from_pretrained(tmp_path / "clf")
    np.testing.assert_array_equal(loaded.embed(images), model.embed(images))
    with pytest.raises(InvalidImageError, match="uint8 images"):
        model.embed(images.astype(np.float32))
    (tmp_path / "clf" / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not a shapes classifier"):
        ShapesClassifier.from_pretrained(tmp_path / "clf")


def test_bundled_classifier_counts_held_out_shapes():
    model = ShapesClassifier.from_pretrained()
    samples = list(generate(200, seed=1))
    predicted = model.predict_counts(np.stack([s.image for s in samples]))
    truth = np.array([s.type_counts for s in samples])
    assert (predicted == truth).mean() > 0.8  # per-type counts; chance (always 0) is about 0.6


def test_a_label_classifier_names_one_class_per_image_saves_strictly_and_refuses_unknown_labels(tmp_path):
    torch.manual_seed(0)
    config = LabelClassifierConfig(channels=(8,), feature_dim=6, class_names=("Flags", "Food & Drink", "Symbols"), label_column="group")
    model = LabelClassifier(config).eval()
    images = np.stack([s.image for s in generate(4, seed=2)])
    assert model(images).shape == (4, 3) and model.embed(images).shape == (4, 6)
    assert set(model.predict(images)) <= {0, 1, 2}
    np.testing.assert_array_equal(model.label_ids(["Symbols", "Flags"]), [2, 0])
    with pytest.raises(ValueError, match=r"\['Animals'\] are not among this classifier's classes"):
        model.label_ids(["Flags", "Animals"])
    model.save_pretrained(tmp_path / "clf", {"heldout_group_accuracy": 0.5})
    loaded = LabelClassifier.from_pretrained(tmp_path / "clf")
    assert loaded.config == config and loaded.card_info == {"heldout_group_accuracy": 0.5}
    np.testing.assert_array_equal(loaded.embed(images), model.embed(images))
    with pytest.raises(CheckpointError, match="not a shapes classifier"):
        ShapesClassifier.from_pretrained(tmp_path / "clf")  # each loader checks the format field
    with pytest.raises(ValueError, match="at least two class_names"):
        LabelClassifierConfig(class_names=("Flags",))
