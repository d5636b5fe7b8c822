"""The recipes' shared loop (tokenizer_zoo.training.loop.Trainer) under gradient accumulation: micro-batches
b x accumulation k train exactly like batch b k, across epoch boundaries and a resume."""

from types import SimpleNamespace

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tokenizer_zoo.training.loop import RecipeConfig, Trainer, build_accelerator

N, SEED, LR = 10, 3, 0.1  # 10 examples: batch 2 gives 5 micro-batches an epoch, an odd count for accumulation 2
X = torch.randn(N, 3, generator=torch.Generator().manual_seed(0))
Y = X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3


class LeastSquares(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        with torch.no_grad():  # fixed weights, without touching the global seed (the sampler's seed)
            self.linear.weight.copy_(torch.randn(1, 3, generator=torch.Generator().manual_seed(1)))
            self.linear.bias.zero_()

    def forward(self, x, y):
        loss = ((self.linear(x) - y) ** 2).mean()
        return SimpleNamespace(loss=loss, logs={"loss": loss.detach()})


def train(tmp_path, name: str, batch_size: int, accumulation: int, max_steps: int) -> dict[str, torch.Tensor]:
    """Run the shared loop with plain SGD (the step is linear in the gradient, so scale errors show)."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    cfg = RecipeConfig(output_dir=str(tmp_path / name), batch_size=batch_size, gradient_accumulation_steps=accumulation,
                       max_steps=max_steps, checkpoint_every=3, log_every=1, mixed_precision="no", seed=SEED)
    accelerator = build_accelerator(tmp_path / name, "no", accumulation, SEED)
    model = LeastSquares()
    loader = DataLoader(TensorDataset(X, Y), batch_size=batch_size, shuffle=True, drop_last=True)
    trainer = Trainer(cfg, accelerator, model, torch.optim.SGD(model.parameters(), lr=LR), loader,
                      list(model.parameters()))
    run = trainer.run(lambda batch, micro: tuple(batch))
    accelerator.end_training()
    assert run.step == max_steps and not run.stopped
    return {k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()}


def by_hand(steps: int, batch_size: int = 4) -> dict[str, torch.Tensor]:
    """SGD on batches of 4 in the order of Accelerate's seedable sampler (randperm seeded by seed + epoch),
    dropping the incomplete batch of each epoch."""
    model = LeastSquares()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    per_epoch, done = N // batch_size, 0
    for epoch in range(steps):
        order = torch.randperm(N, generator=torch.Generator().manual_seed(SEED + epoch))
        for i in range(per_epoch):
            if done == steps:
                return model.state_dict()
            rows = order[i * batch_size:(i + 1) * batch_size]
            optimizer.zero_grad()
            model(X[rows], Y[rows]).loss.backward()
            optimizer.step()
            done += 1
    return model.state_dict()


def test_accumulation_equals_the_large_batch_across_epochs_and_a_resume(tmp_path):
    steps = 5  # 2 optimiser steps an epoch: crosses two epoch boundaries
    large = train(tmp_path, "batch4", batch_size=4, accumulation=1, max_steps=steps)
    accumulated = train(tmp_path, "2x2", batch_size=2, accumulation=2, max_steps=steps)
    train(tmp_path, "resumed", batch_size=2, accumulation=2, max_steps=3)  # checkpoint at step 3, mid-epoch
    resumed = train(tmp_path, "resumed", batch_size=2, accumulation=2, max_steps=steps)
    reference = by_hand(steps)
    initial = LeastSquares().state_dict()
    for name, value in reference.items():
        assert not torch.allclose(value, initial[name])  # it trained
        torch.testing.assert_close(large[name], value, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(accumulated[name], value, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(resumed[name], accumulated[name], rtol=0, atol=1e-7)


def test_accumulation_longer_than_an_epoch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="gradient_accumulation_steps=8 exceeds the 5 micro-batches"):
        train(tmp_path, "too_long", batch_size=2, accumulation=8, max_steps=1)
