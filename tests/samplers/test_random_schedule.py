import pytest
import torch

from tests.pipelines.conftest import tiny_pipeline
from tokenizer_zoo.samplers import ShiftedEulerScheduler, euler_chain, random_schedule, shifted_schedule


@pytest.mark.parametrize("num_steps", [1, 2, 8, 25])
def test_random_schedules_decrease_strictly_from_one_to_zero(num_steps):
    times = random_schedule(4000, num_steps, generator=torch.Generator().manual_seed(num_steps))
    assert times.shape == (4000, num_steps + 1) and times.dtype == torch.float64
    assert (times[:, 0] == 1).all() and (times[:, -1] == 0).all()
    assert (times[:, 1:] < times[:, :-1]).all()
    if num_steps > 1:  # really random per sample, not one shared schedule
        assert times[:, num_steps // 2].std() > 0.05


def test_random_schedule_rejects_empty_chains():
    with pytest.raises(ValueError, match="num_steps >= 1"):
        random_schedule(2, 0)


@pytest.fixture(scope="module")
def setup():
    from tokenizer_zoo.data import EmbeddedPhotos

    pipe = tiny_pipeline()
    images = torch.stack([EmbeddedPhotos("eval", image_size=32)[i]["pixel_values"] for i in range(3)])
    return pipe, pipe.encode((images + 1) / 2).codes


@pytest.mark.parametrize("checkpointing", [True, False])
def test_chain_on_the_shifted_schedule_is_the_pipeline_sampler(setup, checkpointing):
    """Same noise, same times, no guidance: the training chain gives the pipeline's sample."""
    pipe, codes = setup
    n = 5
    expected = pipe.decode(codes, num_inference_steps=n, rho=4.0, guidance_scale=1.0,
                           generator=torch.Generator().manual_seed(7), output_type="pt").images * 2 - 1
    noise = torch.randn(expected.shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        sample = euler_chain(pipe.decoder, codes, noise, shifted_schedule(n, 4.0), checkpointing=checkpointing)
    torch.testing.assert_close(sample.clamp(-1, 1), expected, atol=1e-6, rtol=0)


def test_random_per_sample_chain_is_the_scheduler_step_by_step(setup):
    """Each row of a random-schedule chain equals ShiftedEulerScheduler.step driven with that row's times."""
    pipe, codes = setup
    times = random_schedule(codes.shape[0], 8, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(codes.shape[0], 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        batch = euler_chain(pipe.decoder, codes, noise, times)
        for row in range(codes.shape[0]):
            scheduler = ShiftedEulerScheduler(num_inference_steps=8, clip_sample=False)
            scheduler.sigmas = times[row].float()  # the scheduler's own step, on this row's times
            x = noise[row : row + 1]
            for t in scheduler.sigmas[:-1]:
                x = scheduler.step(pipe.decoder(codes[row : row + 1], x, t.expand(1)), t, x).prev_sample
            torch.testing.assert_close(batch[row : row + 1], x, atol=1e-6, rtol=0)


def test_gradients_with_and_without_checkpointing_agree(setup):
    pipe, codes = setup
    times = random_schedule(codes.shape[0], 4, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(codes.shape[0], 3, 32, 32, generator=torch.Generator().manual_seed(4))
    target = torch.rand_like(noise) * 2 - 1
    grads = []
    for checkpointing in (True, False):
        pipe.decoder.zero_grad(set_to_none=True)
        sample = euler_chain(pipe.decoder, codes, noise, times, checkpointing=checkpointing)
        (sample - target).square().mean().backward()
        grads.append({name: p.grad.clone() for name, p in pipe.decoder.named_parameters() if p.grad is not None})
    pipe.decoder.zero_grad(set_to_none=True)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5, msg=name)
