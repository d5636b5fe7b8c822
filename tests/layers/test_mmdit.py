import pytest
import torch

from tokenizer_zoo.layers import MMDiTBlock, MMDiTStack, OutputHead, RotaryEmbedding, TanhGELU, flowmo_positions

H, HEADS = 64, 2  # head_dim 32


def angles(code_length=3, grid=(2, 2)):
    rope = RotaryEmbedding([4, 14, 14])
    code, image = flowmo_positions(code_length, *grid)
    return rope(code), rope(image)


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("code_output,image_output", [(True, True), (True, False), (False, True)])
def test_block_shapes(modulated, code_output, image_output):
    block = MMDiTBlock(H, HEADS, modulated=modulated, code_output=code_output, image_output=image_output)
    code, image = torch.randn(2, 3, H), torch.randn(2, 4, H)
    vec = torch.randn(2, H) if modulated else None
    code_out, image_out = block(code, image, *angles(), vec=vec)
    assert (code_out.shape if code_output else code_out) == ((2, 3, H) if code_output else None)
    assert (image_out.shape if image_output else image_out) == ((2, 4, H) if image_output else None)


def test_stream_parameter_layout():
    block = MMDiTBlock(H, HEADS, modulated=True, code_output=True, image_output=False)
    names = {n for n, _ in block.named_parameters()}
    assert "code.modulation.linear.weight" in names and "code.proj.weight" in names
    assert block.code.qkv.weight.shape == (3 * H, H) and block.code.modulation.linear.weight.shape == (6 * H, H)
    # the output-less image stream supplies keys/values only
    assert block.image.qkv.weight.shape == (2 * H, H) and block.image.modulation.linear.weight.shape == (2 * H, H)
    assert not any(n.startswith(("image.proj", "image.mlp", "image.query_norm")) for n in names)
    plain = MMDiTBlock(H, HEADS, modulated=False)
    assert not any("modulation" in n for n, _ in plain.named_parameters())


def test_modulation_presence_is_enforced():
    with pytest.raises(ValueError, match="vec"):
        MMDiTBlock(H, HEADS, modulated=False)(torch.randn(1, 3, H), torch.randn(1, 4, H), *angles(), vec=torch.randn(1, H))
    with pytest.raises(ValueError, match="vec"):
        MMDiTBlock(H, HEADS, modulated=True)(torch.randn(1, 3, H), torch.randn(1, 4, H), *angles())
    with pytest.raises(ValueError):
        MMDiTBlock(H, HEADS, code_output=False, image_output=False)


def test_zero_gates_make_a_fresh_modulated_block_the_identity():
    block = MMDiTBlock(H, HEADS, modulated=True)
    code, image = torch.randn(2, 3, H), torch.randn(2, 4, H)
    code_out, image_out = block(code, image, *angles(), vec=torch.randn(2, H))
    assert torch.equal(code_out, code) and torch.equal(image_out, image)


def test_attention_is_joint():
    block = MMDiTBlock(H, HEADS)
    code, image = torch.randn(1, 3, H), torch.randn(1, 4, H)
    code_a, _ = block(code, image, *angles())
    code_b, _ = block(code, torch.randn_like(image), *angles())
    assert not torch.allclose(code_a, code_b)


@pytest.mark.parametrize("modulated,output_stream", [(False, "code"), (True, "image")])
def test_stack_shapes_and_every_parameter_gets_a_gradient(modulated, output_stream):
    stack = MMDiTStack(H, 2, HEADS, modulated=modulated, output_stream=output_stream)
    code, image = torch.randn(2, 3, H), torch.randn(2, 4, H)
    vec = torch.randn(2, H) if modulated else None
    out = stack(code, image, (2, 2), vec)
    assert out.shape == ((2, 3, H) if output_stream == "code" else (2, 4, H))
    out.square().sum().backward()
    assert [n for n, p in stack.named_parameters() if p.grad is None] == []


def test_stack_checkpointing_gives_same_result():
    stack = MMDiTStack(H, 2, HEADS, output_stream="code")
    code, image = torch.randn(2, 3, H), torch.randn(2, 4, H)
    plain = stack(code, image, (2, 2))
    stack.gradient_checkpointing = True
    stack._gradient_checkpointing_func = lambda module, *args: torch.utils.checkpoint.checkpoint(
        module, *args, use_reentrant=False)
    torch.testing.assert_close(stack(code, image, (2, 2)), plain)


def test_stack_validation():
    with pytest.raises(ValueError, match="output_stream"):
        MMDiTStack(H, 1, HEADS, output_stream="text")
    with pytest.raises(ValueError, match="divisible"):
        MMDiTStack(H, 1, 3)
    with pytest.raises(ValueError, match="rope_axes_dims"):
        MMDiTStack(96, 1, 2)  # head_dim 48
    assert MMDiTStack(96, 1, 2, rope_axes_dims=[8, 20, 20]).rope.axes_dims == [8, 20, 20]


def test_output_head():
    plain, modulated = OutputHead(H, 5), OutputHead(H, 5, modulated=True)
    x = torch.randn(2, 4, H)
    assert plain(x).shape == (2, 4, 5) and modulated(x, torch.randn(2, H)).shape == (2, 4, 5)
    assert sum(p.numel() for p in plain.parameters()) == H * 5 + 5
    with torch.no_grad():  # zero modulation -> the head is LN + Linear, with the LayerNorm applied once
        modulated.modulation.linear.weight.zero_()
        modulated.modulation.linear.bias.zero_()
        modulated.linear.load_state_dict(plain.linear.state_dict())
    torch.testing.assert_close(modulated(x, torch.randn(2, H)), plain(x))
    with pytest.raises(ValueError, match="vec"):
        plain(x, torch.randn(2, H))


def test_tanh_gelu_is_torch_gelu_with_the_tanh_approximation():
    x = torch.cat([torch.linspace(-30, 30, 20001), torch.randn(10000) * 3, torch.tensor([0.0, 1e20, -1e20])])
    torch.testing.assert_close(TanhGELU()(x), torch.nn.functional.gelu(x, approximate="tanh"), atol=1e-6, rtol=1e-6)
    x64 = x.double()  # the identity (1 + tanh z) / 2 = sigmoid(2z) is exact: equal to double precision
    torch.testing.assert_close(TanhGELU()(x64), torch.nn.functional.gelu(x64, approximate="tanh"), atol=1e-12, rtol=1e-12)
