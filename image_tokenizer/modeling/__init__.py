"""The VQGAN network: encoder, decoder and vector quantizer, one concept per file."""

from .decoder import Decoder
from .encoder import Encoder
from .quantizer import QuantizerOutput, VectorQuantizer, usage_and_perplexity
from .vqmodel import VQModel, VQModelOutput

__all__ = ["Decoder", "Encoder", "QuantizerOutput", "VQModel", "VQModelOutput", "VectorQuantizer", "usage_and_perplexity"]
