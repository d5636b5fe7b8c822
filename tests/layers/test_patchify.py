import pytest
import torch

from tokenizer_zoo.layers import check_images, patchify, unpatchify


def test_patchify_shape_order_and_round_trip():
    images = torch.randn(2, 3, 8, 12)
    tokens = patchify(images, 4)
    assert tokens.shape == (2, 2 * 3, 4 * 4 * 3)
    # token 1 is the patch at grid row 0, col 1; channels ordered (ph, pw, c)
    patch = images[:, :, 0:4, 4:8]
    assert torch.equal(tokens[:, 1], patch.permute(0, 2, 3, 1).reshape(2, -1))
    assert torch.equal(unpatchify(tokens, 4, 2, 3), images)


def test_check_images_returns_grid_and_rejects_bad_input():
    assert check_images(torch.zeros(1, 3, 16, 8), 4, 3) == (4, 2)
    with pytest.raises(ValueError, match="not divisible"):
        check_images(torch.zeros(1, 3, 10, 8), 4, 3)
    with pytest.raises(ValueError, match="shape"):
        check_images(torch.zeros(3, 16, 16), 4, 3)
    with pytest.raises(ValueError, match="shape"):
        check_images(torch.zeros(1, 1, 16, 16), 4, 3)
    with pytest.raises(TypeError, match="floating"):
        check_images(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), 4, 3)
    with pytest.raises(TypeError, match="Tensor"):
        check_images([[0.0]], 4, 3)
