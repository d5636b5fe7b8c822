"""Encoders: images -> continuous pre-quantisation codes (B, S, d). Importing registers the built-ins."""

from tokenizer_zoo.encoders.cnn import CNNEncoder
from tokenizer_zoo.encoders.diffusers_autoencoder import DiffusersAutoencoderEncoder
from tokenizer_zoo.encoders.flowmo import FlowMoEncoder
from tokenizer_zoo.encoders.open_magvit2 import OpenMagvit2Encoder
from tokenizer_zoo.encoders.thumbnail import ThumbnailEncoder
from tokenizer_zoo.encoders.titok import TiTokEncoder

__all__ = ["CNNEncoder", "DiffusersAutoencoderEncoder", "FlowMoEncoder", "OpenMagvit2Encoder", "ThumbnailEncoder",
           "TiTokEncoder"]
