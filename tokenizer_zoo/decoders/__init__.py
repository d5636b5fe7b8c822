"""Decoders: codes (B, S, d) -> images (regression) or velocities (diffusion). Importing registers the built-ins."""

from tokenizer_zoo.decoders.cnn import CNNDecoder
from tokenizer_zoo.decoders.flowmo import FlowMoDecoder
from tokenizer_zoo.decoders.regression import RegressionDecoder
from tokenizer_zoo.decoders.thumbnail import ThumbnailDecoder

__all__ = ["CNNDecoder", "FlowMoDecoder", "RegressionDecoder", "ThumbnailDecoder"]
