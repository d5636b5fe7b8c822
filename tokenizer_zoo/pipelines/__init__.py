"""diffusers pipelines around the zoo's tokenizers."""

from tokenizer_zoo.pipelines.base import MissingPluginError
from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
from tokenizer_zoo.pipelines.maskgit import MaskGiTPipeline, load_tokenizer_pipeline
from tokenizer_zoo.pipelines.tokenizer import TokenizerPipeline

__all__ = ["FlowMoPipeline", "MaskGiTPipeline", "MissingPluginError", "TokenizerPipeline", "load_tokenizer_pipeline"]
