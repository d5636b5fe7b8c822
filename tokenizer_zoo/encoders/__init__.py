"""Encoders: images -> continuous pre-quantisation codes (B, S, d). Importing registers the built-ins."""

from tokenizer_zoo.encoders.cnn import CNNEncoder
from tokenizer_zoo.encoders.diffusers_autoencoder import DiffusersAutoencoderEncoder
from tokenizer_zoo.encoders.flowmo import FlowMoEncoder

__all__ = ["CNNEncoder", "DiffusersAutoencoderEncoder", "FlowMoEncoder"]
