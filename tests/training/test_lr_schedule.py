"""The 1A recipe's learning-rate schedule: closed forms, the encoder's scale and freeze, and resumption."""

import math

import pytest
import torch

from tests.recipes import load_recipe
from tokenizer_zoo.training.phases import PhaseClock

recipe = load_recipe("flowmo_1a")


def _rates(cfg, first_step: int, steps: int) -> list[tuple[float, float]]:
    """(encoder, decoder) learning rates of each step from ``first_step`` on, as the loop sets them."""
    encoder, decoder = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([{"params": [encoder]}, {"params": [decoder]}], lr=123.0)
    after_step = recipe.after_steps(optimizer, cfg, PhaseClock(), first_step)
    rates = []
    for step in range(first_step, first_step + steps):
        rates.append(tuple(group["lr"] for group in optimizer.param_groups))
        after_step(step + 1)
    return rates


def test_cosine_schedule_with_warmup_follows_its_closed_form():
    cfg = recipe.Stage1AConfig(lr=1e-3, max_steps=10, lr_schedule="cosine", lr_warmup_steps=4, encoder_lr_scale=0.5)
    expected = [1e-3 * (s + 1) / 4 for s in range(4)]
    expected += [1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 6)) for s in range(4, 10)]
    rates = _rates(cfg, 0, 10)
    assert [d for _, d in rates] == pytest.approx(expected, rel=1e-12)
    assert [e for e, _ in rates] == pytest.approx([0.5 * x for x in expected], rel=1e-12)
    assert rates[-1][1] < rates[4][1] and rates[4][1] == pytest.approx(1e-3)


def test_a_resumed_run_gets_the_rates_of_the_uninterrupted_one():
    cfg = recipe.Stage1AConfig(lr=2e-4, max_steps=12, lr_schedule="cosine", lr_warmup_steps=3, encoder_freeze_step=9)
    whole = _rates(cfg, 0, 12)
    assert _rates(cfg, 7, 5) == whole[7:]
    assert all(e == 0.0 for e, _ in whole[9:]) and whole[8][0] > 0


def test_constant_schedule_keeps_the_configured_rate():
    cfg = recipe.Stage1AConfig(lr=3e-4, max_steps=5)
    assert _rates(cfg, 0, 5) == [(3e-4, 3e-4)] * 5


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule must be"):
        _rates(recipe.Stage1AConfig(lr_schedule="linear"), 0, 1)
