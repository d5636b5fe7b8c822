"""Few-step distillation of a FlowMo decoder (recipes/flowmo_distill.py).

The teacher is a FlowMo pipeline sampling with its guided 25-step Euler sampler. The student is a
copy of its decoder with two switches on (:class:`~tokenizer_zoo.decoders.flowmo.FlowMoDecoder`):
it is told the step it takes (``step_size``) and the guidance scale one pass stands for
(``guidance``). It samples with :class:`~tokenizer_zoo.samplers.few_step.FewStepScheduler`: n Euler
jumps between teacher times. Encoder and quantizer are the teacher's, frozen.

Teacher trajectories are computed once (:func:`teacher_trajectories`): for training crops x, noise
z and a guidance scale w, the teacher's samples at every time a student step starts or ends. Two
losses use them:

* ``trajectory`` (one-round progressive distillation, as in TRACT): a student step from the
  teacher's state at t_a must land on the teacher's state at t_b; per sample a random step of a
  random trained step count; the squared error of where it lands (the sampler's clip on a last step).
* ``chain`` (stage-1B-style mode seeking): the student's whole k-step chain from z, back-propagated
  through, against a target: the teacher's 25-step sample (``chain_target="teacher"``) or the
  original image (``"image"``, as stage 1B); MSE plus ``perceptual_weight`` x a perceptual distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from tokenizer_zoo.decoders.flowmo import FlowMoDecoder
from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
from tokenizer_zoo.samplers.few_step import FewStepScheduler, student_grid
from tokenizer_zoo.samplers.random_schedule import euler_chain
from tokenizer_zoo.samplers.shifted_euler import ShiftedEulerScheduler, euler_step, shifted_schedule
from tokenizer_zoo.training.stage1a import Stage1AOutput

SWITCHES = ("step_embedder.", "guidance_embedder.")


def student_decoder(teacher: FlowMoDecoder) -> FlowMoDecoder:
    """The teacher's decoder with ``step_embed`` and ``guidance_embed`` on and the teacher's weights: it
    computes the teacher's velocity until it trains (the switches' output layers start at zero)."""
    config = {k: v for k, v in teacher.config.items() if not k.startswith("_")}
    student = FlowMoDecoder(**{**config, "step_embed": True, "guidance_embed": True})
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or not all(name.startswith(SWITCHES) for name in missing):
        raise ValueError(f"the teacher's decoder does not fit a FlowMo student: unexpected {unexpected}, "
                         f"missing {[n for n in missing if not n.startswith(SWITCHES)]}")
    return student.to(teacher.device)


def student_scheduler(teacher: FlowMoPipeline, trained_steps: list[int], default_steps: int) -> FewStepScheduler:
    """The student's sampler on a subset of the teacher's schedule (its step count and ``rho``)."""
    config = teacher.scheduler.config
    if "rho" not in config or type(teacher.scheduler) is not ShiftedEulerScheduler:
        raise ValueError(f"the teacher samples with {type(teacher.scheduler).__name__}; distillation follows "
                         f"FlowMo's ShiftedEulerScheduler (set pipe.scheduler to one and save the teacher again)")
    return FewStepScheduler(num_inference_steps=default_steps, trained_steps=list(trained_steps),
                            teacher_steps=config.num_inference_steps, rho=config.rho)


def state_indices(scheduler: FewStepScheduler) -> list[int]:
    """The teacher time indices where a trained student step starts or ends (0: the noise)."""
    config = scheduler.config
    return sorted({i for n in config.trained_steps for i in student_grid(n, config.teacher_steps)})


@dataclass
class Trajectories:
    """The teacher's samples at ``indices`` (teacher time indices) from ``noise`` for ``images`` under ``guidance``."""

    images: torch.Tensor  # (N, C, H, W) in [-1, 1]
    noise: torch.Tensor  # (N, C, H, W)
    guidance: torch.Tensor  # (N,)
    states: torch.Tensor  # (N, len(indices), C, H, W); states[:, 0] = noise, states[:, -1] = the teacher's sample

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.images, self.noise, self.guidance, self.states


@torch.no_grad()
def teacher_trajectories(teacher: FlowMoPipeline, images: torch.Tensor, noise: torch.Tensor, guidance: torch.Tensor,
                         indices: list[int], batch_size: int = 64) -> Trajectories:
    """Run the teacher's own guided sampler (:meth:`FlowMoPipeline.trajectory`, what ``decode`` runs) and
    keep its samples at ``indices``; one guidance scale per batch, batches grouped by scale."""
    steps = teacher.scheduler.config.num_inference_steps
    states = torch.empty(len(images), len(indices), *images.shape[1:], dtype=noise.dtype)
    order = torch.argsort(guidance, stable=True)
    interval = teacher.sampling_defaults["guidance_interval"]
    for scale in tqdm(guidance.unique().tolist(), desc="teacher trajectories"):
        rows = order[guidance[order] == scale]
        for batch in rows.split(batch_size):
            codes = teacher.quantizer(teacher.encoder(images[batch].to(teacher.device))).quantized
            scheduler = ShiftedEulerScheduler.from_config(teacher.scheduler.config)
            scheduler.set_timesteps(steps)
            x = noise[batch].to(teacher.device)
            path = [x, *teacher.trajectory(codes, x, scheduler, scale, interval)]
            states[batch] = torch.stack([path[i].cpu() for i in indices], dim=1)
    return Trajectories(images, noise, guidance, states)


def draw_steps(generator: torch.Generator, batch: int, trained_steps: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample a random trained step count n and a random step j < n of it: (n, j), each (batch,)."""
    counts = torch.tensor(sorted(trained_steps))[torch.randint(len(trained_steps), (batch,), generator=generator)]
    return counts, (torch.rand(batch, generator=generator, dtype=torch.float64) * counts).long()


class DistillModel(nn.Module):
    """Frozen encoder + quantizer, the student decoder and the two losses (weights 0 switch one off).

    ``forward(images, noise, guidance, states, steps)`` with ``states`` at :func:`state_indices`
    and ``steps`` = (n, j) per sample (:func:`draw_steps`); ``chain_steps``: the k of the chain loss.
    """

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, decoder: FlowMoDecoder, scheduler: FewStepScheduler,
                 pipeline_config: dict, trajectory_weight: float = 1.0, chain_weight: float = 0.0,
                 chain_target: str = "teacher", perceptual: nn.Module | None = None, perceptual_weight: float = 0.0,
                 checkpointing: bool = False):
        super().__init__()
        if chain_target not in ("teacher", "image"):
            raise ValueError(f"chain_target must be 'teacher' (its 25-step sample) or 'image', got {chain_target!r}")
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError("perceptual_weight > 0 needs a perceptual network")
        self.encoder, self.quantizer, self.decoder, self.perceptual = encoder, quantizer, decoder, perceptual
        self.scheduler, self.pipeline_config = scheduler, dict(pipeline_config)
        self.trajectory_weight, self.chain_weight = float(trajectory_weight), float(chain_weight)
        self.chain_target, self.perceptual_weight, self.checkpointing = chain_target, perceptual_weight, checkpointing
        self.indices = state_indices(scheduler)
        self.register_buffer("times", shifted_schedule(scheduler.config.teacher_steps, scheduler.config.rho).float(),
                             persistent=False)
        for frozen in (encoder, quantizer, *([perceptual] if perceptual is not None else [])):
            frozen.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        for frozen in (self.encoder, self.quantizer, self.perceptual):
            if frozen is not None:
                frozen.eval()
        return self

    def position(self, teacher_index: torch.Tensor) -> torch.Tensor:
        """Where teacher time indices sit in ``states``' second axis."""
        return torch.searchsorted(torch.tensor(self.indices, device=teacher_index.device), teacher_index)

    def trajectory_loss(self, codes, guidance, states, steps) -> torch.Tensor:
        counts, j = steps
        teacher_steps = self.scheduler.config.teacher_steps
        start, end = j * teacher_steps // counts, (j + 1) * teacher_steps // counts
        rows = torch.arange(states.shape[0], device=states.device)
        x_start = states[rows, self.position(start.to(states.device))]
        x_end = states[rows, self.position(end.to(states.device))]
        t, t_next = self.times[start.to(states.device)], self.times[end.to(states.device)]
        v = self.decoder(codes, x_start, t, step_size=t - t_next, guidance=guidance)
        landed = euler_step(x_start, v, t, t_next)
        # the sampler clips its last step (so did the teacher's): clip where the step ends at t = 0
        landed = torch.where((end == teacher_steps).to(states.device)[:, None, None, None], landed.clamp(-1, 1), landed)
        return F.mse_loss(landed.float(), x_end.float())

    def chain_loss(self, codes, images, noise, guidance, states, chain_steps: int) -> torch.Tensor:
        times = self.times[student_grid(chain_steps, self.scheduler.config.teacher_steps)]
        sample = euler_chain(self.decoder, codes, noise, times, checkpointing=self.checkpointing,
                             step_conditioned=True, guidance=guidance)
        target = states[:, -1] if self.chain_target == "teacher" else images
        loss = F.mse_loss(sample.float(), target.float())
        if self.perceptual_weight > 0:
            loss = loss + self.perceptual_weight * self.perceptual(sample, target).float().mean()
        return loss

    def forward(self, images, noise, guidance, states, steps, chain_steps: int = 1) -> Stage1AOutput:
        with torch.no_grad():
            codes = self.quantizer(self.encoder(images)).quantized
        logs, total = {}, 0.0
        if self.trajectory_weight > 0:
            logs["trajectory"] = self.trajectory_loss(codes, guidance, states, steps)
            total = total + self.trajectory_weight * logs["trajectory"]
        if self.chain_weight > 0:
            logs["chain"] = self.chain_loss(codes, images, noise, guidance, states, chain_steps)
            total = total + self.chain_weight * logs["chain"]
        logs["loss"] = total
        return Stage1AOutput(loss=total, logs={k: v.detach().float() for k, v in logs.items()})

    def to_pipeline(self) -> FlowMoPipeline:
        """The student as a pipeline sharing these modules: its few-step sampler and the teacher's guidance
        settings are the defaults of ``decode``."""
        return FlowMoPipeline(self.encoder, self.quantizer, self.decoder, self.scheduler, **self.pipeline_config)
