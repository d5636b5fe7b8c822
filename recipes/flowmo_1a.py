"""Stage 1A of FlowMo: mode-matching pre-training of encoder, quantizer and decoder end to end.

The same loop trains any preset of the zoo: a diffusion decoder (FlowMo) with the flow-matching
loss, a one-pass decoder (the baselines) with MSE + perceptual loss (``preset=titok_tiny``, or
``recipes/train_tokenizer.py --preset NAME``).

    accelerate launch recipes/flowmo_1a.py                                  # tiny preset, embedded photos, CPU
    accelerate launch recipes/flowmo_1a.py --config recipes/configs/lo.yaml  # FlowMo-Lo on ImageNet, 8 GPUs

Re-running the same command resumes from the newest checkpoint in ``output_dir``. The run ends
by writing a ``FlowMoPipeline`` folder (EMA weights) to ``output_dir/pipeline``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from config import load_config  # noqa: E402

from tokenizer_zoo.errors import run_main  # noqa: E402
from tokenizer_zoo.layers.mmdit import MMDiTBlock  # noqa: E402
from tokenizer_zoo.layers.weight_norm import ForcedWeightNorm  # noqa: E402
from tokenizer_zoo.losses import PERCEPTUAL, FlowMatchingLoss  # noqa: E402
from tokenizer_zoo.presets import build_tokenizer  # noqa: E402
from tokenizer_zoo.training.loop import (RecipeConfig, Trainer, build_accelerator, heldout_metrics,  # noqa: E402
                                         load_recipe_data, save_recipe_pipeline)
from tokenizer_zoo.training.optim import adam  # noqa: E402
from tokenizer_zoo.training.phases import PhaseClock  # noqa: E402
from tokenizer_zoo.training.regression import RegressionModel  # noqa: E402
from tokenizer_zoo.training.stage1a import Stage1AModel, draw_flow_noise  # noqa: E402


@dataclasses.dataclass
class Stage1AConfig(RecipeConfig):
    preset: str = "flowmo_tiny"
    preset_overrides: dict = dataclasses.field(default_factory=dict)  # e.g. {quantizer_name: fsq, patch_size: 8}
    output_dir: str = "outputs/flowmo_1a_tiny"
    max_steps: int = 1500
    lr: float = 1e-4
    encoder_lr_scale: float = 1.0  # the encoder's (and quantizer's) learning rate is lr * encoder_lr_scale
    encoder_freeze_step: int | None = None  # the encoder's learning rate is 0 from this step on
    lr_schedule: str = "constant"  # or "cosine": linear warm-up over lr_warmup_steps, then cosine decay to 0
    lr_warmup_steps: int = 0
    perceptual_weight: float = 0.1
    perceptual_net: str = "lpips_vgg"
    perceptual_precision: str = "float32"  # "auto": bf16 LPIPS on CPUs with native bf16 (README, "The main job")
    grid_every: int = 500
    eval_at_start: bool = True  # held-out report of the untrained model at step 0


def build_model(cfg: Stage1AConfig):
    """The tokenizer of ``cfg.preset`` wrapped with its training loss: flow matching for a diffusion
    decoder, MSE + perceptual loss for a one-pass decoder. Returns (model, parts)."""
    parts = build_tokenizer(cfg.preset, **cfg.preset_overrides)
    if getattr(parts.decoder, "is_generative", False):
        loss = FlowMatchingLoss(perceptual_weight=cfg.perceptual_weight, perceptual_net=cfg.perceptual_net,
                                timestep_sampler=cfg.timestep_sampler, cfg_dropout=cfg.cfg_dropout,
                                timestep_shift=cfg.timestep_shift, t1_prob=cfg.t1_prob, x0_weight=cfg.x0_weight,
                                perceptual_precision=cfg.perceptual_precision)
        return Stage1AModel(parts.encoder, parts.quantizer, parts.decoder, loss), parts
    perceptual = PERCEPTUAL.build(cfg.perceptual_net) if cfg.perceptual_weight > 0 else None
    return RegressionModel(parts.encoder, parts.quantizer, parts.decoder, perceptual, cfg.perceptual_weight,
                           cfg.perceptual_precision), parts


def batch_inputs(model, accelerator, seed: int):
    """``inputs(batch, micro_step)`` of the loop: the images, and for flow matching the noise drawn per
    (seed, micro-step) for the global batch, sliced per process."""
    loss = getattr(model, "loss", None)

    def inputs(batch, micro: int) -> tuple:
        images = batch["pixel_values"]
        if not isinstance(model, Stage1AModel):
            return (images,)
        return images, draw_flow_noise(images, accelerator.process_index, accelerator.num_processes, loss,
                                       seed=seed, micro_step=micro)

    return inputs


def heldout_report(trainer: Trainer, images: torch.Tensor, cfg: Stage1AConfig, measured: dict, clock: PhaseClock):
    """``evaluate(step)`` of the loop: held-out PSNR and a grid with the EMA weights (main process)."""

    def evaluate(step: int) -> bool:
        with clock.timed("evaluation", before="training" if step else "set_up"):
            report(step)
        return False

    def report(step: int) -> None:
        with trainer.ema_model() as model:  # every process: under FSDP the weights are gathered
            if not trainer.accelerator.is_main_process:
                return
            grid = trainer.out / "grids" / f"step_{step:08d}.png"
            metrics = heldout_metrics(model, images, grid, cfg.eval_steps, cfg.seed)
            trainer.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
            measured[f"heldout_psnr_db (EMA, {len(images)} images, {cfg.eval_steps} steps)"] = round(metrics["psnr"], 3)
            gain = ""
            if "code_gain_db" in metrics:  # diffusion decoders: what the code is worth at t = 1
                measured["heldout_code_gain_db (one step at t = 1, true minus null code)"] = round(metrics["code_gain_db"], 3)
                gain = (f"; one step at t = 1: {metrics['x0_psnr_code']:.2f} dB with the code, "
                        f"{metrics['x0_psnr_null']:.2f} dB without, code gain {metrics['code_gain_db']:.2f} dB")
            trainer.accelerator.print(f"[step {step}] held-out PSNR {metrics['psnr']:.2f} dB{gain} (grid: {grid})")

    return evaluate


def lr_factor(cfg: Stage1AConfig, step: int) -> float:
    """The learning rate of ``step`` (0-based: the step about to be taken) over ``cfg.lr``."""
    if step < cfg.lr_warmup_steps:
        return (step + 1) / cfg.lr_warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    progress = (step - cfg.lr_warmup_steps) / max(cfg.max_steps - cfg.lr_warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def after_steps(optimizer, cfg: Stage1AConfig, clock: PhaseClock, first_step: int):
    """``after_step(step)`` of the loop: the learning rates of the next step (schedule; the encoder's is 0
    from ``encoder_freeze_step`` on); the first step of the run is timed apart (with a compiled model it
    holds the compile warm-up). The rates depend on the step only, so a resumed run follows the same ones."""
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {cfg.lr_schedule!r}")
    base = [cfg.lr * cfg.encoder_lr_scale, cfg.lr]

    def set_rates(step: int) -> dict:
        for group, lr in zip(optimizer.param_groups, base):
            group["lr"] = lr * lr_factor(cfg, step)
        if cfg.encoder_freeze_step is not None and step >= cfg.encoder_freeze_step:
            optimizer.param_groups[0]["lr"] = 0.0
        return {"lr": torch.tensor(optimizer.param_groups[1]["lr"])}

    def after_step(step: int) -> dict:
        if step == first_step + 1:
            clock.lap("first step (compile warm-up)")
        return set_rates(step)

    set_rates(first_step)
    return after_step


def main(argv: list[str] | None = None) -> torch.nn.Module:
    clock = PhaseClock()
    cfg = load_config(Stage1AConfig, argv, "tiny.yaml", __doc__)
    accelerator = build_accelerator(Path(cfg.output_dir), cfg.mixed_precision, cfg.gradient_accumulation_steps, cfg.seed)
    model, parts = build_model(cfg)
    # forced weight normalisation of the transformer blocks; CNN models have none
    weight_norm = ForcedWeightNorm(model) if any(isinstance(m, MMDiTBlock) for m in model.modules()) else None
    encoder_params = [*parts.encoder.parameters(), *parts.quantizer.parameters()]
    optimizer = adam([{"params": encoder_params, "name": "encoder", "lr": cfg.lr * cfg.encoder_lr_scale},
                      {"params": list(parts.decoder.parameters()), "name": "decoder"}],
                     lr=cfg.lr, betas=cfg.adam_betas)
    data = load_recipe_data(cfg, parts.preset.image_size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainer = Trainer(cfg, accelerator, model, optimizer, data.loader, trainable, weight_norm,
                      checkpointed=(weight_norm,) if weight_norm is not None else (), name=cfg.preset)
    measured: dict[str, float] = {}
    evaluate = heldout_report(trainer, data.eval_images, cfg, measured, clock)
    if trainer.step == 0 and cfg.eval_at_start:
        evaluate(0)
    clock.lap("set_up")
    run = trainer.run(batch_inputs(model, accelerator, cfg.seed), evaluate, cfg.grid_every,
                      after_step=after_steps(optimizer, cfg, clock, trainer.step))
    clock.lap("training")

    # --- the output: a loadable pipeline with the EMA weights ----------------------------------
    trainer.ema.copy_to(trainable)
    info = {"preset": cfg.preset, "preset_overrides": cfg.preset_overrides, "dataset": cfg.dataset,
            "steps": run.step, "recipe": "flowmo_1a" if isinstance(model, Stage1AModel) else "train_tokenizer",
            "metrics": measured, "train_images_per_second": run.samples_per_second}
    save_recipe_pipeline(accelerator, trainer.gathered(), Path(cfg.output_dir), info, cfg)
    accelerator.end_training()
    clock.lap("saving")
    if accelerator.is_main_process:
        clock.save(Path(cfg.output_dir) / "phases.json")
    return trainer.unwrapped


if __name__ == "__main__":
    sys.exit(run_main(main, "flowmo_1a.py"))
