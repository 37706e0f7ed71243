"""The VQGAN network: encoder, decoder and the quantizer kinds (vq, fsq, lfq), one concept per file."""

from .decoder import Decoder
from .encoder import Encoder
from .fsq import FiniteScalarQuantizer
from .lfq import LookupFreeQuantizer
from .quantizer import VectorQuantizer
from .quantizer_base import QuantizerBase, QuantizerOutput, usage_and_perplexity
from .vqmodel import VQModel, VQModelOutput, build_quantizer

__all__ = ["Decoder", "Encoder", "FiniteScalarQuantizer", "LookupFreeQuantizer", "QuantizerBase", "QuantizerOutput",
           "VQModel", "VQModelOutput", "VectorQuantizer", "build_quantizer", "usage_and_perplexity"]
