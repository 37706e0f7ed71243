"""The special tokens and vocabulary lookups a text tokenizer offers (`boi`/`eoi`/`pad`, `bos`/`eos`, token <-> id),
answered from the tokenizer's ImageVocab, so code written for transformers tokenizers works on image ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .vocab import ImageVocab


class SpecialTokensMixin:
    """For a class with a `vocab` (ImageVocab): its special ids and tokens under transformers' names."""

    vocab: ImageVocab

    @property
    def boi_token_id(self) -> int:
        return self.vocab.boi_token_id

    @property
    def eoi_token_id(self) -> int:
        return self.vocab.eoi_token_id

    @property
    def pad_token_id(self) -> int:
        return self.vocab.pad_token_id

    @property
    def all_special_ids(self) -> list[int]:
        return self.vocab.all_special_ids

    @property
    def all_special_tokens(self) -> list[str]:
        return list(self.vocab.special_tokens + self.vocab.class_tokens)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        return self.vocab.convert_ids_to_tokens(ids)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        return self.vocab.convert_tokens_to_ids(tokens)

    def get_vocab(self) -> dict[str, int]:
        return self.vocab.get_vocab()

    @property
    def bos_token_id(self) -> int:
        return self.boi_token_id

    @property
    def eos_token_id(self) -> int:
        return self.eoi_token_id

    @property
    def bos_token(self) -> str:
        return self.convert_ids_to_tokens(self.boi_token_id)

    @property
    def eos_token(self) -> str:
        return self.convert_ids_to_tokens(self.eoi_token_id)

    @property
    def pad_token(self) -> str:
        return self.convert_ids_to_tokens(self.pad_token_id)
