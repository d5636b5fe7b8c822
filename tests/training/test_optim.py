"""The recipes' fused Adam takes the same steps as torch's reference (for-loop) Adam and AdamW."""

import pytest
import torch

from tokenizer_zoo.training.optim import adam, fused_supported


def _run(optimizer_of, steps=3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.GELU(), torch.nn.Linear(7, 2))
    optimizer = optimizer_of([{"params": model[0].parameters(), "lr": 3e-3}, {"params": model[2].parameters()}])
    for step in range(steps):
        x = torch.randn(4, 5, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_adam_takes_the_reference_steps(decoupled):
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    ours, optimizer = _run(lambda groups: adam(groups, decoupled=decoupled, **kwargs))
    assert all(group["fused"] for group in optimizer.param_groups)
    reference_class = torch.optim.AdamW if decoupled else torch.optim.Adam
    reference, _ = _run(lambda groups: reference_class(groups, foreach=False, **kwargs))
    for mine, theirs in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_fused_state_resumes_in_the_reference_optimizer():
    _, fused = _run(lambda groups: adam(groups, lr=1e-2, betas=(0.9, 0.95)))
    model, plain = _run(lambda groups: torch.optim.Adam(groups, lr=1e-2, betas=(0.9, 0.95), foreach=False), steps=1)
    plain.load_state_dict(fused.state_dict())
    assert [s["step"].item() for s in plain.state.values()] == [3.0] * 4


def test_fused_only_where_torch_supports_it():
    assert fused_supported([torch.nn.Parameter(torch.zeros(2))])
    assert not fused_supported([torch.nn.Parameter(torch.zeros(2, device="meta"))])
    assert not fused_supported([torch.nn.Parameter(torch.zeros(2, dtype=torch.int64), requires_grad=False)])
    assert not fused_supported([])
    plain = adam([torch.nn.Parameter(torch.zeros(2, device="meta"))], lr=1e-3, betas=(0.9, 0.95))
    assert not plain.param_groups[0]["fused"]
