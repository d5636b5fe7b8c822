"""diffusers pipelines around the zoo's tokenizers, and one loader for their folders."""

from tokenizer_zoo.pipelines.base import MissingPluginError
from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
from tokenizer_zoo.pipelines.loading import TOKENIZER_PIPELINES, load_pipeline, pipeline_class
from tokenizer_zoo.pipelines.maskgit import MaskGiTPipeline
from tokenizer_zoo.pipelines.tokenizer import TokenizerPipeline

__all__ = ["TOKENIZER_PIPELINES", "FlowMoPipeline", "MaskGiTPipeline", "MissingPluginError", "TokenizerPipeline",
           "load_pipeline", "pipeline_class"]
