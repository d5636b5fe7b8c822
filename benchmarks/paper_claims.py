"""The FlowMo paper's claims, measured at tiny scale: each claim's two settings, side by side, over seeds.

    python benchmarks/paper_claims.py                      # about 45 minutes on 2 CPU cores
    python benchmarks/paper_claims.py --steps 200 --seeds 0 --steps-1b 50   # a quick look

Every run is the tiny FlowMo recipe (recipes/flowmo_1a.py with recipes/configs/tiny.yaml, i.e. the tiny
presets' defaults) with one setting changed; sampling claims reuse the same models with another sampler.
Each model is scored by recipes/evaluate.py on the 64 embedded held-out crops (PSNR, LPIPS-VGG; rFID
is meaningless at 64 images). Writes benchmarks/results/paper_claims.md: the paper's numbers
(FLOWMO_SPEC §7, ablations of the small model unless marked), ours as mean ± half the spread over
seeds, and whether the sign of each difference agrees with the paper.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from compare_tiny import ROOT, run

RESULTS = ROOT / "benchmarks" / "results" / "paper_claims.md"
FSQ_18_BITS = "preset_overrides={quantizer_name: fsq, quantizer: {levels: [8, 8, 8, 8, 8, 8]}, code_dim: 6}"

# 1A runs: name -> recipe overrides (besides seed, steps and output_dir)
TRAININGS = {
    "flowmo": [],
    "plain_logit_normal": ["timestep_sampler=logit_normal"],
    "no_lpips": ["perceptual_weight=0"],
    "fsq": [FSQ_18_BITS],
    "one_pass": ["preset=titok_tiny"],
}
DEFAULT_SAMPLER = {"rho": 4.0, "guidance": 1.5}


@dataclass
class Claim:
    """``with_`` / ``without``: (model, sampler changes); ``paper``: (PSNR, LPIPS) with and without."""

    text: str
    with_: tuple[str, dict]
    without: tuple[str, dict]
    paper: tuple[tuple[float, float], tuple[float, float]]
    paper_note: str = "small-model ablation"
    measured: dict = field(default_factory=dict)


CLAIMS = [
    Claim("rho = 4 vs rho = 1 (sampling schedule)", ("flowmo", {}), ("flowmo", {"rho": 1.0}),
          ((20.71, 0.15), (20.25, 0.16))),
    Claim("thick-tailed vs plain logit-normal t", ("flowmo", {}), ("plain_logit_normal", {}),
          ((20.71, 0.15), (16.45, 0.21))),
    Claim("with vs without the one-step LPIPS term", ("flowmo", {}), ("no_lpips", {}),
          ((20.71, 0.15), (22.11, 0.21))),
    Claim("guidance 1.5 in its interval vs none", ("flowmo", {}), ("flowmo", {"guidance": 1.0}),
          ((20.71, 0.15), (20.67, 0.16))),
    Claim("1B (mode seeking) vs 1A", ("flowmo_1b", {}), ("flowmo", {}),
          ((22.07, 0.113), (21.38, 0.134)), "FlowMo-Lo"),
    Claim("diffusion vs one-pass decoder at equal BPP", ("flowmo", {}), ("one_pass", {}),
          ((22.07, 0.113), (21.63, 0.111)), "FlowMo-Lo vs OpenMagViT-V2 (another one-pass tokenizer)"),
    Claim("LFQ vs FSQ", ("flowmo", {}), ("fsq", {}), ((20.71, 0.15), (21.31, 0.14))),
]


def evaluate(folder: Path, sampler: dict, tag: str) -> dict[str, float]:
    settings = {**DEFAULT_SAMPLER, **sampler}
    out = folder.parent / f"eval_{tag}"
    run("recipes/evaluate.py", "--model", str(folder), "--dataset", "embedded", "--num-images", "64", "--no-fid",
        "--lpips", "vgg", "--rho", str(settings["rho"]), "--guidance", str(settings["guidance"]),
        "--output-dir", str(out))
    return json.loads((out / "metrics.json").read_text())["metrics"]


def spread(values: list[float], digits: int = 2) -> str:
    mean = statistics.fmean(values)
    half = (max(values) - min(values)) / 2
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def sign_agrees(paper: float, ours: list[float]) -> str:
    """'yes' / 'no' / 'mixed' for whether each seed's difference has the paper's sign."""
    signs = {(d > 0) == (paper > 0) for d in ours}
    return "mixed" if len(signs) > 1 else ("yes" if signs.pop() else "no")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500, help="1A steps of every run")
    parser.add_argument("--steps-1b", type=int, default=200, help="stage-1B steps after the default run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--work-dir", default="outputs/paper_claims")
    args = parser.parse_args()
    work = ROOT / args.work_dir

    folders: dict[tuple[str, int], Path] = {}
    jobs = [(name, seed) for seed in args.seeds for name in TRAININGS]
    for name, seed in tqdm(jobs, desc="train"):
        out = work / f"{name}_seed{seed}"
        run("recipes/flowmo_1a.py", f"seed={seed}", f"max_steps={args.steps}", f"output_dir={out}",
            "grid_every=100000", "checkpoint_every=100000", *TRAININGS[name])
        folders[name, seed] = out / "pipeline"
        if name == "flowmo":
            out_1b = work / f"flowmo_1b_seed{seed}"
            run("recipes/flowmo_1b.py", f"init_from={out / 'pipeline'}", f"output_dir={out_1b}", f"seed={seed}",
                f"max_steps={args.steps_1b}", "eval_every=50", "checkpoint_every=100000")
            folders["flowmo_1b", seed] = out_1b / "pipeline"

    scores: dict[tuple[str, str, int], dict[str, float]] = {}
    settings = {(model, json.dumps(sampler, sort_keys=True)) for c in CLAIMS for model, sampler in (c.with_, c.without)}
    for (model, sampler), seed in tqdm([(s, seed) for s in sorted(settings) for seed in args.seeds], desc="evaluate"):
        tag = "default" if sampler == "{}" else "_".join(f"{k}{v}" for k, v in json.loads(sampler).items())
        scores[model, sampler, seed] = evaluate(folders[model, seed], json.loads(sampler), tag)

    lines = [f"# The paper's claims at tiny scale ({args.steps} 1A steps, batch 16, 1B {args.steps_1b} steps; "
             f"seeds {', '.join(map(str, args.seeds))})", "",
             "64 embedded held-out crops at 32 px, 25 sampling steps, rho 4, guidance 1.5 unless the claim changes "
             "them. Ours: mean ± half the spread over seeds. 'Sign agrees': whether every seed's difference "
             "(first setting minus second) has the sign of the paper's; LPIPS is lower-is-better.", "",
             "| claim (first vs second) | paper PSNR | paper LPIPS | ours PSNR | ours LPIPS | ΔPSNR ours (paper) "
             "| ΔLPIPS ours (paper) | sign agrees: PSNR / LPIPS |",
             "|---|---|---|---|---|---|---|---|"]
    for claim in CLAIMS:
        (p_with, l_with), (p_without, l_without) = claim.paper
        key_with = (claim.with_[0], json.dumps(claim.with_[1], sort_keys=True))
        key_without = (claim.without[0], json.dumps(claim.without[1], sort_keys=True))
        psnr = {s: (scores[(*key_with, s)]["psnr"], scores[(*key_without, s)]["psnr"]) for s in args.seeds}
        lpips = {s: (scores[(*key_with, s)]["lpips_vgg"], scores[(*key_without, s)]["lpips_vgg"]) for s in args.seeds}
        d_psnr = [a - b for a, b in psnr.values()]
        d_lpips = [a - b for a, b in lpips.values()]
        lines.append(
            f"| {claim.text} | {p_with} / {p_without} | {l_with} / {l_without} "
            f"| {spread([a for a, _ in psnr.values()])} / {spread([b for _, b in psnr.values()])} "
            f"| {spread([a for a, _ in lpips.values()], 3)} / {spread([b for _, b in lpips.values()], 3)} "
            f"| {statistics.fmean(d_psnr):+.2f} ({p_with - p_without:+.2f}) "
            f"| {statistics.fmean(d_lpips):+.3f} ({l_with - l_without:+.3f}) "
            f"| {sign_agrees(p_with - p_without, d_psnr)} / {sign_agrees(l_with - l_without, d_lpips)} |")
    lines += ["", "Paper numbers: " + "; ".join(f"{c.text}: {c.paper_note}" for c in CLAIMS
                                              if c.paper_note != "small-model ablation") +
              "; all others: the small model's ablations."]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
