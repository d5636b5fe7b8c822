"""Stage 1A of FlowMo: mode-matching pre-training of encoder, quantizer and decoder end to end.

    accelerate launch recipes/flowmo_1a.py                                  # tiny preset, embedded photos, CPU
    accelerate launch recipes/flowmo_1a.py --config recipes/configs/lo.yaml  # FlowMo-Lo on ImageNet, 8 GPUs

Re-running the same command resumes from the newest checkpoint in ``output_dir``. The run ends
by writing a ``FlowMoPipeline`` folder (EMA weights) to ``output_dir/pipeline``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from config import load_config  # noqa: E402

from tokenizer_zoo.data import load_image_dataset  # noqa: E402
from tokenizer_zoo.layers.weight_norm import ForcedWeightNorm  # noqa: E402
from tokenizer_zoo.losses import FlowMatchingLoss  # noqa: E402
from tokenizer_zoo.presets import build_tokenizer  # noqa: E402
from tokenizer_zoo.training.checkpoints import resume, save_checkpoint  # noqa: E402
from tokenizer_zoo.training.reporting import evaluate_reconstructions, resolve_mixed_precision  # noqa: E402
from tokenizer_zoo.training.stage1a import Stage1AModel, draw_flow_noise  # noqa: E402


@dataclasses.dataclass
class Stage1AConfig:
    preset: str = "flowmo_tiny"
    preset_overrides: dict = dataclasses.field(default_factory=dict)  # e.g. {quantizer: fsq, patch_size: 8}
    dataset: str = "embedded"  # "embedded", "imagefolder:PATH" or a Hub dataset id
    dataset_split: str = "train"
    eval_dataset: str = "embedded"
    eval_split: str = "validation"
    image_column: str | None = None
    output_dir: str = "outputs/flowmo_1a_tiny"
    seed: int = 0
    max_steps: int = 1500
    batch_size: int = 16  # per process, per micro-step
    gradient_accumulation_steps: int = 1
    num_workers: int = 0
    lr: float = 1e-4
    adam_betas: tuple = (0.9, 0.95)
    encoder_freeze_step: int | None = None  # the encoder's learning rate is 0 from this step on
    ema_decay: float = 0.9999
    timestep_sampler: str = "thick_tailed_logit_normal"
    cfg_dropout: float = 0.1
    perceptual_weight: float = 0.1
    perceptual_net: str = "lpips_vgg"
    mixed_precision: str = "auto"  # "auto" = bf16 on GPUs that support it, else fp32
    log_every: int = 25
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    grid_every: int = 500
    eval_images: int = 16
    eval_steps: int = 25  # sampler steps for the held-out grid and PSNR


def main(argv: list[str] | None = None) -> torch.nn.Module:
    cfg = load_config(Stage1AConfig, argv, "tiny.yaml", __doc__)
    out = Path(cfg.output_dir)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(cfg.seed)  # identical initial weights on every process
    if accelerator.device.type == "cpu" and accelerator.num_processes == 1:
        # `accelerate launch` without a GPU sets OMP_NUM_THREADS=1; one CPU process should use every core
        torch.set_num_threads(len(os.sched_getaffinity(0)))

    # --- model, loss, optimiser ---------------------------------------------------------------
    parts = build_tokenizer(cfg.preset, **cfg.preset_overrides)
    loss = FlowMatchingLoss(perceptual_weight=cfg.perceptual_weight, perceptual_net=cfg.perceptual_net,
                            timestep_sampler=cfg.timestep_sampler, cfg_dropout=cfg.cfg_dropout)
    model = Stage1AModel(parts.encoder, parts.quantizer, parts.decoder, loss)
    weight_norm = ForcedWeightNorm(model)
    encoder_params = [*parts.encoder.parameters(), *parts.quantizer.parameters()]
    optimizer = torch.optim.Adam(
        [{"params": encoder_params, "name": "encoder"}, {"params": list(parts.decoder.parameters()), "name": "decoder"}],
        lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=0.0,
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    ema = EMAModel(trainable, decay=cfg.ema_decay)

    # --- data ---------------------------------------------------------------------------------
    image_size = parts.preset.image_size
    train_set = load_image_dataset(cfg.dataset, cfg.dataset_split, image_size, train=True, image_column=cfg.image_column,
                                   seed=cfg.seed)
    eval_set = load_image_dataset(cfg.eval_dataset, cfg.eval_split, image_size, train=False, image_column=cfg.image_column)
    eval_images = torch.stack([eval_set[i]["pixel_values"] for i in range(min(cfg.eval_images, len(eval_set)))])
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=cfg.num_workers)

    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.register_for_checkpointing(ema, weight_norm)
    step = resume(accelerator, out)
    if accelerator.is_main_process:
        accelerator.init_trackers("flowmo_1a", config={k: str(v) for k, v in dataclasses.asdict(cfg).items()})

    measured: dict[str, float] = {}

    def report(tag: str) -> None:
        """Held-out PSNR and a grid with the EMA weights."""
        ema.store(trainable)
        ema.copy_to(trainable)
        result = evaluate_reconstructions(accelerator.unwrap_model(model), eval_images, out / "grids" / f"{tag}.png",
                                          num_inference_steps=cfg.eval_steps, seed=cfg.seed)
        ema.restore(trainable)
        accelerator.log({"eval/psnr": result.psnr}, step=step)
        measured[f"heldout_psnr_db (EMA, {len(eval_images)} images, {cfg.eval_steps} steps)"] = round(result.psnr, 3)
        accelerator.print(f"[{tag}] held-out PSNR {result.psnr:.2f} dB (grid: {result.grid_path})")

    if step == 0 and accelerator.is_main_process:
        report("step_00000000")

    # --- the loop -----------------------------------------------------------------------------
    steps_per_epoch = len(loader) // cfg.gradient_accumulation_steps
    progress = tqdm(total=cfg.max_steps, initial=step, desc="stage 1A", disable=not accelerator.is_main_process)
    micro = step * cfg.gradient_accumulation_steps
    while step < cfg.max_steps:
        epoch, done_in_epoch = divmod(step, steps_per_epoch)
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, done_in_epoch * cfg.gradient_accumulation_steps)
        for batch in batches:
            images = batch["pixel_values"]
            noise = draw_flow_noise(images, accelerator.process_index, accelerator.num_processes, loss,
                                    seed=cfg.seed, micro_step=micro)
            with accelerator.accumulate(model):
                output = model(images, noise)
                accelerator.backward(output.loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            micro += 1
            if not accelerator.sync_gradients:
                continue
            weight_norm()
            ema.step(trainable)
            step += 1
            progress.update(1)
            if cfg.encoder_freeze_step is not None and step >= cfg.encoder_freeze_step:
                optimizer.param_groups[0]["lr"] = 0.0
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                logs = {k: accelerator.reduce(v.detach(), "mean").item() for k, v in output.logs.items()}
                accelerator.log(logs, step=step)
                progress.set_postfix(loss=f"{logs['loss']:.4f}", flow=f"{logs['flow']:.4f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                save_checkpoint(accelerator, out, step, keep=cfg.keep_checkpoints)
            if accelerator.is_main_process and (step % cfg.grid_every == 0 or step == cfg.max_steps):
                report(f"step_{step:08d}")
            if step >= cfg.max_steps:
                break
    progress.close()

    # --- the output: a loadable pipeline with the EMA weights ----------------------------------
    ema.copy_to(trainable)
    if accelerator.is_main_process:
        pipe = accelerator.unwrap_model(model).to_pipeline()
        pipe.info = {"preset": cfg.preset, "preset_overrides": cfg.preset_overrides, "dataset": cfg.dataset,
                     "steps": step, "recipe": "flowmo_1a", "metrics": measured}
        pipe.save_pretrained(out / "pipeline")
        (out / "pipeline" / "training_config.yaml").write_text(_yaml_dump(cfg))
        accelerator.print(f"saved the pipeline (EMA weights) to {out / 'pipeline'}")
    accelerator.end_training()
    return accelerator.unwrap_model(model)


def _yaml_dump(cfg: Stage1AConfig) -> str:
    return yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()})


if __name__ == "__main__":
    main()
