"""tokenizer-zoo-vqtorch: vector-quantize-pytorch's quantizers as tokenizer-zoo plugins (see quantizers.py)."""

from tokenizer_zoo_vqtorch.base import VQTorchQuantizer
from tokenizer_zoo_vqtorch.quantizers import (VQTorchGroupedResidualVQ, VQTorchResidualFSQ, VQTorchResidualLFQ,
                                              VQTorchResidualVQ, VQTorchSimVQ, VQTorchVectorQuantize)

__all__ = ["VQTorchGroupedResidualVQ", "VQTorchQuantizer", "VQTorchResidualFSQ", "VQTorchResidualLFQ",
           "VQTorchResidualVQ", "VQTorchSimVQ", "VQTorchVectorQuantize"]
