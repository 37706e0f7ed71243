"""A prior's transformer, in one dataclass: PriorConfig (architecture and sizes, JSON in and out), and
`build_prior_model`, which makes a fresh transformers model of that config for a token layout: a causal LM
(`build_causal_lm`) for raster and next-scale priors, a masked LM (`build_masked_lm`) for a maskgit one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config_fields import with_overrides
from ..errors import ConfigError
from .layout import TokenLayout

CAUSAL_ARCHITECTURES = ("llama", "gpt2")
ARCHITECTURES = (*CAUSAL_ARCHITECTURES, "bert")


@dataclass
class PriorConfig:
    """The architecture and sizes of a prior's causal LM (the vocabulary and sequence length come from the layout)."""

    architecture: str = "llama"  # "llama" or "gpt2" (causal), or "bert" (BertForMaskedLM, a maskgit prior's)
    hidden_size: int = 256  # the transformer's width
    num_hidden_layers: int = 4  # transformer layers
    num_attention_heads: int = 4  # attention heads (hidden_size must be a multiple)
    intermediate_size: int | None = None  # llama, bert: the MLP's width (None: 4 x hidden_size)
    num_key_value_heads: int | None = None  # llama: key/value heads (None: num_attention_heads)
    max_position_embeddings: int | None = None  # llama: positions (None: the layout's sequence length)
    tie_word_embeddings: bool = True  # llama: the output layer shares the input embeddings
    dropout: float = 0.0  # dropout probability (llama: attention; gpt2, bert: residual, embedding and attention)

    @classmethod
    def build(cls, config: PriorConfig | None = None, overrides: dict[str, Any] | None = None) -> PriorConfig:
        """`config` (or the defaults) with keyword overrides; an unknown keyword is an error naming the fields."""
        return with_overrides(cls, config, overrides, ConfigError, "config", "prior config field")

    def validate(self) -> PriorConfig:
        """Refuse an architecture we cannot build or sizes that do not fit together; returns self."""
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be 'llama' or 'gpt2' (causal), or 'bert' (maskgit), got {self.architecture!r}")
        if min(self.hidden_size, self.num_hidden_layers, self.num_attention_heads) < 1:
            raise ConfigError("hidden_size, num_hidden_layers and num_attention_heads must be positive")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError("hidden_size must be a multiple of num_attention_heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        return self

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values (what a prior's training record holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PriorConfig:
        """The config to_json wrote; an unknown key is an error naming the fields."""
        return cls.build(None, data).validate()


def build_causal_lm(layout: TokenLayout, config: PriorConfig | None = None) -> Any:
    """A fresh transformers causal LM of `config` (default: PriorConfig()) sized for the layout."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    config = (config or PriorConfig()).validate()
    common = {
        "vocab_size": layout.vocab_size,
        "bos_token_id": layout.boi_token_id,
        "eos_token_id": layout.eoi_token_id,
        "pad_token_id": layout.pad_token_id,
    }
    hidden, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    if config.architecture == "llama":
        model_config = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=config.intermediate_size or 4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=config.num_key_value_heads or heads,
            max_position_embeddings=config.max_position_embeddings or layout.sequence_length,
            tie_word_embeddings=config.tie_word_embeddings,
            attention_dropout=config.dropout,
            **common,
        )
    else:
        model_config = GPT2Config(
            n_embd=hidden, n_layer=layers, n_head=heads, n_positions=layout.sequence_length,
            resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout, **common,
        )
    return AutoModelForCausalLM.from_config(model_config)


def build_prior_model(layout: TokenLayout, config: PriorConfig | None = None) -> Any:
    """A fresh model for the layout's prediction: a causal LM (raster, next_scale) or a masked LM (maskgit)."""
    config = (config or PriorConfig(architecture="bert" if layout.maskgit else "llama")).validate()
    if layout.maskgit != (config.architecture == "bert"):
        wanted = "'bert'" if layout.maskgit else "'llama' or 'gpt2'"
        raise ConfigError(f"a {layout.prediction} prior needs architecture {wanted}, got {config.architecture!r} "
                          "(maskgit predicts masked ids with a bidirectional model; raster and next_scale, the next ids)")
    return build_masked_lm(layout, config) if layout.maskgit else build_causal_lm(layout, config)


def build_masked_lm(layout: TokenLayout, config: PriorConfig) -> Any:
    """A fresh BertForMaskedLM of `config` over the layout's vocabulary (image ids, specials, classes, `<mask>`).

    BERT because a maskgit prior must attend both ways and load with a plain Auto class: BertForMaskedLM is what
    `AutoModelForMaskedLM` builds from its config.json, with no custom code, and the publisher's MaskGIT
    (bytedance/1d-tokenizer) is a BertModel too. A Llama made non-causal would load through no Auto class as
    such: AutoModelForCausalLM would bring it back causal. Absolute learned positions, one token type."""
    from transformers import AutoModelForMaskedLM, BertConfig

    hidden = config.hidden_size
    model_config = BertConfig(
        vocab_size=layout.vocab_size, hidden_size=hidden, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size or 4 * hidden,
        max_position_embeddings=config.max_position_embeddings or layout.sequence_length, type_vocab_size=1,
        hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout,
        pad_token_id=layout.pad_token_id, tie_word_embeddings=config.tie_word_embeddings,
    )
    return AutoModelForMaskedLM.from_config(model_config)
