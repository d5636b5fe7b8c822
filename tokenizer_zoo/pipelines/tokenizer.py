"""TokenizerPipeline: the FlowMoPipeline API for tokenizers whose decoder maps codes to images in
one pass (``decoder.is_generative = False``), such as the baselines of the zoo."""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput

from tokenizer_zoo.data.images import from_model_output
from tokenizer_zoo.pipelines.arguments import check_arguments
from tokenizer_zoo.pipelines.base import TokenizerPipelineMixin
from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
from tokenizer_zoo.pipelines.hub import push_to_hub
from tokenizer_zoo.registry import PIPELINES


@PIPELINES.register("TokenizerPipeline")
class TokenizerPipeline(TokenizerPipelineMixin, DiffusionPipeline):
    """Encoder, quantizer and a one-pass decoder: ``encode`` / ``decode`` / ``__call__``."""

    model_cpu_offload_seq = "encoder->decoder"

    def __init__(self, encoder, quantizer, decoder):
        super().__init__()
        if getattr(decoder, "is_generative", False):
            raise TypeError(f"{type(decoder).__name__} is a generative (diffusion) decoder: use FlowMoPipeline")
        self.register_modules(encoder=encoder, quantizer=quantizer, decoder=decoder)
        self.info = {}

    @check_arguments(FlowMoPipeline.decode)
    @torch.no_grad()
    def decode(self, tokens, output_type: str = "pil", return_dict: bool = True,
               **sampling) -> ImagePipelineOutput | tuple:
        """Images from tokens (EncodeOutput, integer indices or float codes). The sampler settings of
        ``FlowMoPipeline.decode`` (``num_inference_steps``, ``generator``, ...) are accepted and ignored,
        so code written for FlowMoPipeline runs; other names are a TypeError."""
        images = from_model_output(self.decoder(self._codes(tokens)), output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @check_arguments(decode)
    def __call__(self, images, **decode_kwargs) -> ImagePipelineOutput | tuple:
        return self.decode(self.encode(images), **decode_kwargs)

    @classmethod
    def from_diffusers(cls, model_or_id, subfolder: str | None = None, image_size: int | None = None,
                       **kwargs) -> "TokenizerPipeline":
        """diffusers' own ``AutoencoderKL`` or ``VQModel`` (an instance, a folder or a Hub id) as a zoo tokenizer;
        see :mod:`tokenizer_zoo.convert.diffusers_models`. ``kwargs`` go to diffusers' ``from_pretrained``."""
        from tokenizer_zoo.convert.diffusers_models import from_diffusers

        return from_diffusers(cls, model_or_id, subfolder=subfolder, image_size=image_size, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        return push_to_hub(self, repo_id, **kwargs)
