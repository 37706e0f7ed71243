"""The image prior: a transformers causal LM (or, for MaskGIT, a masked LM) over image token ids (model.py) of a
PriorConfig (config.py), the token layout that says what its ids mean (layout.py), and sampling as plain
functions (sampling.py; next_scale.py; maskgit.py)."""

from .config import PriorConfig, build_causal_lm, build_masked_lm, build_prior_model
from .layout import LAYOUT_FORMAT, LAYOUT_NAME, TokenLayout, codebook_sha256
from .model import PRIOR_FILES, ImagePrior
from .sampling import SamplingKwargs, SamplingOptions

__all__ = [
    "LAYOUT_FORMAT",
    "LAYOUT_NAME",
    "PRIOR_FILES",
    "ImagePrior",
    "PriorConfig",
    "SamplingKwargs",
    "SamplingOptions",
    "TokenLayout",
    "build_causal_lm",
    "build_masked_lm",
    "build_prior_model",
    "codebook_sha256",
]
