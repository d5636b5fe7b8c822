"""Tokenizers against the reference codecs on the same held-out crops: PSNR, SSIM, LPIPS-VGG and BPP.

    python benchmarks/reference_codecs.py                                       # the codecs alone
    python benchmarks/reference_codecs.py --models outputs/flowmo_1a_tiny/pipeline OTHER/pipeline ...

Every row is measured in this one process on the 64 embedded held-out crops (32 px): each model's
default decode (for FlowMo the 25-step guided sample; seed 0), for FlowMo also its one-step prediction
at t = 1 (x_hat = z - v(code, z, 1)), and the codecs of :mod:`tokenizer_zoo.pipelines.codecs`
(thumbnail at exactly the tiny presets' bits; JPEG and WebP at the quality closest to them, with the
BPP their files reached). Writes benchmarks/results/reference_codecs.md and, with ``--figure``, a PNG of
originals above each model's and the thumbnail's reconstructions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image
from tqdm.auto import tqdm

from tokenizer_zoo.data import load_image_dataset
from tokenizer_zoo.metrics import reconstruction_metrics
from tokenizer_zoo.pipelines import TOKENIZER_PIPELINES, FlowMoPipeline, load_pipeline
from tokenizer_zoo.pipelines.codecs import CODECS, FileCodecPipeline, codec_pipeline

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reference_codecs.md"


@torch.no_grad()
def one_step_at_one(pipe: FlowMoPipeline, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """FlowMo's one-step prediction at t = 1 of ``images`` ([0, 1] in and out)."""
    codes = pipe.encode(images).codes
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    velocity = pipe.decoder(codes, noise, torch.ones(len(images)))
    return ((noise - velocity).clamp(-1, 1) + 1) / 2


def scores(recon: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
    metrics = reconstruction_metrics(lpips_nets=("vgg",))
    metrics.update(recon * 2 - 1, images * 2 - 1)
    return {name: float(value) for name, value in metrics.compute().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[], help="saved tokenizer pipeline folders (32 px)")
    parser.add_argument("--names", nargs="*", default=None, help="a row name per model (default: the folder)")
    parser.add_argument("--figure", default=None, help="write a PNG: originals, then each model's and the "
                        "thumbnail's reconstructions (first 8 crops)")
    args = parser.parse_args()
    data = load_image_dataset("embedded", "eval", 32, train=False)
    images = (torch.stack([data[i]["pixel_values"] for i in range(len(data))]) + 1) / 2
    rows, figure = [], [images[:8]]
    names = args.names or args.models
    for name, folder in tqdm(list(zip(names, args.models)), desc="models"):
        pipe = load_pipeline(folder, kinds=TOKENIZER_PIPELINES)
        pipe.set_progress_bar_config(disable=True)
        recon = pipe(images, output_type="pt", generator=torch.Generator().manual_seed(0)).images
        label = "default decode" + (" (25-step guided sample)" if isinstance(pipe, FlowMoPipeline) else "")
        rows.append((f"{name}: {label}", pipe.bits_per_pixel, scores(recon, images)))
        figure.append(recon[:8])
        if isinstance(pipe, FlowMoPipeline):
            rows.append((f"{name}: one step at t = 1", pipe.bits_per_pixel, scores(one_step_at_one(pipe, images), images)))
    for name in tqdm(sorted(CODECS), desc="codecs"):
        pipe = codec_pipeline(name)
        tokens = pipe.encode(images)
        recon = pipe.decode(tokens, output_type="pt").images
        bpp = sum(tokens.file_bits) / images[:, 0].numel() if isinstance(pipe, FileCodecPipeline) else pipe.bits_per_pixel
        rows.append((f"{name} (reference codec)", bpp, scores(recon, images)))
        if name == "thumbnail_tiny":
            figure.append(recon[:8])
    lines = ["# Tokenizers against reference codecs (64 embedded held-out crops, 32 px)", "",
             "Measured in one run of `python benchmarks/reference_codecs.py`. BPP of JPEG and WebP: what their files "
             "reached at the quality closest to the tiny presets' 0.2812 (headers included); they cannot go lower.", "",
             "| reconstruction | BPP | PSNR (dB) | SSIM | LPIPS-VGG |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {bpp:.4f} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m.get('lpips_vgg', float('nan')):.3f} |"
              for name, bpp, m in rows]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.figure:
        save_image(torch.cat(figure), args.figure, nrow=8, padding=2, pad_value=1.0)
        print(f"wrote {args.figure}: rows = originals, {', '.join(names)}, thumbnail_tiny")


if __name__ == "__main__":
    main()
