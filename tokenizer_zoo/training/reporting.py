"""What recipes show people: held-out reconstructions as PNG grids, with their PSNR."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torchvision.utils import save_image

from tokenizer_zoo.metrics.psnr import psnr


@dataclass
class ReconstructionReport:
    psnr: float
    grid_path: Path


def resolve_mixed_precision(setting: str) -> str:
    """``auto`` -> ``bf16`` on CUDA devices that support it, else ``no`` (fp32 on CPU)."""
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def save_comparison_grid(originals: torch.Tensor, reconstructions: torch.Tensor, path: Path, per_row: int = 8) -> Path:
    """PNG of originals (odd rows) above their reconstructions (even rows); inputs in [-1, 1]."""
    count = originals.shape[0]
    per_row = min(per_row, count)
    pad = (-count) % per_row
    pairs = torch.stack([originals, reconstructions]).float().cpu()
    if pad:
        pairs = torch.cat([pairs, torch.full((2, pad, *pairs.shape[2:]), -1.0)], dim=1)
    tiles = rearrange(pairs, "two (rows cols) c h w -> (rows two cols) c h w", cols=per_row)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((tiles + 1) / 2, path, nrow=per_row, padding=2, pad_value=1.0)
    return path


@torch.no_grad()
def evaluate_reconstructions(model, images: torch.Tensor, grid_path: Path, num_inference_steps: int = 25,
                             seed: int = 0) -> ReconstructionReport:
    """Reconstruct held-out ``images`` with ``model.to_pipeline()``; mean per-image PSNR and a grid."""
    pipe = model.to_pipeline()
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(pipe.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    recon = pipe(images.to(pipe.device), num_inference_steps=num_inference_steps, generator=generator, output_type="pt")
    model.train(was_training)
    save_comparison_grid(images, recon, Path(grid_path))
    return ReconstructionReport(psnr=psnr(recon.cpu(), images.cpu()).mean().item(), grid_path=Path(grid_path))
