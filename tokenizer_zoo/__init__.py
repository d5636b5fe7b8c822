"""tokenizer-zoo: image tokenizers (FlowMo and baselines) built from interchangeable parts."""

from tokenizer_zoo.outputs import EncodeOutput, QuantizerOutput
from tokenizer_zoo.registry import DECODERS, ENCODERS, QUANTIZERS, SAMPLERS, Registry

__version__ = "0.1.0"

__all__ = ["DECODERS", "ENCODERS", "QUANTIZERS", "SAMPLERS", "EncodeOutput", "QuantizerOutput", "Registry", "__version__"]
