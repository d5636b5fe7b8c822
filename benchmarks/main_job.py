"""Time ``make train`` (the main job) phase by phase: set-up, weights import, and the recipe's own phases.

    python benchmarks/main_job.py                     # in this checkout (set-up is a no-op when done)
    python benchmarks/main_job.py --fresh-clone       # git clone of HEAD into a temporary folder: first-time cost
    python benchmarks/main_job.py --fresh-machine     # that, and empty uv / pip / weights caches: a new machine
    python benchmarks/main_job.py -- max_steps=50     # recipe overrides after --

Phases: set-up (``make setup-core``: ``scripts/setup.sh --core``), weights import (``make train-weights``: the
LPIPS VGG backbone, imported only when its file is missing), start-up (Python imports; ``make train`` runs the
recipe with plain ``python``), then what recipes/flowmo_1a.py records in
``OUTPUT/phases.json``: set-up in the recipe (model, data, the step-0 held-out report excluded), the first
training step (with a compiled model: the compile warm-up), training, held-out evaluations, saving. Each
phase is given as wall seconds and CPU seconds (all processes of the phase); wall time on a machine that
other jobs share is inflated, so the load average is written beside it, and CPU seconds / cores is the
wall time the phase would take on idle cores -- but only roughly: on an oversubscribed machine the OpenMP
threads of torch spin while they wait for each other, which inflates CPU seconds too (a training step of
the tiny recipe took 1.0 CPU s on one thread, ~10 CPU s on two threads at load 14). The figure that counts
is wall time on an idle machine. Writes benchmarks/results/main_job.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "main_job.md"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fresh_caches(work: Path) -> dict[str, str]:
    """The environment of a machine that has never installed or imported anything: empty caches for uv, pip
    and the imported weights (the recipe reads the weights from there too)."""
    return {**os.environ, "UV_CACHE_DIR": str(work / "uv-cache"), "PIP_NO_CACHE_DIR": "1",
            "TOKENIZER_ZOO_CACHE": str(work / "tokenizer-zoo-cache")}


def timed(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of ``command`` (SystemExit when it fails)."""
    wall, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(command, cwd=cwd, env=env)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")
    return time.perf_counter() - wall, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh-clone", action="store_true", help="time everything in a new clone of HEAD")
    parser.add_argument("--fresh-machine", action="store_true",
                        help="--fresh-clone with empty uv, pip and weights caches (temporary folders)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"the markdown table (default {RESULTS})")
    parser.add_argument("--output-dir", default=None, help="the recipe's output_dir (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="recipe overrides (key=value), after --")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="main_job_"))
    checkout = ROOT
    args.fresh_clone |= args.fresh_machine
    env = fresh_caches(work) if args.fresh_machine else None
    if args.fresh_clone:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "clone")], check=True)
        checkout = work / "clone"
    output_dir = Path(args.output_dir or work / "flowmo_1a_tiny")
    load_before = os.getloadavg()
    phases: list[tuple[str, float, float]] = []
    phases.append(("set-up (make setup-core)", *timed(["make", "-s", "setup-core"], checkout, env)))
    phases.append(("weights import (make train-weights)", *timed(["make", "-s", "train-weights"], checkout, env)))
    # what `make train` runs, with the output folder and the overrides
    launch = [str(checkout / ".venv" / "bin" / "python"), "recipes/flowmo_1a.py", f"output_dir={output_dir}",
              *args.overrides]
    wall, cpu = timed(launch, checkout, env)
    recorded = json.loads((output_dir / "phases.json").read_text())
    inner_wall, inner_cpu = recorded["wall_seconds"], recorded["cpu_seconds"]
    phases.append(("start-up (imports)", wall - sum(inner_wall.values()),
                   cpu - sum(inner_cpu.values())))
    phases += [(f"recipe: {name.replace('_', '-')}", inner_wall[name], inner_cpu[name]) for name in inner_wall]
    info = json.loads((output_dir / "pipeline" / "tokenizer_zoo.json").read_text())["info"]
    load_after = os.getloadavg()

    cores = len(os.sched_getaffinity(0))
    total_wall, total_cpu = sum(p[1] for p in phases), sum(p[2] for p in phases)
    where = " on a fresh machine (fresh clone, empty caches)" if args.fresh_machine else " on a fresh clone" * args.fresh_clone
    lines = [f"# The main job (`make train`), phase by phase{where}", "",
             f"{cpu_model()}, {cores} cores; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
             f"(other jobs share the machine when it is above ~0). Recipe overrides: {args.overrides or 'none'}.",
             "", "| phase | wall s | CPU s | CPU s / cores |", "|---|---|---|---|"]
    lines += [f"| {name} | {w:.1f} | {c:.1f} | {c / cores:.1f} |" for name, w, c in phases]
    lines += [f"| **total** | **{total_wall:.1f}** | **{total_cpu:.1f}** | **{total_cpu / cores:.1f}** |", "",
              f"Steps: {info['steps']}; held-out metrics: {json.dumps(info['metrics'])}"]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
