"""Train the tiny tokenizers at equal BPP and equal optimiser steps, then compare them with `tokenizer-zoo compare`.

    python benchmarks/compare_tiny.py                 # every tiny tokenizer (not timed in this version)
    python benchmarks/compare_tiny.py --steps 300 --no-1b --presets flowmo_tiny_fsq titok_tiny   # a quick look
    python benchmarks/compare_tiny.py --reuse         # train only what --work-dir does not hold yet

Every tokenizer is trained by the same loop (recipes/train_tokenizer.py with recipes/configs/tiny.yaml,
the main job's settings: batch 16, lr 1e-3, 600 steps) on the embedded photographs, and each FlowMo
preset is post-trained by stage 1B (recipes/flowmo_1b.py) unless --no-1b. All of them, and the
parameter-free reference codecs (thumbnail, JPEG, WebP at the same bit budget; JPEG and WebP rows
report the BPP their files reached), are then compared by :func:`tokenizer_zoo.evaluation.compare.compare`
on the 64 embedded held-out crops (25 sampling steps, guidance 1.5 for diffusion decoders).
Writes benchmarks/results/compare_tiny.md and, beside it, compare_tiny/ with compare's four files.
At ImageNet scale, train with the recipes' lo/hi configs and run `tokenizer-zoo compare` (see README).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tqdm.auto import tqdm

from tokenizer_zoo.evaluation.compare import CompareSettings, compare
from tokenizer_zoo.evaluation.models import ModelSpec
from tokenizer_zoo.evaluation.report import markdown, write_report
from tokenizer_zoo.pipelines.codecs import CODEC_PREFIX

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compare_tiny.md"
PRESETS = ["flowmo_tiny_fsq", "flowmo_tiny", "titok_tiny", "cnn_lfq_tiny", "cnn_fsq_tiny"]  # the main job's first
CODECS = ["thumbnail_tiny", "jpeg_tiny", "webp_tiny"]


def run(*command: str) -> None:
    done = subprocess.run([sys.executable, *command], cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--steps", type=int, default=600, help="optimiser steps of every preset (the main job's)")
    parser.add_argument("--no-1b", action="store_true")
    parser.add_argument("--codecs", nargs="*", default=CODECS,
                        help="parameter-free reference codecs to add as rows (tokenizer_zoo.pipelines.codecs)")
    parser.add_argument("--work-dir", default="outputs/compare_tiny")
    parser.add_argument("--reuse", action="store_true", help="use the pipelines already trained in --work-dir "
                        "instead of training them again (the others are trained)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the markdown file to write; compare's four "
                        "files go to the folder of the same name beside it")
    args = parser.parse_args()
    work = ROOT / args.work_dir
    models = {}
    for preset in tqdm(args.presets, desc="train"):
        models[preset] = work / preset / "pipeline"
        if not (args.reuse and models[preset].is_dir()):
            run("recipes/train_tokenizer.py", "--preset", preset, f"output_dir={work / preset}",
                f"max_steps={args.steps}", "grid_every=100000")
    for preset in [] if args.no_1b else [p for p in args.presets if p.startswith("flowmo")]:
        post = work / f"{preset}_1b"
        if not (args.reuse and (post / "pipeline").is_dir()):
            run("recipes/flowmo_1b.py", f"init_from={models[preset]}", f"output_dir={post}")
        models[f"{preset} + 1B"] = post / "pipeline"

    models.update({codec: CODEC_PREFIX + codec for codec in args.codecs})
    result = compare([ModelSpec(name, str(folder)) for name, folder in models.items()],
                     CompareSettings(dataset="embedded", steps=25, guidance=1.5))
    write_report(result, args.results.with_suffix(""))
    trained = (f"Each tokenizer trained {args.steps} steps at batch 16 on the embedded photographs "
               f"(recipes/train_tokenizer.py, recipes/configs/tiny.yaml"
               f"{'' if args.no_1b else '; + 1B: then recipes/flowmo_1b.py'})"
               f"{f', pipelines already in {args.work_dir} reused (--reuse)' if args.reuse else ''}")
    codecs = f"; {', '.join(args.codecs)}: parameter-free reference codecs" if args.codecs else ""
    intro = (f"{trained}{codecs}; plot and grid in {args.results.with_suffix('').name}/. "
             f"Written by `python benchmarks/compare_tiny.py {' '.join(sys.argv[1:])}`.\n\n")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(intro + markdown(result))
    print(args.results.read_text())


if __name__ == "__main__":
    main()
