"""A comparison as people read it: a markdown table, its JSON, a rate-distortion plot and a labelled image grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from einops import rearrange
from PIL import Image, ImageDraw, ImageFont

from tokenizer_zoo.evaluation.compare import CompareResult, ModelRow
from tokenizer_zoo.evaluation.models import FILE_CODEC

FILES = ("compare.md", "compare.json", "rate_distortion.png", "grid.png")
COLUMNS = ("model", "tokens x bits", "BPP", "params enc / dec (M)", "rFID", "PSNR", "SSIM", "LPIPS-VGG",
           "encode img/s", "decode img/s", "NFE/img")


def _number(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cells(row: ModelRow) -> list[str]:
    metrics = row.metrics
    bpp = _number(metrics.get("bpp"), 4)
    if row.sampler == FILE_CODEC:  # its files are its code: the quality written and the size they reached
        size, bpp = f"file, mean quality {metrics['mean_quality']:.0f}", f"{bpp} reached"
    elif row.tokens is None:
        size = "–"
    elif row.bits_per_token is None:
        size = f"{row.tokens} x continuous"
    else:
        size = f"{row.tokens} x {row.bits_per_token:g}"
    params = f"{row.encoder_parameters / 1e6:.2f} / {row.decoder_parameters / 1e6:.2f}"
    return [row.name, size, bpp, params if row.encoder_parameters or row.decoder_parameters else "0 / 0",
            _number(metrics.get("rfid"), 2), _number(metrics.get("psnr"), 2), _number(metrics.get("ssim"), 3),
            _number(metrics.get("lpips_vgg"), 3), _number(row.encode_images_per_second, 1),
            _number(row.decode_images_per_second, 1), "1" if row.sampler == "one pass" else _number(row.nfe, 1)]


def sorted_rows(result: CompareResult) -> list[ModelRow]:
    """The models that ran, by BPP (continuous codes last)."""
    return sorted(result.ran, key=lambda row: row.metrics.get("bpp", math.inf))


def markdown(result: CompareResult) -> str:
    """The table (sorted by BPP), the settings it was measured under, and each failed model's reason."""
    s = result.settings
    sampler = ", ".join(f"{key} {'each model’s own' if s[key] is None else s[key]}" for key in ("steps", "rho", "guidance"))
    if not result.ran:
        return "\n".join([f"# No tokenizer compared on {s['dataset']}", "", "None of the models ran:", ""]
                         + [f"- {row.name} ({row.source}): {row.error}" for row in result.rows]) + "\n"
    lines = [f"# Tokenizers compared on {s['dataset']} [{s['split']}]", "",
             f"{s['num_images']} images at {s['resolution']} px: {s['preprocessing']}. Diffusion decoders: "
             f"{sampler}, seed {s['seed']}. Parameters: encoder with quantizer / decoder. "
             f"Speeds: images/s on this machine ({s['processes']} process(es), batch {s['batch_size']}; a process's "
             "first batch warms up and is timed only when it is its only one). "
             "NFE: decoder evaluations per image (a guided step counts two). A file codec's BPP is what its files "
             "reached, headers included.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in sorted_rows(result)]
    failed = [row for row in result.rows if row.error is not None]
    if failed:
        lines += ["", "Not compared:", ""] + [f"- {row.name} ({row.source}): {row.error}" for row in failed]
    skipped = {name: reason for row in result.ran for name, reason in row.skipped_metrics.items() if name != "tokens"}
    if skipped:
        lines += [""] + [f"- {name} not measured: {reason}" for name, reason in sorted(skipped.items())]
    return "\n".join(lines) + "\n"


def rate_distortion_plot(result: CompareResult, path: Path) -> Path:
    """PSNR and LPIPS-VGG against BPP, one labelled point a model (models without BPP are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in sorted_rows(result) if "bpp" in row.metrics]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, (key, label) in zip(axes, (("psnr", "PSNR (dB), higher is better"),
                                         ("lpips_vgg", "LPIPS-VGG, lower is better"))):
        for row in (row for row in rows if key in row.metrics):
            axis.scatter(row.metrics["bpp"], row.metrics[key])
            axis.annotate(row.name, (row.metrics["bpp"], row.metrics[key]), textcoords="offset points",
                          xytext=(4, 4), fontsize=8)
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    figure.suptitle(f"{result.settings['dataset']}, {result.settings['num_images']} images at "
                    f"{result.settings['resolution']} px")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _tiles(images: torch.Tensor, scale: int) -> Image.Image:
    """(K, 3, R, R) in [-1, 1] -> one row of tiles, each enlarged ``scale`` times (nearest) and 2 px apart."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = torch.nn.functional.pad(pixels, (1, 1, 1, 1), value=255)
    row = rearrange(pixels, "k c h w -> h (k w) c").numpy()
    image = Image.fromarray(row)
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def grid(result: CompareResult, path: Path, min_tile: int = 96) -> Path:
    """The same images: originals first, then each model's reconstructions, each row labelled (name, BPP)."""
    scale = max(1, math.ceil(min_tile / result.originals.shape[-1]))
    rows = [("original", "", result.originals)]
    rows += [(row.name, f"{row.metrics['bpp']:.4f} BPP{' reached' * (row.sampler == FILE_CODEC)}"
              if "bpp" in row.metrics else "continuous",
              result.reconstructions[row.name]) for row in sorted_rows(result) if row.name in result.reconstructions]
    strips = [_tiles(images, scale) for _, _, images in rows]
    font = ImageFont.load_default(size=14)
    label_width = 12 + max(int(font.getlength(text)) for name, bpp, _ in rows for text in (name, bpp))
    canvas = Image.new("RGB", (label_width + max(s.width for s in strips), sum(s.height for s in strips)), "white")
    draw, top = ImageDraw.Draw(canvas), 0
    for (name, bpp, _), strip in zip(rows, strips):
        canvas.paste(strip, (label_width, top))
        draw.text((6, top + strip.height // 2 - 16), name, fill="black", font=font)
        draw.text((6, top + strip.height // 2 + 2), bpp, fill="dimgray", font=font)
        top += strip.height
    canvas.save(path)
    return path


def write_report(result: CompareResult, folder: str | Path) -> list[Path]:
    """The four files in ``folder`` (plot and grid only when at least one model ran)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compare.md").write_text(markdown(result))
    (folder / "compare.json").write_text(json.dumps(result.to_json(), indent=2))
    written = [folder / "compare.md", folder / "compare.json"]
    if result.ran and result.originals is not None:
        written += [rate_distortion_plot(result, folder / "rate_distortion.png"), grid(result, folder / "grid.png")]
    return written
