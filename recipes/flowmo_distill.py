"""Few-step FlowMo: distil a FlowMo pipeline's guided 25-step sampler into a decoder that takes 1-8 steps.

    accelerate launch recipes/flowmo_distill.py                      # on outputs/flowmo_1a_tiny/pipeline, CPU
    accelerate launch recipes/flowmo_distill.py teacher=PATH chain_weight=1.0   # + mode seeking through the chain
    accelerate launch --multi_gpu --num_processes 8 recipes/flowmo_distill.py --config recipes/configs/lo_distill.yaml

``teacher`` names a FlowMo pipeline folder (or Hub id). Its encoder and quantizer are kept frozen, so
token files made with the teacher decode with the student. The run first computes the teacher's
guided trajectories for ``num_trajectories`` training crops (saved in ``output_dir``, reused on
resume), then trains the student decoder (tokenizer_zoo/training/distill.py) with the shared
Trainer (resume, checkpoints, EMA, DDP, ``--dynamo_backend``). Every ``eval_every`` steps the EMA
weights decode the held-out images in ``default_steps`` steps from the noise the teacher used; the
EMA weights whose samples match the teacher's 25-step samples best (PSNR) are kept. The run writes a
``FlowMoPipeline`` to ``output_dir/pipeline`` whose scheduler (``FewStepScheduler``) makes
``pipe.decode(tokens)`` take ``default_steps`` steps; ``num_inference_steps`` picks another of
``trained_steps``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from config import load_config  # noqa: E402

from tokenizer_zoo.data.transforms import signed_to_unit, unit_to_signed  # noqa: E402
from tokenizer_zoo.errors import run_main  # noqa: E402
from tokenizer_zoo.layers.weight_norm import ForcedWeightNorm  # noqa: E402
from tokenizer_zoo.losses import PERCEPTUAL  # noqa: E402
from tokenizer_zoo.metrics.psnr import psnr  # noqa: E402
from tokenizer_zoo.pipelines.loading import load_pipeline  # noqa: E402
from tokenizer_zoo.training.distill import (DistillModel, Trajectories, draw_steps, state_indices,  # noqa: E402
                                            student_decoder, student_scheduler, teacher_trajectories)
from tokenizer_zoo.training.loop import (RecipeConfig, Trainer, build_accelerator, ema_decision,  # noqa: E402
                                         load_recipe_data, reconstruct, save_best_pipeline)
from tokenizer_zoo.training.optim import adam  # noqa: E402
from tokenizer_zoo.training.reporting import save_comparison_grid  # noqa: E402
from tokenizer_zoo.training.stage1b import EarlyStopping  # noqa: E402

TRAJECTORY_FILE = "teacher_trajectories.safetensors"


@dataclasses.dataclass
class DistillConfig(RecipeConfig):
    teacher: str = "outputs/flowmo_1a_tiny/pipeline"  # a FlowMo pipeline folder or Hub id
    output_dir: str = "outputs/flowmo_distill_tiny"
    max_steps: int = 250
    batch_size: int = 16
    lr: float = 2e-4
    trained_steps: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8])
    default_steps: int = 4  # the student pipeline's num_inference_steps
    guidance_scales: list[float] = dataclasses.field(default_factory=lambda: [1.0, 1.5, 2.0])
    num_trajectories: int = 256  # training crops with one teacher trajectory each
    trajectory_weight: float = 1.0  # per-step regression onto the teacher's trajectory (0: off)
    chain_weight: float = 0.0  # mode seeking through the student's k-step chain (0: off)
    chain_steps: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4])  # k, cycled over micro-steps
    chain_target: str = "teacher"  # "teacher" (its 25-step sample from the same noise) or "image" (stage 1B's)
    perceptual_net: str = "lpips_vgg"
    perceptual_weight: float = 0.0  # of the chain loss's perceptual term
    checkpointing: bool = False  # activation checkpointing per decoder call of the chain
    eval_every: int = 100
    patience: int = 100  # evaluations without a better teacher match before stopping


def load_teacher(cfg: DistillConfig):
    """The teacher pipeline; anything but a FlowMo pipeline is refused in one line."""
    return load_pipeline(cfg.teacher, kinds=("FlowMoPipeline",))


def trajectories(cfg: DistillConfig, accelerator, teacher, images: torch.Tensor, indices: list[int]) -> Trajectories:
    """The teacher's trajectories for ``images``, computed once on the main process and saved in
    ``output_dir`` (a resumed run reads them back); noise and guidance scales come from ``cfg.seed``."""
    path = Path(cfg.output_dir) / TRAJECTORY_FILE
    recorded = {"teacher": str(cfg.teacher), "indices": str(indices), "seed": str(cfg.seed),
                "num_trajectories": str(cfg.num_trajectories), "guidance_scales": str(cfg.guidance_scales)}
    if accelerator.is_main_process and not path.is_file():
        generator = torch.Generator().manual_seed(cfg.seed)
        noise = torch.randn(images.shape, generator=generator)
        scales = torch.tensor(cfg.guidance_scales)[torch.randint(len(cfg.guidance_scales), (len(images),),
                                                                 generator=generator)]
        made = teacher_trajectories(teacher, images, noise, scales, indices)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(dict(zip(("images", "noise", "guidance", "states"), made.tensors())), path, metadata=recorded)
    accelerator.wait_for_everyone()
    with safe_open(path, "pt") as file:
        found = file.metadata() or {}
    if found != recorded:
        differ = sorted(k for k in recorded if found.get(k) != recorded[k])
        raise ValueError(f"{path} holds trajectories made with other settings ({', '.join(differ)}); use a new "
                         f"output_dir or delete the file")
    return Trajectories(**load_file(path))


def training_crops(cfg: DistillConfig, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_trajectories`` training crops (one pass over the shuffled training set) and the held-out images."""
    data = load_recipe_data(dataclasses.replace(cfg, batch_size=1), image_size)
    crops = []
    for batch in data.loader:
        crops.append(batch["pixel_values"])
        if len(crops) == cfg.num_trajectories:
            break
    if len(crops) < cfg.num_trajectories:
        raise ValueError(f"the training set has {len(crops)} images; lower num_trajectories={cfg.num_trajectories}")
    return torch.cat(crops), data.eval_images


def batch_inputs(accelerator, cfg: DistillConfig):
    """``inputs(batch, micro_step)``: the trajectory batch and, per sample, a trained step count and step,
    drawn per (seed, micro-step) for the global batch; the chain length cycles over ``chain_steps``."""

    def inputs(batch, micro: int) -> tuple:
        rows = batch[0].shape[0]
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + micro)
        counts, steps = draw_steps(generator, rows * accelerator.num_processes, cfg.trained_steps)
        mine = slice(accelerator.process_index * rows, (accelerator.process_index + 1) * rows)
        device = batch[0].device
        return (*batch, (counts[mine].to(device), steps[mine].to(device)), cfg.chain_steps[micro % len(cfg.chain_steps)])

    return inputs


def teacher_match(trainer: Trainer, stopper: EarlyStopping, images: torch.Tensor, reference: torch.Tensor,
                  cfg: DistillConfig):
    """``evaluate(step)``: the EMA student's held-out samples in ``default_steps`` steps from the teacher's
    noise; PSNR against the teacher's 25-step samples (kept: the best) and against the images."""

    def decide(step: int, model) -> bool:
        recon = reconstruct(model, images, cfg.default_steps, cfg.seed).float().cpu()
        match = psnr(recon, reference).mean().item()
        best = stopper.update(match, trainer.gathered_trainable, step)
        truth = psnr(recon, images).mean().item()
        save_comparison_grid(reference, recon, trainer.out / "grids" / f"step_{step:08d}.png")
        trainer.accelerator.log({"eval/teacher_psnr": match, "eval/psnr": truth}, step=step)
        trainer.accelerator.print(f"[step {step}] held-out, {cfg.default_steps} steps: teacher-match PSNR {match:.2f} "
                                  f"dB, PSNR {truth:.2f} dB" + (" (best)" if best else f" (best {stopper.best:.2f})"))
        return stopper.should_stop

    return ema_decision(trainer, decide)


def main(argv: list[str] | None = None) -> torch.nn.Module:
    cfg = load_config(DistillConfig, argv, "tiny_distill.yaml", __doc__)
    accelerator = build_accelerator(Path(cfg.output_dir), cfg.mixed_precision, cfg.gradient_accumulation_steps, cfg.seed)
    teacher = load_teacher(cfg)
    teacher.set_progress_bar_config(disable=True)
    scheduler = student_scheduler(teacher, cfg.trained_steps, cfg.default_steps)
    crops, eval_images = training_crops(cfg, teacher.image_size)
    made = trajectories(cfg, accelerator, teacher, crops, state_indices(scheduler))
    with torch.no_grad():  # the teacher's 25-step samples of the held-out images, from the noise evaluate uses
        reference = unit_to_signed(teacher(signed_to_unit(eval_images), generator=torch.Generator().manual_seed(cfg.seed),
                                           output_type="pt").images).float().cpu()
    decoder = student_decoder(teacher.decoder)
    perceptual = PERCEPTUAL.build(cfg.perceptual_net) if cfg.perceptual_weight > 0 else None
    model = DistillModel(teacher.encoder, teacher.quantizer, decoder, scheduler,
                         {"guidance_scale": teacher.config.guidance_scale,
                          "guidance_interval": list(teacher.config.guidance_interval)},
                         cfg.trajectory_weight, cfg.chain_weight, cfg.chain_target, perceptual, cfg.perceptual_weight,
                         cfg.checkpointing)
    trainable = list(decoder.parameters())
    optimizer = adam(trainable, lr=cfg.lr, betas=cfg.adam_betas)
    loader = DataLoader(TensorDataset(*made.tensors()), batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    weight_norm = ForcedWeightNorm(decoder)
    stopper = EarlyStopping(cfg.patience, higher_is_better=True)
    trainer = Trainer(cfg, accelerator, model, optimizer, loader, trainable, weight_norm,
                      checkpointed=(weight_norm, stopper), name="flowmo_distill")
    evaluate = teacher_match(trainer, stopper, eval_images, reference, cfg)
    stopped = evaluate(0) if trainer.step == 0 else stopper.should_stop  # step 0: the teacher's weights
    run = trainer.run(batch_inputs(accelerator, cfg), evaluate, cfg.eval_every, stopped=stopped)

    # --- the output: the best EMA weights as a few-step pipeline -------------------------------
    metric = (f"heldout_teacher_psnr_db (best EMA, {len(eval_images)} images, {cfg.default_steps} steps vs the "
              f"teacher's {teacher.scheduler.config.num_inference_steps})")
    info = {**teacher.info, "teacher": cfg.teacher, "trained_steps": sorted(cfg.trained_steps)}
    save_best_pipeline(trainer, stopper, info, run, "flowmo_distill", metric, digits=3)
    return trainer.unwrapped


if __name__ == "__main__":
    sys.exit(run_main(main, "flowmo_distill.py"))
