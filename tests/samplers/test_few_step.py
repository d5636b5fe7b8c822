"""FewStepScheduler, the sampler of a few-step student, against a hand-written Euler loop."""

import pytest
import torch

from tokenizer_zoo.registry import SAMPLERS
from tokenizer_zoo.samplers import FewStepScheduler, student_grid


def field(x, t):
    return 1.5 * x + 0.7 * t.to(x.dtype)


# the 4-step student's times, written out: teacher indices 0, 6, 12, 18, 25 of t_i = ((25 - i) / 25)^4
HAND_TIMES = [1.0, (19 / 25) ** 4, (13 / 25) ** 4, (7 / 25) ** 4, 0.0]


def test_four_steps_equal_a_hand_written_euler_loop():
    scheduler = FewStepScheduler(num_inference_steps=4, trained_steps=[1, 2, 4, 8], teacher_steps=25, rho=4.0)
    scheduler.set_timesteps()
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = x
    for t in scheduler.timesteps:
        out = scheduler.step(field(out, t), t, out).prev_sample
    expected = x.double()
    for t, t_next in zip(HAND_TIMES[:-1], HAND_TIMES[1:]):
        expected = expected - (t - t_next) * field(expected, torch.tensor(t, dtype=torch.float64))
    torch.testing.assert_close(out, expected.clamp(-1, 1).float(), atol=1e-5, rtol=1e-5)
    assert scheduler.sigmas.tolist() == pytest.approx(HAND_TIMES, abs=1e-6)
    assert scheduler.step_sizes.tolist() == pytest.approx([a - b for a, b in zip(HAND_TIMES, HAND_TIMES[1:])], abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 25])
def test_student_grid_covers_the_teacher_schedule_in_equal_shares(n):
    grid = student_grid(n, 25)
    assert grid[0] == 0 and grid[-1] == 25 and len(grid) == n + 1
    assert max(b - a for a, b in zip(grid, grid[1:])) - min(b - a for a, b in zip(grid, grid[1:])) <= 1


def test_untrained_step_counts_are_refused_in_one_line():
    scheduler = FewStepScheduler(trained_steps=[1, 2, 4])
    with pytest.raises(ValueError, match=r"trained for num_inference_steps in \[1, 2, 4\], not 3"):
        scheduler.set_timesteps(3)
    with pytest.raises(ValueError, match="must be one of trained_steps"):
        FewStepScheduler(num_inference_steps=8, trained_steps=[1, 2, 4])
    with pytest.raises(ValueError, match="between 1 and teacher_steps"):
        FewStepScheduler(num_inference_steps=1, trained_steps=[1, 30], teacher_steps=25)


def test_registered_and_config_round_trips(tmp_path):
    assert SAMPLERS.get("few_step") is FewStepScheduler
    FewStepScheduler(num_inference_steps=2, trained_steps=[1, 2], rho=3.0).save_config(tmp_path)
    loaded = FewStepScheduler.from_pretrained(tmp_path)
    assert loaded.config.num_inference_steps == 2 and list(loaded.config.trained_steps) == [1, 2]
    assert len(loaded.timesteps) == 2 and loaded.sigmas[1].item() == pytest.approx((13 / 25) ** 3)
