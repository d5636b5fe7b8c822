"""Decoders: codes (B, S, d) -> images (regression) or velocities (diffusion). Importing registers the built-ins."""

from tokenizer_zoo.decoders.flowmo import FlowMoDecoder

__all__ = ["FlowMoDecoder"]
