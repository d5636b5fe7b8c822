"""The models of a comparison: what a MODEL argument names (:data:`MODEL_HELP`), how it is loaded, and one
timed reconstruction."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from tokenizer_zoo.convert import load_release
from tokenizer_zoo.data.transforms import signed_to_unit, unit_to_signed
from tokenizer_zoo.pipelines import MaskGiTPipeline, load_pipeline
from tokenizer_zoo.pipelines.codecs import CODEC_PREFIX, codec_pipeline

RELEASE_OPTIONS = ("config", "format", "weights")
FILE_CODEC = "file codec"  # the sampler of a row whose model writes files (JPEG, WebP) instead of tokens
MODEL_HELP = """\
A MODEL is [NAME=]SOURCE[,config=FILE][,format=F][,weights=ema|raw].
  SOURCE  a zoo pipeline folder or Hub id (a MaskGiT pipeline stands for its tokenizer), or a published
          release that tokenizer_zoo.convert.load_release converts on the fly: a checkpoint file, a folder
          without model_index.json, or a release name such as flowmo_lo or llamagen_vq8 (a Hub id of a
          release, not a zoo pipeline, needs one of the options, e.g. ,format=F)
          codec:NAME is a parameter-free reference codec: codec:thumbnail_tiny, codec:jpeg_tiny, codec:webp_tiny
  NAME    labels the model's row, plot point and grid row (default: the folder or file name)
  config, format, weights   go to load_release: the release's yaml or config.json, its format where it
          cannot be detected, its EMA or raw weights"""


class ModelArgumentError(ValueError):
    """A MODEL argument that cannot be parsed."""


@dataclass(frozen=True)
class ModelSpec:
    """One parsed MODEL argument."""

    name: str
    source: str
    options: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        head, *extras = text.split(",")
        options = {}
        for extra in extras:
            key, sep, value = extra.partition("=")
            if not sep or key not in RELEASE_OPTIONS or not value:
                raise ModelArgumentError(f"{text!r}: {extra!r} is not one of {', '.join(o + '=...' for o in RELEASE_OPTIONS)}"
                                         " (write MODEL as [NAME=]SOURCE[,config=FILE][,format=F][,weights=W])")
            options[key] = value
        name, sep, source = head.partition("=")
        if not sep or "/" in name or Path(head).exists():
            name, source = "", head
        if not source:
            raise ModelArgumentError(f"{text!r} names no model: give a pipeline folder, Hub id or release file")
        return cls(name or Path(source.rstrip("/")).name or source, source, options)

    @property
    def is_zoo_pipeline(self) -> bool:
        """A folder with ``model_index.json``; or, given without release options, a Hub id or a missing folder
        (whose error then says so). Files, other folders and bare release names (``flowmo_lo``) are releases."""
        path = Path(self.source)
        if path.is_dir():
            return (path / "model_index.json").is_file()
        return not self.options and not path.exists() and "/" in self.source and not path.suffix


def load_model(spec: ModelSpec):
    """The tokenizer pipeline (FlowMoPipeline or TokenizerPipeline) that ``spec`` names; ``codec:NAME`` a
    parameter-free reference codec of tokenizer_zoo.pipelines.codecs (the thumbnail presets)."""
    if spec.source.startswith(CODEC_PREFIX):
        return codec_pipeline(spec.source)
    if spec.is_zoo_pipeline:
        pipe = load_pipeline(spec.source)
        return pipe.tokenizer if isinstance(pipe, MaskGiTPipeline) else pipe
    return load_release(spec.source, format=spec.options.get("format"), config=spec.options.get("config"),
                        weights=spec.options.get("weights", "ema"))


def parameter_counts(pipe) -> tuple[int, int]:
    """Parameters of the encoder side (encoder and quantizer) and of the decoder; (0, 0) for a file codec."""
    def count(*names: str) -> int:
        return sum(p.numel() for name in names if (module := getattr(pipe, name, None)) is not None
                   for p in module.parameters())

    return count("encoder", "quantizer"), count("decoder")


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square images (B, 3, s, s) in [-1, 1] -> (B, 3, size, size): bicubic, antialiased, clipped (the data's resize)."""
    if images.shape[-1] == size:
        return images
    unit = TF.resize(signed_to_unit(images), [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return unit_to_signed(unit.clamp(0.0, 1.0))


@dataclass
class Reconstruction:
    images: torch.Tensor  # (B, 3, R, R) in [-1, 1] at the compared resolution
    encoded: object  # what the pipeline's encode returned: token ids (None for continuous codes) or a codec's files


class TimedModel:
    """A pipeline that reconstructs batches at the compared resolution and keeps its own account: per call
    (images, encode seconds, decode seconds) in ``calls``, and decoder evaluations (NFE) counted by a hook.
    A file codec (JPEG, WebP) has no decoder network: no NFE, and no tokens (its files are its code)."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.calls: list[tuple[int, float, float]] = []
        self.decoder_rows = 0
        self.tokens = None  # tokens per image, seen at the first batch
        self.decoder = getattr(pipe, "decoder", None)
        if self.decoder is not None:
            self.decoder.register_forward_pre_hook(self._count, with_kwargs=True)

    @property
    def images(self) -> int:
        return sum(call[0] for call in self.calls)

    def timing(self) -> tuple[int, float, float]:
        """(images, encode seconds, decode seconds) of every call after the first, which warms up (lazy
        initialisation, first-call kernels); of the first call when it was the only one."""
        timed = self.calls[1:] or self.calls
        return sum(c[0] for c in timed), sum(c[1] for c in timed), sum(c[2] for c in timed)

    def _count(self, module, args, kwargs) -> None:
        codes = args[0] if args else kwargs["codes"]
        self.decoder_rows += codes.shape[0]

    def _timed(self, call):
        if self.pipe.device.type == "cuda":
            torch.cuda.synchronize(self.pipe.device)
        start = time.perf_counter()
        result = call()
        if self.pipe.device.type == "cuda":
            torch.cuda.synchronize(self.pipe.device)
        return result, time.perf_counter() - start

    def __call__(self, images: torch.Tensor, generator: torch.Generator, sampler: dict) -> Reconstruction:
        """``images`` (B, 3, R, R) in [-1, 1]: encoded at the model's size, decoded, resized back to R."""
        encoded, encode_seconds = self._timed(lambda: self.pipe.encode(signed_to_unit(images)))
        self.tokens = encoded.codes.shape[1] if self.decoder is not None else None
        settings = sampler if self.is_diffusion else {}
        decoded, decode_seconds = self._timed(lambda: self.pipe.decode(encoded, generator=generator, output_type="pt",
                                                                       **settings).images)
        self.calls.append((len(images), encode_seconds, decode_seconds))
        recon = resize_square(unit_to_signed(decoded).to(images.dtype), images.shape[-1])
        return Reconstruction(recon, encoded)

    @property
    def is_diffusion(self) -> bool:
        return bool(getattr(self.decoder, "is_generative", False))

    @property
    def sampler(self) -> str | None:
        """How it decodes, for a row: "one pass", "file codec", or None for a diffusion decoder's settings."""
        return None if self.is_diffusion else "one pass" if self.decoder is not None else FILE_CODEC

    @property
    def bits_per_token(self) -> float | None:
        """None for continuous codes and for file codecs."""
        try:
            return float(self.pipe.quantizer.bits_per_token)
        except (TypeError, AttributeError):
            return None
