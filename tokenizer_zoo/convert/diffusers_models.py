"""diffusers' own autoencoders -> :class:`TokenizerPipeline`, without copying diffusers' code.

    pipe = TokenizerPipeline.from_diffusers(AutoencoderKL(...))                        # a model instance
    pipe = TokenizerPipeline.from_diffusers("stabilityai/sd-vae-ft-mse")                # a Hub id (or a folder)
    pipe = TokenizerPipeline.from_diffusers("amused/amused-256", subfolder="vqvae")     # a VQModel

``AutoencoderKL`` becomes the ``diffusers_autoencoder`` encoder and decoder around a ``continuous``
quantizer with ``layer_norm=False`` (the latents pass as they are; BPP is "continuous (N floats)", never a
bit count). ``VQModel`` becomes the same encoder and decoder around the zoo's ``vq`` quantizer (l2
distance, as diffusers' VectorQuantizer) holding its codebook. Each half keeps the diffusers model's own
weights; see :mod:`tokenizer_zoo.encoders.diffusers_autoencoder`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from diffusers import ModelMixin

from tokenizer_zoo.encoders.diffusers_autoencoder import AUTOENCODER_CLASSES, HALVES, code_dim_of
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.registry import DECODERS, ENCODERS, PIPELINES, QUANTIZERS


def _load_model(name_or_path: str | os.PathLike, subfolder: str | None, **kwargs) -> ModelMixin:
    import diffusers

    where = f"{name_or_path}" + (f" (subfolder {subfolder})" if subfolder else "")
    try:
        config = diffusers.AutoencoderKL.load_config(name_or_path, subfolder=subfolder, **kwargs)
    except (OSError, ValueError, EnvironmentError) as error:
        raise ConversionError(f"{where}: no diffusers model config there ({' '.join(str(error).split())[:200]}); "
                              "give a folder or Hub id holding an AutoencoderKL or VQModel (subfolder='vae' for "
                              "a pipeline repo)") from None
    class_name = config.get("_class_name")
    if class_name not in AUTOENCODER_CLASSES:
        raise ConversionError(f"{where} holds a {class_name}; from_diffusers wraps {', '.join(AUTOENCODER_CLASSES)}")
    return getattr(diffusers, class_name).from_pretrained(name_or_path, subfolder=subfolder, **kwargs)


def _public_config(model: ModelMixin) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dict(model.config).items()
            if not key.startswith("_")}


def _square_size(sample_size: Any) -> int:
    return int(sample_size[0] if isinstance(sample_size, (list, tuple)) else sample_size)


def from_diffusers(pipeline_class: type | None, model_or_id, subfolder: str | None = None,
                   image_size: int | None = None, **load_kwargs):
    """A TokenizerPipeline wrapping ``model_or_id``: an ``AutoencoderKL`` / ``VQModel`` instance, a folder or a
    Hub id (``subfolder`` as in diffusers). ``image_size``: the side the pipeline resizes to (default: the
    model config's ``sample_size``)."""
    model = model_or_id if isinstance(model_or_id, ModelMixin) else _load_model(model_or_id, subfolder, **load_kwargs)
    class_name = type(model).__name__
    if class_name not in AUTOENCODER_CLASSES:
        raise ConversionError(f"from_diffusers wraps {', '.join(AUTOENCODER_CLASSES)}, not {class_name}")
    config = _public_config(model)
    size = image_size or _square_size(config.get("sample_size", 256))
    kwargs = dict(autoencoder_class=class_name, autoencoder_config=config, image_size=size)
    with torch.device("meta"):
        encoder = ENCODERS.build("diffusers_autoencoder", **kwargs)
        decoder = DECODERS.build("diffusers_autoencoder", **kwargs)
    for part in (encoder, decoder):
        state = {f"{name}.{key}": value for name in HALVES["encoder" if part is encoder else "decoder"]
                 if getattr(model, name, None) is not None for key, value in getattr(model, name).state_dict().items()}
        part.autoencoder.load_state_dict(state, strict=True, assign=True)
        part.eval()
    dim = code_dim_of(class_name, config)
    if class_name == "VQModel":
        quantizer = QUANTIZERS.build("vq", dim=dim, codebook_size=config["num_vq_embeddings"], distance="l2")
        quantizer.load_state_dict({"codebook": model.quantize.embedding.weight.detach().clone()})
    else:
        quantizer = QUANTIZERS.build("continuous", dim=dim, layer_norm=False)
    pipe = (pipeline_class or PIPELINES.get("TokenizerPipeline"))(encoder=encoder, quantizer=quantizer.eval(),
                                                                 decoder=decoder)
    source = model_or_id if not isinstance(model_or_id, ModelMixin) else "a model instance"
    pipe.info = {"preset": None, "source": f"diffusers {class_name} ({source}{f', {subfolder}' if subfolder else ''})",
                 "release_format": "diffusers"}
    return pipe
