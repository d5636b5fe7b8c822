"""``mixed_precision=bf16`` on CPU: Accelerate's autocast runs the FlowMo training step in bfloat16."""

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from tokenizer_zoo.losses import FlowMatchingLoss
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.training.stage1a import Stage1AModel, draw_flow_noise


@pytest.fixture()
def fresh_accelerate_state():
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _step(mixed_precision: str):
    """Loss, gradients and the dtype of one decoder Linear's output after one forward/backward."""
    torch.manual_seed(0)
    parts = build_tokenizer("flowmo_tiny")
    loss = FlowMatchingLoss(perceptual_weight=0)
    model = Stage1AModel(parts.encoder, parts.quantizer, parts.decoder, loss)
    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision)
    model = accelerator.prepare(model)
    seen = []
    parts.decoder.image_in.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    output = model(images, draw_flow_noise(images, 0, 1, loss, seed=0, micro_step=0))
    accelerator.backward(output.loss)
    grads = {n: p.grad for n, p in parts.decoder.named_parameters()}
    AcceleratorState._reset_state(True)
    return output.loss.detach(), grads, seen[0], parts.decoder


def test_bf16_forward_backward_on_cpu(fresh_accelerate_state):
    loss32, grads32, dtype32, _ = _step("no")
    loss16, grads16, dtype16, decoder = _step("bf16")
    assert dtype32 == torch.float32 and dtype16 == torch.bfloat16  # autocast ran the Linears in bf16
    assert all(p.dtype == torch.float32 for p in decoder.parameters())  # master weights stay fp32
    assert torch.isfinite(loss16) and loss16.dtype == torch.float32
    torch.testing.assert_close(loss16, loss32, rtol=0.05, atol=0)  # bf16 keeps ~3 significant digits
    for name, grad in grads16.items():
        assert grad is not None and grad.dtype == torch.float32 and torch.isfinite(grad).all(), name
    cosine = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in grads16.values()]),
                                                   torch.cat([g.flatten() for g in grads32.values()]), dim=0)
    assert cosine > 0.99
