import io

import numpy as np
import pytest
import torch
from PIL import Image

from tokenizer_zoo.data import ImageTooSmallError, InvalidImageError, image_to_tensor, open_image, to_rgb


def _pixels(tensor):
    """(3, H, W) in [0, 1] -> HWC uint8-scale floats for easy comparison."""
    return tensor.permute(1, 2, 0).numpy() * 255.0


def test_greyscale_l_becomes_equal_rgb_channels():
    image = Image.fromarray(np.full((12, 10), 100, np.uint8), mode="L")
    out = image_to_tensor(image)
    assert out.shape == (3, 12, 10) and out.dtype == torch.float32
    np.testing.assert_allclose(_pixels(out), 100.0, atol=1e-4)


def test_bilevel_and_float_modes():
    bits = Image.fromarray(np.eye(9, dtype=bool)).convert("1")
    np.testing.assert_allclose(_pixels(image_to_tensor(bits))[..., 0], np.eye(9) * 255.0, atol=1e-4)
    floats = Image.fromarray(np.full((9, 9), 51.0, np.float32), mode="F")
    np.testing.assert_allclose(_pixels(image_to_tensor(floats)), 51.0, atol=1e-3)


def test_rgba_is_composited_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4] = (255, 0, 0, 0)  # fully transparent red -> white
    rgba[4:] = (0, 0, 200, 128)  # half-transparent blue
    out = _pixels(image_to_tensor(Image.fromarray(rgba, mode="RGBA")))
    np.testing.assert_allclose(out[:4], 255.0, atol=1e-3)
    alpha = 128 / 255
    expected = np.array([0, 0, 200]) * alpha + 255 * (1 - alpha)
    np.testing.assert_allclose(out[4:], np.broadcast_to(expected, (4, 8, 3)), atol=1.0)  # Pillow rounds to 8 bit


def test_la_is_composited_on_white():
    la = np.stack([np.full((8, 8), 0, np.uint8), np.full((8, 8), 0, np.uint8)], axis=-1)
    np.testing.assert_allclose(_pixels(image_to_tensor(Image.fromarray(la, mode="LA"))), 255.0, atol=1e-3)


def test_palette_with_and_without_transparency():
    indices = np.zeros((8, 8), np.uint8)
    indices[:, 4:] = 1
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    out = _pixels(image_to_tensor(palette))
    np.testing.assert_allclose(out[:, :4], np.broadcast_to([10, 20, 30], (8, 4, 3)), atol=1e-3)
    np.testing.assert_allclose(out[:, 4:], np.broadcast_to([200, 100, 50], (8, 4, 3)), atol=1e-3)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=1)  # index 1 transparent
    out = _pixels(image_to_tensor(open_image(buffer.getvalue())))
    np.testing.assert_allclose(out[:, 4:], 255.0, atol=1e-3)
    np.testing.assert_allclose(out[:, :4], np.broadcast_to([10, 20, 30], (8, 4, 3)), atol=1e-3)


def test_16_bit_greyscale_png(tmp_path):
    values = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as reopened:
        assert reopened.mode.startswith("I")
        out = image_to_tensor(reopened)
    np.testing.assert_allclose(out[0].numpy(), values / 65535.0, atol=1e-6)
    assert torch.equal(out[0], out[2])
    eight_bit = np.asarray(open_image(path))  # file path: 8-bit RGB, same scale
    np.testing.assert_allclose(eight_bit[..., 1], values / 65535.0 * 255.0, atol=0.51)


def test_cmyk_converts_to_rgb():
    magenta = Image.new("CMYK", (9, 9), (0, 255, 0, 0))
    np.testing.assert_allclose(_pixels(image_to_tensor(magenta)), np.broadcast_to([255, 0, 255], (9, 9, 3)), atol=1e-3)
    assert to_rgb(magenta).mode == "RGB"


def test_numpy_and_tensor_inputs():
    rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    from_uint8 = image_to_tensor(rgb)
    np.testing.assert_allclose(_pixels(from_uint8), rgb, atol=1e-3)
    torch.testing.assert_close(image_to_tensor(rgb.astype(np.float32) / 255.0), from_uint8)
    unit = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0  # float tensors: [0, 1], as in diffusers
    torch.testing.assert_close(image_to_tensor(unit), from_uint8, atol=1e-6, rtol=0)
    with pytest.raises(InvalidImageError, match=r"\(x \+ 1\) / 2"):  # the [-1, 1] form is refused, with the fix
        image_to_tensor(unit * 2 - 1)
    torch.testing.assert_close(image_to_tensor(torch.from_numpy(rgb).permute(2, 0, 1)), from_uint8)
    grey = image_to_tensor(rgb[..., 0])
    assert grey.shape == (3, 10, 12) and torch.equal(grey[0], grey[1])


def test_numpy_alpha_channel_composited_on_white():
    rgba = np.zeros((8, 8, 4), np.float32)
    rgba[..., 3] = 0.25
    np.testing.assert_allclose(image_to_tensor(rgba).numpy(), 0.75, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [np.full((9, 9, 3), 1.5, np.float32), torch.full((3, 9, 9), -2.0), np.zeros((3, 9, 9, 1), np.uint8), np.zeros((9, 9, 5), np.uint8)],
)
def test_out_of_range_or_misshapen_arrays_are_rejected(bad):
    with pytest.raises(InvalidImageError):
        image_to_tensor(bad)


def test_corrupt_file_error_names_the_file(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(InvalidImageError, match="garbage.png"):
        open_image(garbage)
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good, format="PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    with pytest.raises(InvalidImageError, match="truncated.png"):
        image_to_tensor(truncated)
    with pytest.raises(InvalidImageError, match="missing.png"):
        open_image(tmp_path / "missing.png")


def test_tiny_images_are_rejected_with_their_size():
    with pytest.raises(ImageTooSmallError, match="5x20"):
        image_to_tensor(Image.new("RGB", (5, 20)))
    with pytest.raises(ImageTooSmallError):
        image_to_tensor(np.zeros((7, 30, 3), np.uint8))
    assert image_to_tensor(Image.new("RGB", (8, 8))).shape == (3, 8, 8)
