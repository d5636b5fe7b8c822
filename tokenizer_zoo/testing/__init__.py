"""Test helpers for plugin authors: ``QuantizerConformance``, the quantizer conformance kit (pytest)."""

from tokenizer_zoo.testing.quantizer_conformance import QuantizerConformance

__all__ = ["QuantizerConformance"]
