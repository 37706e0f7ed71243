import json

import numpy as np
import pytest

from image_tokenizer.data.shapes import (
    HELDOUT_SEED,
    SHAPE_TYPES,
    TRAIN_SEED,
    ShapesConfig,
    generate,
    generate_arrays,
    make_sample,
    save_image_folder,
    to_dataset,
)


def test_generation_is_deterministic_per_seed_and_index():
    a = list(generate(20, seed=TRAIN_SEED))
    b = list(generate(20, seed=TRAIN_SEED))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.hole_mask, y.hole_mask)
    # Image i does not depend on what else was generated.
    np.testing.assert_array_equal(make_sample(TRAIN_SEED, 13).image, a[13].image)
    np.testing.assert_array_equal(next(iter(generate(3, TRAIN_SEED, start=10))).image, a[10].image)


def test_train_and_heldout_seeds_differ():
    train, _ = generate_arrays(50, TRAIN_SEED)
    held, _ = generate_arrays(50, HELDOUT_SEED)
    assert not any(np.array_equal(t, h) for t in train for h in held)


def test_parallel_generation_matches_serial():
    serial, serial_masks = generate_arrays(600, seed=3)
    parallel, parallel_masks = generate_arrays(600, seed=3, num_workers=2)
    np.testing.assert_array_equal(serial, parallel)
    np.testing.assert_array_equal(serial_masks, parallel_masks)


def _colours(image: np.ndarray) -> set[tuple[int, int, int]]:
    """The distinct (r, g, b) of an image, each packed into one integer for np.unique (a set of 4,096 tuples per
    image took 0.7 CPU seconds for 300 images)."""
    rgb = image.reshape(-1, 3).astype(np.int32)
    return {(v >> 16, v >> 8 & 255, v & 255) for v in np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]).tolist()}


def test_images_follow_the_spec():
    samples = list(generate(300, seed=TRAIN_SEED))
    counts = {s.num_shapes for s in samples}
    assert counts == {1, 2, 3, 4, 5}
    kinds = {shape.type for s in samples for shape in s.shapes}
    assert kinds == set(SHAPE_TYPES)
    for s in samples:
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        palette = {tuple(shape.color) for shape in s.shapes} | {(0, 0, 0)}  # black background, uniform colours
        assert _colours(s.image) <= palette
        assert sum(s.type_counts) == s.num_shapes
        for shape in s.shapes:
            assert max(shape.color) >= 100  # never near-black, so it differs from the background
    background = np.mean([(~s.image.any(axis=2)).mean() for s in samples])
    assert 0.4 < background < 0.95


def test_rotation_without_interpolation_leaves_holes():
    samples = list(generate(200, seed=TRAIN_SEED))
    holes = np.array([s.hole_mask.sum() for s in samples])
    assert (holes > 0).mean() > 0.8  # most images carry holes
    for s in samples:
        # A hole is background...
        assert not s.image[s.hole_mask].any()
        # ...surrounded by painted pixels on most sides (it sits inside an outline, not outside a shape).
        ys, xs = np.nonzero(s.hole_mask)
        painted = s.image.any(axis=2)
        for y, x in zip(ys[:5], xs[:5]):
            neighbours = painted[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
            assert neighbours.sum() >= 4


def test_metadata_is_complete():
    meta = make_sample(TRAIN_SEED, 0).metadata()
    assert set(meta) == {"num_shapes", "shape_types", "type_counts", "colors", "boxes", "angles", "hole_pixels"}
    assert len(meta["shape_types"]) == len(meta["colors"]) == len(meta["boxes"]) == meta["num_shapes"]
    for x0, y0, x1, y1 in meta["boxes"]:
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    json.dumps(meta)


def test_to_dataset_has_an_image_feature():
    import datasets

    ds = to_dataset(12, seed=TRAIN_SEED)
    assert isinstance(ds.features["image"], datasets.Image)
    row = ds[3]
    np.testing.assert_array_equal(np.asarray(row["image"]), make_sample(TRAIN_SEED, 3).image)
    assert row["num_shapes"] == make_sample(TRAIN_SEED, 3).num_shapes


def test_image_folder_loads_with_datasets(tmp_path):
    import datasets

    save_image_folder(tmp_path / "shapes", 10, seed=HELDOUT_SEED, progress=False)
    assert len(list((tmp_path / "shapes").glob("*.png"))) == 10
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "shapes"), split="train")
    assert len(ds) == 10
    first = ds.sort("file_name")[0] if "file_name" in ds.column_names else ds[0]
    assert "num_shapes" in ds.column_names and "hole_pixels" in ds.column_names
    assert first["image"].size == (64, 64)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="min_shapes"):
        ShapesConfig(min_shapes=0)
