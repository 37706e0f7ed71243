import numpy as np

"""Image tokens inside a text model: a tiny offline BPE tokenizer, extended, feeding a tiny GPT-2."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from image_tokenizer import InvalidIdsError
from image_tokenizer.text_vocab import extend_text_tokenizer, from_text_ids


def tiny_text_tokenizer() -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["[UNK]", "[PAD]"])
    bpe.train_from_iterator(["a red disk and a blue star", "three shapes on black", "draw a small green oval"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", pad_token="[PAD]")


@pytest.mark.parametrize("add_eol", [False, True])
def test_extend_map_train_generate_and_decode(tokenizer, images, add_eol):
    text_tok = tiny_text_tokenizer()
    base = len(text_tok)
    mapping = tokenizer.extend_text_tokenizer(text_tok, add_eol=add_eol)
    assert len(text_tok) == base + tokenizer.vocab_size + 2 + int(add_eol)
    assert text_tok.convert_ids_to_tokens(int(mapping.image_to_text[42])) == "<img_00042>"
    # Image tokens are atomic: the text tokenizer never splits them.
    encoded = text_tok("a red disk <boi><img_00003><img_00007><eoi>")["input_ids"]
    assert encoded[-4:] == [mapping.boi_id, int(mapping.image_to_text[3]), int(mapping.image_to_text[7]), mapping.eoi_id]

    grid = tokenizer.encode(images[0])
    image_span = tokenizer.to_text_ids(grid, mapping)
    assert image_span[0] == mapping.boi_id and image_span[-1] == mapping.eoi_id
    assert len(image_span) == 64 + 2 + (8 if add_eol else 0)
    assert torch.equal(from_text_ids(image_span, mapping, tokenizer.grid_size), grid)

    model = GPT2LMHeadModel(GPT2Config(vocab_size=base, n_positions=128, n_embd=32, n_layer=2, n_head=2))
    model.resize_token_embeddings(len(text_tok))
    text = torch.tensor(text_tok("a red disk")["input_ids"])
    sequence = torch.cat([text, image_span]).unsqueeze(0)
    out = model(input_ids=sequence, labels=sequence)
    assert out.logits.shape == (1, sequence.shape[1], len(text_tok)) and torch.isfinite(out.loss)
    out.loss.backward()

    # A "generated" sequence: text, then an image span; map the span back and decode it to an image.
    generated = torch.cat([text, image_span, torch.tensor(text_tok("three")["input_ids"])])
    image = tokenizer.decode(tokenizer.from_text_ids(generated, mapping))
    assert image.size == (16, 16)


def test_vectorised_conversion_both_ways(tokenizer):
    mapping = extend_text_tokenizer(tokenizer, tiny_text_tokenizer())
    ids = torch.arange(64).reshape(8, 8)
    text = mapping.image_ids_to_text(ids)
    assert text.shape == (8, 8)
    assert torch.equal(mapping.text_ids_to_image(text), ids)


def test_non_image_ids_are_a_clear_error(tokenizer):
    text_tok = tiny_text_tokenizer()
    mapping = extend_text_tokenizer(tokenizer, text_tok)
    word = text_tok("red")["input_ids"][0]
    with pytest.raises(InvalidIdsError, match=rf"text id {word} at position \(1,\) is not an image token"):
        mapping.text_ids_to_image([int(mapping.image_to_text[0]), word])
    with pytest.raises(InvalidIdsError, match="outside the codebook"):
        mapping.image_ids_to_text([64])
    with pytest.raises(InvalidIdsError, match="must hold 64 image tokens"):
        from_text_ids([mapping.boi_id, int(mapping.image_to_text[0]), mapping.eoi_id], mapping, (8, 8))


def test_from_text_ids_takes_a_batch_and_other_grids(tokenizer):
    text_tok = tiny_text_tokenizer()
    mapping = extend_text_tokenizer(tokenizer, text_tok)
    images = [np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8) for i in range(2)]
    grids = tokenizer.encode(images)
    batch = np.stack([tokenizer.to_text_ids(g, mapping).numpy() for g in grids])
    assert torch.equal(tokenizer.from_text_ids(batch, mapping), grids)  # [2, L] -> [2, h, w], not the first only
    big = tokenizer.encode(np.zeros((32, 32, 3), np.uint8), native_size=True)
    assert tokenizer.from_text_ids(tokenizer.to_text_ids(big, mapping), mapping).shape == (16, 16)


def test_a_16384_code_lfq_vocabulary_maps_both_ways_and_re_extending_keeps_the_ids():
    from image_tokenizer import ImageTokenizer
    from tests.helpers import tiny_config

    image_tok = ImageTokenizer(tiny_config(codebook_size=None, codebook_dim=None, kind="lfq", bits=14))
    text_tok = tiny_text_tokenizer()
    mapping = extend_text_tokenizer(image_tok, text_tok)
    ids = torch.tensor([0, 1, 9999, 2**14 - 1])
    text_ids = mapping.image_ids_to_text(ids)
    assert text_tok.convert_ids_to_tokens(text_ids.tolist()) == image_tok.convert_ids_to_tokens(ids.tolist())
    assert torch.equal(mapping.text_ids_to_image(text_ids), ids)
    # A second extension adds nothing new, so the ids are looked up rather than assumed: the same mapping.
    again = extend_text_tokenizer(image_tok, text_tok)
    assert np.array_equal(again.image_to_text, mapping.image_to_text)
