"""Encoders: images -> continuous pre-quantisation codes (B, S, d). Importing registers the built-ins."""

from tokenizer_zoo.encoders.cnn import CNNEncoder
from tokenizer_zoo.encoders.flowmo import FlowMoEncoder
from tokenizer_zoo.encoders.thumbnail import ThumbnailEncoder

__all__ = ["CNNEncoder", "FlowMoEncoder", "ThumbnailEncoder"]
