import pytest
import torch
from torch import nn

from tokenizer_zoo.layers import ForcedWeightNorm, MMDiTStack


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 32)
        self.stack = MMDiTStack(32, 2, 1, modulated=True, output_stream="image")


def perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p)).mul_(1.7)


def block_linears(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".blocks." in f".{n}"}


@pytest.mark.parametrize("per_row", [False, True])
def test_restores_initial_norms_of_block_weights_only(per_row):
    model = Wrapper()
    normalizer = ForcedWeightNorm(model, per_row=per_row)
    linears = block_linears(model)
    assert len(normalizer.weights) == len(linears) > 0
    before = {n: m.weight.detach().clone() for n, m in linears.items()}
    perturb(model)
    embed_weight, biases = model.embed.weight.clone(), {n: m.bias.clone() for n, m in linears.items()}
    normalizer()
    for name, module in linears.items():
        dims = dict(dim=1) if per_row else {}
        torch.testing.assert_close(module.weight.norm(**dims), before[name].norm(**dims), rtol=1e-5, atol=1e-6)
        assert torch.equal(module.bias, biases[name])
    assert torch.equal(model.embed.weight, embed_weight)


def test_state_dict_round_trip_and_mismatch():
    model = Wrapper()
    normalizer = ForcedWeightNorm(model)
    state = normalizer.state_dict()
    target = model.stack.blocks[0].code.qkv.weight.norm().item()
    perturb(model)
    resumed = ForcedWeightNorm(model)  # built on the perturbed model, as after a restart
    resumed.load_state_dict({"per_row": False,
                             "initial_norms": {f"module.{k}": v for k, v in state["initial_norms"].items()}})
    resumed()
    assert model.stack.blocks[0].code.qkv.weight.norm().item() == pytest.approx(target, rel=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        ForcedWeightNorm(model, per_row=True).load_state_dict(state)
    with pytest.raises(ValueError, match="nothing to normalise"):
        ForcedWeightNorm(nn.Linear(2, 2))
