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
import sys
import time
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from config import load_config  # noqa: E402

from tokenizer_zoo.layers.mmdit import MMDiTBlock  # noqa: E402
from tokenizer_zoo.layers.weight_norm import ForcedWeightNorm  # noqa: E402
from tokenizer_zoo.losses import PERCEPTUAL, FlowMatchingLoss  # noqa: E402
from tokenizer_zoo.presets import build_tokenizer  # noqa: E402
from tokenizer_zoo.training.checkpoints import resume, save_checkpoint  # noqa: E402
from tokenizer_zoo.training.loop import (RecipeConfig, accumulated_step, after_micro_step,  # noqa: E402
                                         build_accelerator, ema_weights, epoch_batches, heldout_metrics,
                                         load_recipe_data, log_metrics, save_recipe_pipeline)
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
    perceptual_weight: float = 0.1
    perceptual_net: str = "lpips_vgg"
    grid_every: int = 500


def main(argv: list[str] | None = None) -> torch.nn.Module:
    cfg = load_config(Stage1AConfig, argv, "tiny.yaml", __doc__)
    out = Path(cfg.output_dir)
    accelerator = build_accelerator(out, cfg.mixed_precision, cfg.gradient_accumulation_steps, cfg.seed)

    # --- model, loss, optimiser ---------------------------------------------------------------
    parts = build_tokenizer(cfg.preset, **cfg.preset_overrides)
    generative = getattr(parts.decoder, "is_generative", False)
    if generative:
        loss = FlowMatchingLoss(perceptual_weight=cfg.perceptual_weight, perceptual_net=cfg.perceptual_net,
                                timestep_sampler=cfg.timestep_sampler, cfg_dropout=cfg.cfg_dropout,
                                timestep_shift=cfg.timestep_shift, t1_prob=cfg.t1_prob,
                                x0_weight=cfg.x0_weight)
        model = Stage1AModel(parts.encoder, parts.quantizer, parts.decoder, loss)
    else:
        perceptual = PERCEPTUAL.build(cfg.perceptual_net) if cfg.perceptual_weight > 0 else None
        model = RegressionModel(parts.encoder, parts.quantizer, parts.decoder, perceptual, cfg.perceptual_weight)
    # forced weight normalisation of the transformer blocks; CNN models have none
    has_blocks = any(isinstance(m, MMDiTBlock) for m in model.modules())
    weight_norm = ForcedWeightNorm(model) if has_blocks else None
    encoder_params = [*parts.encoder.parameters(), *parts.quantizer.parameters()]
    optimizer = torch.optim.Adam(
        [{"params": encoder_params, "name": "encoder", "lr": cfg.lr * cfg.encoder_lr_scale},
         {"params": list(parts.decoder.parameters()), "name": "decoder"}],
        lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=0.0,
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    ema = EMAModel(trainable, decay=cfg.ema_decay)

    data = load_recipe_data(cfg, parts.preset.image_size)
    model, optimizer, loader = accelerator.prepare(model, optimizer, data.loader)
    accelerator.register_for_checkpointing(ema, *([weight_norm] if weight_norm is not None else []))
    step = resume(accelerator, out)
    if accelerator.is_main_process:
        accelerator.init_trackers(cfg.preset, config={k: str(v) for k, v in dataclasses.asdict(cfg).items()})
    measured: dict[str, float] = {}

    def report(tag: str) -> None:
        """Held-out PSNR and a grid with the EMA weights."""
        with ema_weights(ema, trainable):
            metrics = heldout_metrics(accelerator.unwrap_model(model), data.eval_images, out / "grids" / f"{tag}.png",
                                      num_inference_steps=cfg.eval_steps, seed=cfg.seed)
        accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
        measured[f"heldout_psnr_db (EMA, {len(data.eval_images)} images, {cfg.eval_steps} steps)"] = round(metrics["psnr"], 3)
        gain = ""
        if "code_gain_db" in metrics:
            measured["heldout_code_gain_db (one step at t = 1, true minus null code)"] = round(metrics["code_gain_db"], 3)
            gain = (f", one step at t = 1: {metrics['x0_psnr_code']:.2f} dB with the code, {metrics['x0_psnr_null']:.2f} dB "
                    f"without (code gain {metrics['code_gain_db']:.2f} dB)")
        accelerator.print(f"[{tag}] held-out PSNR {metrics['psnr']:.2f} dB{gain} (grid: {out / 'grids' / f'{tag}.png'})")

    if step == 0 and accelerator.is_main_process:
        report("step_00000000")

    # --- the loop -----------------------------------------------------------------------------
    progress = tqdm(total=cfg.max_steps, initial=step, desc=cfg.preset, disable=not accelerator.is_main_process)
    micro = step * cfg.gradient_accumulation_steps
    first_step, train_seconds = step, 0.0  # training throughput, held-out reports excluded
    tick = time.perf_counter()
    while step < cfg.max_steps:
        for batch in epoch_batches(accelerator, loader, step, cfg.gradient_accumulation_steps):
            images = batch["pixel_values"]
            inputs = [images]
            if generative:  # noise drawn per (seed, micro-step) for the global batch, sliced per process
                inputs.append(draw_flow_noise(images, accelerator.process_index, accelerator.num_processes, loss,
                                              seed=cfg.seed, micro_step=micro))
            output = accumulated_step(accelerator, model, optimizer, *inputs)
            micro += 1
            if not after_micro_step(accelerator, weight_norm, ema, trainable):
                continue
            step += 1
            progress.update(1)
            if cfg.encoder_freeze_step is not None and step >= cfg.encoder_freeze_step:
                optimizer.param_groups[0]["lr"] = 0.0
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                log_metrics(accelerator, output.logs, step, progress)
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                save_checkpoint(accelerator, out, step, keep=cfg.keep_checkpoints)
            if accelerator.is_main_process and (step % cfg.grid_every == 0 or step == cfg.max_steps):
                train_seconds += time.perf_counter() - tick
                report(f"step_{step:08d}")
                tick = time.perf_counter()
            if step >= cfg.max_steps:
                break
    progress.close()
    train_seconds += time.perf_counter() - tick
    images_per_step = cfg.batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes

    # --- the output: a loadable pipeline with the EMA weights ----------------------------------
    ema.copy_to(trainable)
    info = {"preset": cfg.preset, "preset_overrides": cfg.preset_overrides, "dataset": cfg.dataset,
            "steps": step, "recipe": "flowmo_1a" if generative else "train_tokenizer", "metrics": measured,
            "train_images_per_second": round((step - first_step) * images_per_step / max(train_seconds, 1e-9), 2)}
    save_recipe_pipeline(accelerator, model, out, info, cfg)
    accelerator.end_training()
    return accelerator.unwrap_model(model)


if __name__ == "__main__":
    main()
