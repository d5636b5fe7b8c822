"""diffusers pipelines around the zoo's tokenizers."""

from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline

__all__ = ["FlowMoPipeline"]
