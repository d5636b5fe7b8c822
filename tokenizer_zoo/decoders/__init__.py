"""Decoders: codes (B, S, d) -> images (regression) or velocities (diffusion). Importing registers the built-ins."""

from tokenizer_zoo.decoders.cnn import CNNDecoder
from tokenizer_zoo.decoders.diffusers_autoencoder import DiffusersAutoencoderDecoder
from tokenizer_zoo.decoders.flowmo import FlowMoDecoder
from tokenizer_zoo.decoders.open_magvit2 import OpenMagvit2Decoder
from tokenizer_zoo.decoders.regression import RegressionDecoder
from tokenizer_zoo.decoders.thumbnail import ThumbnailDecoder
from tokenizer_zoo.decoders.titok import TiTokDecoder

__all__ = ["CNNDecoder", "DiffusersAutoencoderDecoder", "FlowMoDecoder", "OpenMagvit2Decoder", "RegressionDecoder",
           "ThumbnailDecoder", "TiTokDecoder"]
