"""The VQGAN network: encoder, decoder and the quantizer kinds (vq, fsq, lfq, multiscale, residual), one concept
per file."""

from .decoder import Decoder
from .encoder import Encoder
from .fsq import FiniteScalarQuantizer
from .lfq import LookupFreeQuantizer
from .multiscale import MultiScaleQuantizer, phi_schedule
from .quantizer import VectorQuantizer
from .quantizer_base import QuantizerBase, QuantizerOutput, usage_and_perplexity
from .residual import ResidualQuantizer
from .stacked import StackedQuantizer
from .vqmodel import VQModel, VQModelOutput, build_quantizer

__all__ = ["Decoder", "Encoder", "FiniteScalarQuantizer", "LookupFreeQuantizer", "MultiScaleQuantizer", "QuantizerBase",
           "QuantizerOutput", "ResidualQuantizer", "StackedQuantizer", "VQModel", "VQModelOutput", "VectorQuantizer",
           "build_quantizer", "phi_schedule", "usage_and_perplexity"]
