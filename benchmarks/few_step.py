"""Few-step FlowMo: distil the tiny teacher with each method and seed, then measure every student against
the teacher's guided 25-step sampler on the 64 embedded held-out crops.

    python benchmarks/few_step.py                                       # on outputs/flowmo_1a_tiny/pipeline
    python benchmarks/few_step.py --teacher PATH --seeds 0 --steps 100  # a quick look

Each (method, seed) is one run of recipes/flowmo_distill.py (tiny_distill.yaml plus the method's
overrides); a run that already finished is reused (the recipe resumes). Both methods of a seed share
the teacher's training trajectories. Every decode of the table starts from the same noise (``latents=``,
one draw per held-out image), so "teacher match" is the PSNR between a row's samples and the teacher's
25-step guided samples of the same noise; PSNR, SSIM and LPIPS-VGG are against the held-out images.
NFE counts decoder passes per image, the unconditional pass of a guided step included. Images/s:
whole decodes of a batch of 16 codes, eager and ``torch.compile``d decoder side by side (best of
``--repeats``; the speed does not depend on the weights, so one model per row is timed).
Writes benchmarks/results/few_step.md and the grid docs/images/few_step_grid.png.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
from pathlib import Path

import torch
from speed_common import side_by_side
from tqdm.auto import tqdm

from compare_tiny import ROOT, run
from tokenizer_zoo.data import EmbeddedPhotos
from tokenizer_zoo.metrics.collection import reconstruction_metrics
from tokenizer_zoo.metrics.psnr import psnr
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.samplers import ShiftedEulerScheduler
from tokenizer_zoo.training.reporting import save_image_grid

RESULTS = ROOT / "benchmarks" / "results"
GRID = ROOT / "docs" / "images" / "few_step_grid.png"  # rows: held-out images, teacher 25 steps, student 1, 2, 4
TRAJECTORIES = "teacher_trajectories.safetensors"
# method -> recipe overrides (besides teacher, seed, steps and output_dir); the first is tiny_distill.yaml's default
METHODS = {
    "trajectory": [],
    "mode_seeking": ["chain_weight=1.0", "chain_target=teacher", "perceptual_weight=0.1", "chain_steps=[1, 2, 4]"],
}
NFES = (1, 2, 4, 8)


def distil(teacher: str, work: Path, seeds: list[int], steps: dict[str, int]) -> dict[tuple[str, int], Path]:
    folders = {}
    for seed in seeds:
        for method, overrides in METHODS.items():
            out = work / f"{method}_seed{seed}"
            first = work / f"{next(iter(METHODS))}_seed{seed}" / TRAJECTORIES
            if not (out / TRAJECTORIES).exists() and first.exists():  # same seed: the same trajectories
                out.mkdir(parents=True, exist_ok=True)
                shutil.copy(first, out / TRAJECTORIES)
            run("recipes/flowmo_distill.py", f"teacher={teacher}", f"seed={seed}", f"max_steps={steps[method]}",
                f"output_dir={out}", *overrides)
            folders[method, seed] = out / "pipeline"
    return folders


def load(folder: Path) -> FlowMoPipeline:
    pipe = FlowMoPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def teacher_nfe(pipe: FlowMoPipeline, steps: int) -> int:
    """Decoder passes per image of the teacher's guided sampler: two in each step inside the interval."""
    scheduler = ShiftedEulerScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    low, high = pipe.config.guidance_interval
    return steps + sum(int(low <= float(t) <= high) for t in scheduler.timesteps)


@torch.no_grad()
def decode(pipe: FlowMoPipeline, codes, noise, steps: int) -> torch.Tensor:
    """Samples in [-1, 1] from ``noise``, in batches of 16."""
    out = [pipe.decode(c, latents=z, num_inference_steps=steps, output_type="pt").images
           for c, z in zip(codes.split(16), noise.split(16))]
    return torch.cat(out) * 2 - 1


def scores(samples: torch.Tensor, reference: torch.Tensor, images: torch.Tensor, metrics) -> dict[str, float]:
    metrics.reset()
    metrics.update(samples, images)
    return {"teacher_psnr": psnr(samples, reference).mean().item(), **metrics.summary()}


def images_per_second(decoders: dict, codes, repeats: int, compile_decoder: bool = True) -> dict:
    """{key: (eager, compiled) images/s} of decodes of 16 codes for ``decoders`` = {key: (pipe, steps)}, all
    timed in the same interleaved rounds (compiled: NaN without ``compile_decoder``)."""
    fns = {}
    for key, (pipe, steps) in decoders.items():
        variants = {"eager": pipe}
        if compile_decoder:
            variants["compiled"] = FlowMoPipeline(**pipe.components, guidance_scale=pipe.config.guidance_scale,
                                                  guidance_interval=pipe.config.guidance_interval)
            variants["compiled"].decoder = torch.compile(pipe.decoder)
            variants["compiled"].set_progress_bar_config(disable=True)
        batch = codes[:16]
        noise = torch.randn(len(batch), 3, pipe.image_size, pipe.image_size)
        for name, variant in variants.items():
            fns[key, name] = (lambda p=variant, n=steps: p.decode(batch, latents=noise, num_inference_steps=n,
                                                                  output_type="pt"))
    with torch.no_grad():
        for fn in tqdm(fns.values(), desc="compile and warm up"):
            fn()
        best = side_by_side(fns, repeats)
    count = len(codes[:16])
    return {key: (count / best[key, "eager"], count / best.get((key, "compiled"), float("nan"))) for key in decoders}


def ratio(a: float, b: float) -> str:
    return "not measured" if math.isnan(a) else f"{a / b:.1f}x"


def spread(values: list[float], digits: int = 2) -> str:
    half = (max(values) - min(values)) / 2
    return f"{statistics.fmean(values):.{digits}f} ± {half:.{digits}f}" if len(values) > 1 else f"{values[0]:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="outputs/flowmo_1a_tiny/pipeline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 50],
                        help="distillation steps of every run, or one number per method (in the table's order); "
                             "the default is what fitted the time on 2 shared CPU cores (mode seeking is ~4x slower a step)")
    parser.add_argument("--work-dir", default="outputs/few_step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="time eager decodes only")
    parser.add_argument("--images", type=int, default=64, help="held-out crops (at most the 64 embedded ones)")
    args = parser.parse_args()
    if len(args.steps) not in (1, len(METHODS)):
        raise SystemExit(f"--steps takes one number or one per method ({', '.join(METHODS)})")
    steps = dict(zip(METHODS, args.steps * len(METHODS) if len(args.steps) == 1 else args.steps))
    folders = distil(args.teacher, ROOT / args.work_dir, args.seeds, steps)

    teacher = load(Path(args.teacher))
    data = EmbeddedPhotos("eval", image_size=teacher.image_size)
    images = torch.stack([data[i]["pixel_values"] for i in range(min(args.images, len(data)))])
    codes = teacher.encode((images + 1) / 2).codes
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    metrics = reconstruction_metrics(lpips_nets=("vgg",))
    teacher_steps = teacher.scheduler.config.num_inference_steps
    reference = decode(teacher, codes, noise, teacher_steps)
    samples, rows = {}, []  # rows: (label, nfe, {metric: [values over seeds]}, (eager, compiled) images/s)
    students = {method: {seed: load(folders[method, seed]) for seed in args.seeds} for method in METHODS}
    timed = {("teacher", n): (teacher, n) for n in (teacher_steps, *NFES)}
    timed.update({(method, n): (students[method][args.seeds[0]], n) for method in METHODS for n in NFES})
    speed = images_per_second(timed, codes, args.repeats, not args.no_compile)
    for count in tqdm((teacher_steps, *NFES), desc="teacher"):
        out = reference if count == teacher_steps else decode(teacher, codes, noise, count)
        samples["teacher", count] = out
        label = f"teacher, {count}-step guided" + (" (the reference)" if count == teacher_steps else "")
        rows.append((label, teacher_nfe(teacher, count), {k: [v] for k, v in scores(out, reference, images, metrics).items()},
                     speed["teacher", count]))
    for method in tqdm(METHODS, desc="students"):
        for nfe in NFES:
            measured: dict[str, list[float]] = {}
            for seed, student in students[method].items():
                out = decode(student, codes, noise, nfe)
                samples[method, seed, nfe] = out
                for key, value in scores(out, reference, images, metrics).items():
                    measured.setdefault(key, []).append(value)
            rows.append((f"{method} student, {nfe} step{'s' if nfe > 1 else ''}", nfe, measured, speed[method, nfe]))

    base_speed = rows[0][3]
    lines = [f"# Few-step FlowMo on the tiny preset (distillation steps: "
             f"{', '.join(f'{m} {n}' for m, n in steps.items())}; seeds "
             f"{', '.join(map(str, args.seeds))})", "",
             f"Teacher: `{args.teacher}` ({teacher.info.get('steps', '?')} stage-1A steps), guidance "
             f"{teacher.config.guidance_scale} in {list(teacher.config.guidance_interval)}. {len(images)} embedded "
             "held-out crops at 32 px; every row decodes from the same noise. Students: mean ± half the spread over "
             "seeds. Images/s: decodes of 16 codes on this machine's CPU, shared with other jobs (ratios are "
             "measured side by side; absolute numbers are not comparable across runs). rFID is not reported: 64 "
             "images cannot estimate Inception statistics (2048 dimensions).", "",
             "| decoder | NFE / image | teacher match PSNR (dB) | PSNR (dB) | SSIM | LPIPS-VGG | images/s eager "
             "| images/s compiled | speed-up vs teacher (eager / compiled) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, nfe, measured, (eager, compiled) in rows:
        match = "—" if label.endswith("(the reference)") else spread(measured["teacher_psnr"])
        lines.append(f"| {label} | {nfe} | {match} | {spread(measured['psnr'])} | {spread(measured['ssim'], 3)} "
                     f"| {spread(measured['lpips_vgg'], 3)} | {eager:.0f} | "
                     f"{'not measured' if math.isnan(compiled) else f'{compiled:.0f}'} "
                     f"| {ratio(eager, base_speed[0])} / {ratio(compiled, base_speed[1])} |")
    lines += ["", goal_note(rows)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "few_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    method = next(iter(METHODS))
    grid = [images[:8], samples["teacher", teacher_steps][:8],
            *(samples[method, args.seeds[0], nfe][:8] for nfe in (1, 2, 4))]
    save_image_grid(torch.cat(grid), GRID, per_row=8)


def goal_note(rows) -> str:
    """The issue's goal for every student row of at most 4 NFE, against the teacher rows."""
    by_label = {label: (nfe, measured, speed) for label, nfe, measured, speed in rows}
    reference = rows[0]
    own_4 = statistics.fmean(by_label["teacher, 4-step guided"][1]["teacher_psnr"])
    notes = [f"Goal check (students at most 4 NFE; the teacher's own 4-step samples match its 25-step ones at "
             f"{own_4:.2f} dB; goals: teacher match >= +3 dB over that, PSNR >= -0.5 dB and LPIPS <= +0.01 against "
             "the teacher's 25 steps, >= 6x images/s):"]
    for label, (nfe, measured, speed) in by_label.items():
        if "student" not in label or nfe > 4:
            continue
        gain = statistics.fmean(measured["teacher_psnr"]) - own_4
        d_psnr = statistics.fmean(measured["psnr"]) - reference[2]["psnr"][0]
        d_lpips = statistics.fmean(measured["lpips_vgg"]) - reference[2]["lpips_vgg"][0]
        eager = speed[0] / reference[3][0]
        met = gain >= 3 and d_psnr >= -0.5 and d_lpips <= 0.01 and eager >= 6
        notes.append(f"- {label}: {gain:+.2f} dB teacher match, PSNR {d_psnr:+.2f} dB, LPIPS {d_lpips:+.3f}, "
                     f"{ratio(speed[0], reference[3][0])} eager / {ratio(speed[1], reference[3][1])} compiled: "
                     + ("all goals met (eager speed)" if met else "goal missed"))
    return "\n".join(notes)


if __name__ == "__main__":
    main()
