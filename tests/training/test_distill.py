"""Few-step students (tokenizer_zoo/training/distill.py): the decoder switches, the student pipeline's
sampling, saving and loading, and the distillation losses against hand-computed values."""

import pytest
import torch

from tests.pipelines.conftest import images, tiny_pipeline  # noqa: F401  (images: a fixture)
from tokenizer_zoo.decoders.flowmo import FlowMoDecoder
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.tokens import load_tokens, save_tokens
from tokenizer_zoo.training.distill import (DistillModel, state_indices, student_decoder, student_scheduler,
                                            teacher_trajectories)


@pytest.fixture(scope="module")
def teacher():
    return tiny_pipeline()


def _perturbed_student(teacher) -> FlowMoDecoder:
    student = student_decoder(teacher.decoder)
    with torch.no_grad():  # trained switches: every weight non-zero
        for name, p in student.named_parameters():
            if name.startswith(("step_embedder", "guidance_embedder")):
                p.add_(torch.randn_like(p) * 0.05)
    return student


def _inputs(batch=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 16, 18, generator=g), torch.randn(batch, 3, 32, 32, generator=g), torch.rand(batch, generator=g)


def test_a_new_student_is_its_teacher_and_neutral_inputs_are_the_plain_decoder(teacher):
    codes, x, t = _inputs()
    with torch.no_grad():
        v_teacher = teacher.decoder(codes, x, t)
        fresh = student_decoder(teacher.decoder)
        torch.testing.assert_close(fresh(codes, x, t, step_size=0.4, guidance=2.0), v_teacher, atol=0, rtol=0)
        student = _perturbed_student(teacher)
        plain = student(codes, x, t)
        # guidance scale 1 and step size 0 are the decoder without those inputs, whatever the switches learned
        torch.testing.assert_close(student(codes, x, t, guidance=1.0), plain, atol=1e-6, rtol=0)
        torch.testing.assert_close(student(codes, x, t, step_size=torch.zeros(3), guidance=torch.ones(3)), plain,
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(plain, v_teacher, atol=1e-6, rtol=0)  # the teacher's own input handling
        assert not torch.allclose(student(codes, x, t, guidance=2.0), plain, atol=1e-4)
        assert not torch.allclose(student(codes, x, t, step_size=0.5), plain, atol=1e-4)
    with pytest.raises(ValueError, match="takes no guidance"):
        teacher.decoder(codes, x, t, guidance=1.5)


def test_student_pipeline_decodes_in_its_few_steps_one_pass_each_and_round_trips(teacher, images, tmp_path):
    student = FlowMoPipeline(teacher.encoder, teacher.quantizer, _perturbed_student(teacher),
                             student_scheduler(teacher, [1, 2, 4], 4), guidance_scale=1.5)
    student.set_progress_bar_config(disable=True)
    tokens = teacher.encode(images)
    noise = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    calls = []
    hook = student.decoder.register_forward_hook(lambda module, args, kwargs, out: calls.append(kwargs), with_kwargs=True)
    out = student.decode(tokens, latents=noise, output_type="pt").images
    hook.remove()
    assert len(calls) == 4 and all(c["guidance"] == 1.5 for c in calls)  # 4 NFE, guidance in the pass
    times = [1.0, (19 / 25) ** 4, (13 / 25) ** 4, (7 / 25) ** 4, 0.0]
    x = noise
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:]):
            v = student.decoder(tokens.codes, x, torch.full((3,), t), step_size=t - t_next, guidance=1.5)
            x = x - (t - t_next) * v
    torch.testing.assert_close(out, (x.clamp(-1, 1) + 1) / 2, atol=1e-5, rtol=0)

    student.save_pretrained(tmp_path / "student")
    save_tokens(tmp_path / "tokens.safetensors", tokens.indices, teacher, teacher.image_size)  # made by the teacher
    loaded = FlowMoPipeline.from_pretrained(tmp_path / "student")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.decoder.config.step_embed and loaded.sampling_defaults["num_inference_steps"] == 4
    file = load_tokens(tmp_path / "tokens.safetensors", expect=loaded)
    torch.testing.assert_close(loaded.decode(file.indices, latents=noise, output_type="pt").images, out,
                               atol=1e-6, rtol=0)
    one = loaded.decode(file.indices, latents=noise, num_inference_steps=1, output_type="pt").images
    assert not torch.allclose(one, out)
    with pytest.raises(ValueError, match="trained for num_inference_steps in"):
        loaded.decode(file.indices, num_inference_steps=25)
    teacher.save_pretrained(tmp_path / "teacher")  # a teacher's folder still loads as it was: no switches
    teacher_again = FlowMoPipeline.from_pretrained(tmp_path / "teacher").decoder
    assert teacher_again.step_embedder is None and teacher_again.guidance_embedder is None
    assert teacher_again.state_dict().keys() == teacher.decoder.state_dict().keys()


def test_trajectories_are_the_teachers_decode_and_the_losses_match_hand_computation(teacher, images):
    scheduler = student_scheduler(teacher, [1, 2], 2)
    indices = state_indices(scheduler)
    assert indices == [0, 12, 25]
    pixels = images * 2 - 1
    noise = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    made = teacher_trajectories(teacher, pixels, noise, torch.tensor([1.5, 1.0, 1.5]), indices)
    for row, scale in enumerate([1.5, 1.0, 1.5]):
        decoded = teacher.decode(teacher.encode(images[row:row + 1]), latents=noise[row:row + 1], guidance_scale=scale,
                                 output_type="pt").images
        torch.testing.assert_close((made.states[row, -1:] + 1) / 2, decoded, atol=1e-5, rtol=0)
    torch.testing.assert_close(made.states[:, 0], noise)

    student = _perturbed_student(teacher)
    model = DistillModel(teacher.encoder, teacher.quantizer, student, scheduler, {}, trajectory_weight=1.0,
                         chain_weight=1.0)
    steps = (torch.tensor([1, 2, 2]), torch.tensor([0, 0, 1]))  # (n, j): [1 -> 0], [1 -> t_12], [t_12 -> 0]
    out = model(pixels, noise, made.guidance, made.states, steps, chain_steps=2)
    codes = teacher.quantizer(teacher.encoder(pixels)).quantized
    t12 = (13 / 25) ** 4
    starts, ends = torch.tensor([1.0, 1.0, t12]), torch.tensor([0.0, t12, 0.0])
    with torch.no_grad():
        x_start = torch.stack([made.states[0, 0], made.states[1, 0], made.states[2, 1]])
        target = torch.stack([made.states[0, 2], made.states[1, 1], made.states[2, 2]])
        v = student(codes, x_start, starts, step_size=starts - ends, guidance=made.guidance)
        landed = x_start - (starts - ends)[:, None, None, None] * v
        landed[[0, 2]] = landed[[0, 2]].clamp(-1, 1)
        x = noise
        for t, t_next in ((1.0, t12), (t12, 0.0)):
            x = x - (t - t_next) * student(codes, x, torch.full((3,), t), step_size=t - t_next, guidance=made.guidance)
    assert out.logs["trajectory"].item() == pytest.approx((landed - target).square().mean().item(), rel=1e-4)
    assert out.logs["chain"].item() == pytest.approx((x - made.states[:, -1]).square().mean().item(), rel=1e-4)
    out.loss.backward()
    assert all(p.grad is None for p in teacher.encoder.parameters())
