"""tokenizer-zoo-bsq: Binary Spherical Quantization as a tokenizer-zoo plugin (entry point ``bsq``)."""

from tokenizer_zoo_bsq.bsq import BSQuantizer

__all__ = ["BSQuantizer"]
