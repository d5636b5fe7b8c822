"""The one place where images of any kind become RGB.

Every loader of the package (datasets, embedded photos, the CLI, pipelines) goes through
:func:`open_image` for files and :func:`image_to_tensor` for in-memory images, so the rules below
hold everywhere:

* PIL images, by mode:
  ``RGB`` as is; ``1``, ``L``, ``YCbCr``, ``LAB``, ``HSV`` converted by Pillow; ``CMYK`` by
  Pillow's plain formula (embedded ICC profiles are ignored); ``RGBA``, ``LA``, ``PA``, ``RGBa``,
  ``La`` and ``P`` (with or without a transparency entry) are composited on a WHITE background;
  16-bit greyscale (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, and ``I``, the mode Pillow uses for
  16-bit PNG/TIFF data) is scaled by 1/65535; ``F`` (32-bit float) follows Pillow's own convention
  of a 0..255 scale and is clipped. Multi-frame files give their first frame; the EXIF orientation
  tag is applied.
* numpy arrays are HWC (or HW): ``uint8`` / 255, ``uint16`` / 65535, ``bool`` as 0/1, floats must
  already lie in [0, 1] (the convention of PIL and diffusers' ``output_type="np"``). 1, 2 (grey +
  alpha), 3 or 4 (RGBA) channels.
* torch tensors are CHW (or HW): ``uint8`` / 255, floats must lie in [0, 1] (diffusers' convention,
  the same as numpy's; map [-1, 1] tensors with ``(x + 1) / 2``). 1, 2, 3 or 4 channels, as for arrays.
* Batches (:func:`split_images`): a list of the above, a numpy array BHWC or a tensor BCHW.
  Pipelines return images by the same rules (:func:`from_model_output`): ``"pil"``, ``"np"``
  (B, H, W, 3) float in [0, 1], ``"pt"`` (B, 3, H, W) float in [0, 1].
* Images need both sides >= :data:`MIN_IMAGE_SIDE` (8 px). Smaller ones are rejected with
  :class:`ImageTooSmallError`; anything at least that large is accepted and later upscaled by the
  Resize of the transforms when its short side is below the training resolution.
* Empty, corrupt, truncated or non-image files raise :class:`InvalidImageError` naming the file;
  float arrays and tensors holding NaN or inf raise :class:`~tokenizer_zoo.validation.NonFiniteError`.
"""

from __future__ import annotations

import io
import os
from typing import Union

import numpy as np
import torch
from einops import rearrange, repeat
from PIL import Image, ImageOps, UnidentifiedImageError

from tokenizer_zoo.validation import check_finite_input

MIN_IMAGE_SIDE = 8
"""Images with a side shorter than this many pixels are rejected (too little content to upscale)."""

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]
PathLike = Union[str, os.PathLike]

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La", "P"}
_RANGE_TOLERANCE = 1e-3
_NON_FINITE_FIX = "replace or drop the NaN/inf pixels (images must have finite values in [0, 1])"


class InvalidImageError(ValueError):
    """A file or array that cannot be turned into an RGB image."""


class ImageTooSmallError(InvalidImageError):
    """An image with a side shorter than :data:`MIN_IMAGE_SIDE`."""


def _label(name: str | None) -> str:
    return f"image {name!s}" if name else "image"


def open_image(source: PathLike | bytes, name: str | None = None) -> Image.Image:
    """Read an image file (path or encoded bytes) fully and return it in RGB.

    Raises :class:`InvalidImageError` naming ``name`` (default: the path) when the file is
    corrupt, truncated or not an image, and :class:`ImageTooSmallError` for tiny images.
    """
    if name is None:
        name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    if (len(source) if isinstance(source, (bytes, bytearray)) else _size(source)) == 0:
        raise InvalidImageError(f"image file {name} is empty (0 bytes); re-download or remove it")
    try:
        with Image.open(stream) as image:
            image.load()  # decode now: truncated data fails here, inside the try
            image = ImageOps.exif_transpose(image)
    except FileNotFoundError as error:
        raise InvalidImageError(f"image file {name} does not exist: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise InvalidImageError(
            f"cannot read image file {name}: {type(error).__name__}: {error}. The file is corrupt, "
            "truncated or not an image; re-download or remove it."
        ) from error
    return to_rgb(image, name)


def _size(path: PathLike) -> int | None:
    try:
        return os.path.getsize(path)
    except (OSError, TypeError):  # missing files are reported by Image.open below; streams have no size here
        return None


def to_rgb(image: Image.Image, name: str | None = None) -> Image.Image:
    """Convert a PIL image of any mode to an 8-bit RGB image by the rules of this module."""
    _check_size(image.width, image.height, name)
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        grey = np.rint(_high_bit_to_unit(image) * 255.0).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")  # palette transparency becomes alpha here
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise InvalidImageError(
            f"{_label(name)} has PIL mode {image.mode!r}, which cannot be converted to RGB; "
            "convert it to an 8-bit RGB file first."
        ) from error


def _high_bit_to_unit(image: Image.Image) -> np.ndarray:
    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        raise InvalidImageError(f"a {image.mode}-mode image holds NaN or inf pixels; replace or drop them")
    scale = 255.0 if image.mode == "F" else 65535.0
    return np.clip(values / scale, 0.0, 1.0)


def image_to_tensor(image: ImageLike | PathLike, name: str | None = None) -> torch.Tensor:
    """Any supported image -> float32 tensor (3, H, W) with values in [0, 1].

    ``image`` may be a path, a PIL image, a numpy array (HWC/HW) or a tensor (CHW/HW); see the
    module docstring for the rules per type, mode and dtype.
    """
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image, name)
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, name)
        if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":  # keep the extra precision
            return repeat(torch.from_numpy(_high_bit_to_unit(image)).float(), "h w -> c h w", c=3).contiguous()
        array = np.asarray(to_rgb(image, name))
        return rearrange(torch.from_numpy(array.copy()), "h w c -> c h w").float() / 255.0
    if isinstance(image, np.ndarray):
        return _channels_to_rgb(rearrange(torch.from_numpy(_array_to_unit(image, name)), "h w c -> c h w"), name)
    if isinstance(image, torch.Tensor):
        return _channels_to_rgb(_tensor_to_unit(image, name), name)
    raise TypeError(
        f"{_label(name)}: expected a path, PIL.Image, numpy array or torch tensor, got {type(image).__name__}"
    )


def _array_to_unit(array: np.ndarray, name: str | None) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InvalidImageError(
            f"{_label(name)}: numpy images must be HW or HWC with 1-4 channels, got shape {array.shape}. "
            "Transpose CHW arrays with array.transpose(1, 2, 0); pass batches one image at a time."
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        check_finite_input(torch.from_numpy(array), "numpy images", _NON_FINITE_FIX)
        _check_range(float(array.min()), float(array.max()), 0.0, 1.0, name, "numpy float images", "[0, 1]")
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    raise InvalidImageError(f"{_label(name)}: unsupported numpy dtype {array.dtype}; use uint8, uint16 or float in [0, 1].")


def _tensor_to_unit(tensor: torch.Tensor, name: str | None) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 2, 3, 4):
        raise InvalidImageError(
            f"{_label(name)}: tensor images must be CHW or HW with 1-4 channels, got shape {tuple(tensor.shape)}. "
            "Pass batches (B, C, H, W) one image at a time."
        )
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if tensor.dtype == torch.bool:
        return tensor.float()
    if tensor.is_floating_point():
        check_finite_input(tensor, "image tensors", _NON_FINITE_FIX)
        _check_range(float(tensor.min()), float(tensor.max()), 0.0, 1.0, name, "float tensors", "[0, 1]")
        return tensor.float().clamp(0.0, 1.0)
    raise InvalidImageError(f"{_label(name)}: unsupported tensor dtype {tensor.dtype}; use uint8 or float in [0, 1].")


def _check_range(low: float, high: float, want_low: float, want_high: float, name, what: str, interval: str) -> None:
    if not want_low - _RANGE_TOLERANCE <= low <= high <= want_high + _RANGE_TOLERANCE:  # False for NaN too
        raise InvalidImageError(
            f"{_label(name)}: {what} must have finite values in {interval}, got [{low:.4g}, {high:.4g}]. "
            "Rescale the image to [0, 1]: uint8 / 255, or (x + 1) / 2 for images in [-1, 1]."
        )


def _channels_to_rgb(image: torch.Tensor, name: str | None) -> torch.Tensor:
    """(C, H, W) in [0, 1] with C in 1..4 -> (3, H, W); alpha is composited on white."""
    _check_size(image.shape[2], image.shape[1], name)
    channels = image.shape[0]
    if channels in (2, 4):
        color, alpha = image[:-1], image[-1:]
        image = color * alpha + (1.0 - alpha)
    if image.shape[0] == 1:
        image = repeat(image, "1 h w -> c h w", c=3)
    return image.float().contiguous()


def _check_size(width: int, height: int, name: str | None) -> None:
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageTooSmallError(
            f"{_label(name)} is {width}x{height} px; images need both sides >= {MIN_IMAGE_SIDE} px "
            "(smaller ones hold too little content to be upscaled). Remove it or filter the dataset."
        )


OUTPUT_TYPES = ("pil", "np", "pt")


def split_images(images: ImageLike | list | tuple) -> list[ImageLike]:
    """One image or a batch as a list of single images: a PIL image, a list/tuple of images, a numpy
    array HWC/HW (one image) or BHWC, a tensor CHW/HW (one image) or BCHW."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise TypeError("expected images, got an empty list")
        return [single for image in images for single in split_images(image)]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images.unbind(0))
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        return [images]
    raise TypeError(f"expected PIL images, numpy arrays or torch tensors, got {type(images).__name__}")


def from_model_output(images: torch.Tensor, output_type: str = "pil"):
    """Model images (B, 3, H, W) in [-1, 1] as ``output_type``: ``"pt"`` (B, 3, H, W) and ``"np"``
    (B, H, W, 3) float in [0, 1], ``"pil"`` a list of RGB images."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
    unit = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)
    if output_type == "pt":
        return unit
    array = rearrange(unit, "b c h w -> b h w c").cpu().numpy()
    if output_type == "np":
        return array
    return [Image.fromarray(np.round(image * 255).astype(np.uint8)) for image in array]
