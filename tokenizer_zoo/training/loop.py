"""What the FlowMo recipes' loops share: the Accelerator, data, resumable epochs, EMA evaluation,
held-out metrics and the final pipeline folder. Recipes keep their own loss wiring and loop body."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader

from tokenizer_zoo.data import load_image_dataset
from tokenizer_zoo.metrics.code_use import code_use
from tokenizer_zoo.metrics.psnr import psnr
from tokenizer_zoo.training.reporting import resolve_mixed_precision, save_comparison_grid


def build_accelerator(output_dir: Path, mixed_precision: str, gradient_accumulation_steps: int, seed: int) -> Accelerator:
    """Accelerator with TensorBoard logging under ``output_dir/logs``, seeded identically on every process.

    ``cpu=not cuda`` so that ``accelerate launch --multi_gpu`` gives real data parallelism on CPUs.
    """
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=resolve_mixed_precision(mixed_precision),
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(seed)
    if accelerator.device.type == "cpu" and accelerator.num_processes == 1:
        # `accelerate launch` without a GPU sets OMP_NUM_THREADS=1; one CPU process should use every core
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    return accelerator


@dataclass
class RecipeConfig:
    """The settings every FlowMo recipe has (data, batching, optimiser, EMA, logging); recipes subclass it."""

    dataset: str = "embedded"  # "embedded", "imagefolder:PATH" or a Hub dataset id
    dataset_split: str = "train"
    eval_dataset: str = "embedded"
    eval_split: str = "validation"
    image_column: str | None = None
    output_dir: str = "outputs/run"
    seed: int = 0
    batch_size: int = 16  # per process, per micro-step
    gradient_accumulation_steps: int = 1
    num_workers: int = 0
    adam_betas: tuple = (0.9, 0.95)
    ema_decay: float = 0.9999
    timestep_sampler: str = "thick_tailed_logit_normal"
    timestep_shift: float = 1.0  # SD3-style shift of the drawn noise levels (1: the paper)
    t1_prob: float = 0.0  # probability of t = 1, the one-pass x0 loss (0: the paper)
    x0_weight: float = 0.0  # weight of the one-pass x0 loss of every image at t = 1 (0: the paper)
    cfg_dropout: float = 0.1
    mixed_precision: str = "auto"  # "auto" = bf16 on GPUs that support it, else fp32
    log_every: int = 25
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    eval_images: int = 16
    eval_steps: int = 25  # sampler steps for held-out reconstructions


@dataclass
class RecipeData:
    loader: DataLoader
    eval_images: torch.Tensor  # (N, 3, H, W) in [-1, 1], the fixed held-out images


def load_recipe_data(cfg: RecipeConfig, image_size: int) -> RecipeData:
    """Training loader and held-out images of a recipe config's data settings."""
    train_set = load_image_dataset(cfg.dataset, cfg.dataset_split, image_size, train=True,
                                   image_column=cfg.image_column, seed=cfg.seed)
    eval_set = load_image_dataset(cfg.eval_dataset, cfg.eval_split, image_size, train=False, image_column=cfg.image_column)
    eval_images = torch.stack([eval_set[i]["pixel_values"] for i in range(min(cfg.eval_images, len(eval_set)))])
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=cfg.num_workers)
    return RecipeData(loader, eval_images)


def epoch_batches(accelerator: Accelerator, loader, step: int, gradient_accumulation_steps: int) -> Iterator:
    """The rest of the epoch that optimisation step ``step`` falls in, so a resumed run sees the
    batches an uninterrupted one would have."""
    epoch, done_in_epoch = divmod(step, len(loader) // gradient_accumulation_steps)
    loader.set_epoch(epoch)
    return accelerator.skip_first_batches(loader, done_in_epoch * gradient_accumulation_steps)


def accumulated_step(accelerator: Accelerator, model, optimizer, *inputs):
    """One micro-step under gradient accumulation: forward, backward, and the optimiser step that
    Accelerate turns into a no-op until gradients sync. Returns the model's output (``.loss``, ``.logs``)."""
    with accelerator.accumulate(model):
        output = model(*inputs)
        accelerator.backward(output.loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return output


def after_micro_step(accelerator: Accelerator, weight_norm, ema, params) -> bool:
    """True when the micro-step just taken ended an optimiser step (gradients synced); then the forced
    weight norm is re-applied and the EMA updated."""
    if not accelerator.sync_gradients:
        return False
    if weight_norm is not None:  # models without transformer blocks (CNN baselines) have none
        weight_norm()
    ema.step(params)
    return True


def log_metrics(accelerator: Accelerator, logs: dict[str, torch.Tensor], step: int, progress=None) -> dict[str, float]:
    """Average ``logs`` over processes, send them to the trackers and show them on the progress bar."""
    means = {k: accelerator.reduce(v.detach(), "mean").item() for k, v in logs.items()}
    accelerator.log(means, step=step)
    if progress is not None:
        progress.set_postfix({k: f"{v:.4f}" for k, v in means.items()})
    return means


@contextlib.contextmanager
def ema_weights(ema, params: list[torch.nn.Parameter]):
    """Temporarily swap the EMA weights into ``params``."""
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, num_inference_steps: int = 25, seed: int = 0, **decode_kwargs) -> torch.Tensor:
    """Held-out reconstructions (pt, [-1, 1]) through ``model.to_pipeline()`` with a fixed generator, in eval mode."""
    pipe = model.to_pipeline()
    pipe.set_progress_bar_config(disable=True)
    was_training = model.training
    model.eval()
    try:
        return pipe(images.to(pipe.device), num_inference_steps=num_inference_steps,
                    generator=torch.Generator(pipe.device).manual_seed(seed), output_type="pt", **decode_kwargs)
    finally:
        model.train(was_training)


@torch.no_grad()
def heldout_metrics(model, images: torch.Tensor, grid_path: Path, num_inference_steps: int = 25, seed: int = 0,
                    distances: dict[str, Callable] | None = None) -> dict[str, float]:
    """Mean per-image PSNR and each ``distances[name](recon, images)`` of held-out reconstructions; saves a grid.

    For a diffusion decoder also the one-step PSNRs at t = 1 with the true and the null code and their
    difference, the code gain (:func:`tokenizer_zoo.metrics.code_use.code_use`).
    """
    recon = reconstruct(model, images, num_inference_steps, seed)
    save_comparison_grid(images, recon, Path(grid_path))
    results = {"psnr": psnr(recon.float().cpu(), images.cpu()).mean().item()}
    if getattr(model.decoder, "is_generative", False):
        was_training = model.training
        model.eval()
        try:
            results.update(code_use(model.encoder, model.quantizer, model.decoder, images, seed).as_dict())
        finally:
            model.train(was_training)
    for name, distance in (distances or {}).items():
        results[name] = distance(recon, images.to(recon.device)).float().mean().item()
    return results


def config_yaml(cfg: Any) -> str:
    """A recipe dataclass config as YAML (tuples as lists)."""
    return yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()})


def save_recipe_pipeline(accelerator: Accelerator, model, output_dir: Path, info: dict, cfg: Any) -> None:
    """Write ``output_dir/pipeline`` (a FlowMoPipeline with ``info``) and its ``training_config.yaml``."""
    if not accelerator.is_main_process:
        return
    pipe = accelerator.unwrap_model(model).to_pipeline()
    pipe.info = info
    pipe.save_pretrained(output_dir / "pipeline")
    (output_dir / "pipeline" / "training_config.yaml").write_text(config_yaml(cfg))
    accelerator.print(f"saved the pipeline to {output_dir / 'pipeline'}")
