"""What the demo page shows for one image and one model, without any web framework: a lazily filled model
cache, the reconstruction, its BPP, PSNR and LPIPS-VGG against the input, the decode time and a zoomed crop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from tokenizer_zoo.data.images import from_model_output
from tokenizer_zoo.data.transforms import to_model_input
from tokenizer_zoo.errors import one_line
from tokenizer_zoo.evaluation.models import ModelSpec, TimedModel, load_model
from tokenizer_zoo.metrics import psnr

ZOOM_SIDE = 256  # pixels of a zoomed crop on the page


class ModelCache:
    """Models by name, loaded on first use and kept; a model that fails to load keeps its one-line reason."""

    def __init__(self, models: list[str], device: str | None = None):
        self.specs = {spec.name: spec for spec in map(ModelSpec.parse, models)}
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._loaded: dict[str, TimedModel | str] = {}

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def loaded(self, name: str) -> bool:
        """Whether ``name`` was loaded successfully."""
        return isinstance(self._loaded.get(name), TimedModel)

    def get(self, name: str) -> TimedModel:
        """The model ``name``; raises RuntimeError with the reason when it cannot be loaded."""
        if name not in self._loaded:
            try:
                pipe = load_model(self.specs[name]).to(self.device)
                pipe.set_progress_bar_config(disable=True)
                self._loaded[name] = TimedModel(pipe)
            except Exception as error:  # shown on the page instead of the reconstruction
                self._loaded[name] = f"cannot load {self.specs[name].source}: {one_line(error)}"
        model = self._loaded[name]
        if isinstance(model, str):
            raise RuntimeError(model)
        return model


@dataclass
class Scored:
    """One model's reconstruction of the page's image and its numbers."""

    name: str
    image: Image.Image
    crop: Image.Image
    bpp: float | None
    psnr: float
    lpips: float | None
    decode_seconds: float
    nfe: float

    def caption(self) -> str:
        bpp = "continuous" if self.bpp is None else f"{self.bpp:.4f} BPP"
        lpips = "n/a" if self.lpips is None else f"{self.lpips:.3f}"
        return (f"**{bpp}** · PSNR {self.psnr:.2f} dB · LPIPS {lpips} · decode {self.decode_seconds * 1e3:.1f} ms"
                f" · NFE {self.nfe:g}")


def zoom(image: Image.Image, x: float, y: float, fraction: float = 0.25) -> Image.Image:
    """The square of ``fraction`` of the side around (x, y) (fractions of the width and height), enlarged (nearest)."""
    side = max(1, round(min(image.size) * fraction))
    left = round(min(max(x * image.width - side / 2, 0), image.width - side))
    top = round(min(max(y * image.height - side / 2, 0), image.height - side))
    crop = image.crop((left, top, left + side, top + side))
    return crop.resize((ZOOM_SIDE, ZOOM_SIDE), Image.Resampling.NEAREST)


def bits_per_pixel(model: TimedModel) -> float | None:
    try:
        return model.pipe.bits_per_pixel
    except TypeError:  # continuous codes
        return None


def score(name: str, model: TimedModel, image: Image.Image, sampler: dict, seed: int, lpips,
          center: tuple[float, float]) -> Scored:
    """``model``'s reconstruction of ``image`` (resized and centre-cropped to its size, as ``pipe(image)`` does),
    decoded with the noise of ``torch.Generator().manual_seed(seed)``; ``lpips`` a network or None."""
    pixels = to_model_input(image, model.pipe.image_size).to(model.pipe.device)
    before_rows = model.decoder_rows
    generator = torch.Generator(model.pipe.device).manual_seed(seed)
    recon = model(pixels, generator, sampler).images
    distance = None if lpips is None else float(lpips(recon, pixels).flatten()[0])
    shown = from_model_output(recon, "pil")[0]
    return Scored(name, shown, zoom(shown, *center), bits_per_pixel(model), float(psnr(recon, pixels)[0]), distance,
                  model.calls[-1][2], float(model.decoder_rows - before_rows))
