"""Quantizers: one method per file. Importing this package registers the built-ins in QUANTIZERS.

Every quantizer maps (B, S, d) float codes to a QuantizerOutput and offers ``indices_to_codes``,
``prequantize`` (the differentiable map before rounding), ``dim``, ``bits_per_token`` and
``vocab_size`` (ids per index position). Continuous codes raise NoBitRateError for the last two.
"""

from tokenizer_zoo.quantizers._checks import NoBitRateError
from tokenizer_zoo.quantizers.continuous import ContinuousQuantizer
from tokenizer_zoo.quantizers.fsq import FSQuantizer
from tokenizer_zoo.quantizers.lfq import LFQuantizer, lfq_entropy_terms
from tokenizer_zoo.quantizers.vq import VectorQuantizer

__all__ = ["ContinuousQuantizer", "FSQuantizer", "LFQuantizer", "NoBitRateError", "VectorQuantizer", "lfq_entropy_terms"]
