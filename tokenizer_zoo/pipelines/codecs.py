"""Reference codecs as zoo pipelines, for comparing tokenizers with fixed codecs at the same bits (issue 23).

    pipe = codec_pipeline("thumbnail_tiny")   # TokenizerPipeline of the parameter-free thumbnail preset
    pipe = codec_pipeline("jpeg_tiny")        # FileCodecPipeline: JPEG through Pillow at flowmo_tiny's BPP
    recon = pipe(images, output_type="pt").images

``recipes/evaluate.py --model codec:NAME`` evaluates them like any saved pipeline. A
:class:`FileCodecPipeline` encodes each image at the quality whose file comes closest to the bit budget
(every quality is tried) and reports what it reached: ``file_bits`` of its tokens are the real file sizes,
headers included. At 32 x 32 pixels a JPEG's headers alone (quantisation and Huffman tables, ~600 bits)
exceed the tiny presets' 288 bits, so the JPEG rows spend several times the budget.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import ImagePipelineOutput
from PIL import Image

from tokenizer_zoo.data.images import from_model_output
from tokenizer_zoo.data.transforms import to_model_input
from tokenizer_zoo.presets import build_tokenizer, get_preset

CODEC_PREFIX = "codec:"


@dataclass
class CodecTokens:
    """A file codec's "tokens": each image's file and the quality it was written at (no token ids)."""

    files: list[bytes]
    qualities: list[int]
    indices: None = field(default=None, init=False)

    @property
    def file_bits(self) -> list[int]:
        return [8 * len(file) for file in self.files]


# format -> (Pillow format name, the qualities tried, the other save settings: the smallest files)
FORMATS = {"jpeg": ("JPEG", range(1, 101), {"optimize": True}),
           "webp": ("WEBP", range(0, 101), {"method": 6})}


class FileCodecPipeline:
    """JPEG or WebP through Pillow with the tokenizer pipelines' ``encode`` / ``decode`` / ``__call__``.

    Each image is written at the quality (of ``FORMATS``) whose file size is closest to ``bpp`` bits a
    pixel (ties: the higher quality); ``bits_per_pixel`` is that target, not what was reached.
    """

    def __init__(self, format: str, image_size: int, bpp: float):
        if format not in FORMATS:
            raise ValueError(f"unknown file codec {format!r}; choose one of {sorted(FORMATS)}")
        self.format, self.image_size, self.bits_per_pixel = format, int(image_size), float(bpp)
        self.device = torch.device("cpu")
        self.info = {"codec": format, "target_bpp": self.bits_per_pixel}

    def to(self, device) -> FileCodecPipeline:
        self.device = torch.device(device)
        return self

    def set_progress_bar_config(self, **kwargs) -> None:
        """Nothing to show (kept for the pipelines' API)."""

    def _closest_file(self, image: Image.Image) -> tuple[bytes, int]:
        name, qualities, settings = FORMATS[self.format]
        target = self.bits_per_pixel * self.image_size**2
        best = None
        for quality in qualities:
            buffer = io.BytesIO()
            image.save(buffer, format=name, quality=quality, **settings)
            miss = abs(8 * buffer.tell() - target)
            if best is None or miss <= best[0]:
                best = (miss, buffer.getvalue(), quality)
        return best[1], best[2]

    def encode(self, images) -> CodecTokens:
        """The files of images (any input the tokenizer pipelines take, [0, 1]), resized as they resize."""
        pixels = from_model_output(to_model_input(images, self.image_size), "pil")
        files, qualities = zip(*(self._closest_file(image) for image in pixels))
        return CodecTokens(list(files), list(qualities))

    def decode(self, tokens: CodecTokens, output_type: str = "pil", return_dict: bool = True,
               **sampling) -> ImagePipelineOutput | tuple:
        """Images from the files; sampler settings of the diffusion pipelines are accepted and ignored."""
        if not isinstance(tokens, CodecTokens):
            raise TypeError(f"{type(self).__name__}.decode takes the CodecTokens of its encode(), "
                            f"not {type(tokens).__name__}")
        arrays = [np.asarray(Image.open(io.BytesIO(file)).convert("RGB"), dtype=np.float32) for file in tokens.files]
        signed = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0
        images = from_model_output(signed.to(self.device), output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def __call__(self, images, **decode_kwargs) -> ImagePipelineOutput | tuple:
        return self.decode(self.encode(images), **decode_kwargs)


def _thumbnail(preset: str):
    from tokenizer_zoo.pipelines.tokenizer import TokenizerPipeline

    parts = build_tokenizer(preset)
    pipe = TokenizerPipeline(parts.encoder, parts.quantizer, parts.decoder)
    pipe.info = {"preset": preset, "codec": "thumbnail"}
    return pipe


# name -> what builds its pipeline; each at the BPP of the FlowMo preset of the same size
CODECS = {
    "thumbnail_tiny": lambda: _thumbnail("thumbnail_tiny"),
    "jpeg_tiny": lambda: FileCodecPipeline("jpeg", 32, get_preset("flowmo_tiny").bpp),
    "webp_tiny": lambda: FileCodecPipeline("webp", 32, get_preset("flowmo_tiny").bpp),
}


def codec_pipeline(name: str):
    """The reference codec ``name`` (of :data:`CODECS`; a leading ``codec:`` is allowed)."""
    name = name.removeprefix(CODEC_PREFIX)
    if name not in CODECS:
        raise ValueError(f"unknown reference codec {name!r}; choose one of {', '.join(sorted(CODECS))}")
    return CODECS[name]()
