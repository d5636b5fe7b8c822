import torch

from tokenizer_zoo.layers import HeadRMSNorm, joint_attention, mup_attention_scale


def test_head_rms_norm_in_float32_with_learnable_scale():
    norm = HeadRMSNorm(32)
    assert [n for n, _ in norm.named_parameters()] == ["scale"] and norm.scale.shape == (32,)
    x = torch.randn(2, 4, 5, 32) * 100
    y = norm(x)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(2, 4, 5), atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        norm.scale.fill_(2.0)
    torch.testing.assert_close(norm(x), 2 * y)
    half = norm(x.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), 2 * y, atol=0.05, rtol=0.02)


def test_joint_attention_uses_mup_scale():
    assert mup_attention_scale(64) == 0.125 and mup_attention_scale(96) == 8 / 96
    q, k, v = torch.randn(2, 3, 5, 32), torch.randn(2, 3, 7, 32), torch.randn(2, 3, 7, 32)
    out = joint_attention(q, k, v, scale=8 / 32)
    weights = torch.softmax(q @ k.transpose(-1, -2) * (8 / 32), dim=-1)
    expected = (weights @ v).permute(0, 2, 1, 3).reshape(2, 5, 96)
    assert out.shape == (2, 5, 96)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
