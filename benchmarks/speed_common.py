"""What the speed benchmarks share: the measured matmul peak, the CPU's bf16 support, and timing
eager and compiled callables side by side (interleaved repeats, best of each)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best observed float32 FLOP/s of one large ``torch.mm`` (n x n by n x n) on this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    return 2 * n**3 / best_time(lambda: torch.mm(a, b), repeats)


NO_NATIVE_BF16 = "not measured: no native bf16"


def native_bf16_flags() -> list[str]:
    """The CPU's native bf16 instruction flags of ``BF16_FLAGS`` (empty: bf16 is emulated)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.is_file() else set()
    return [flag for flag in BF16_FLAGS if flag in flags]


def bf16_cells(requested: bool, fp32_seconds: float, bf16_seconds: float | None, scale: float = 1.0,
               digits: int = 4) -> str:
    """The two bf16 cells of a table row (time x ``scale``, bf16 / fp32 speed): empty when bf16 was not
    asked for, "not measured: no native bf16" when it was asked for but not timed."""
    if not requested:
        return ""
    if bf16_seconds is None:
        return f" | {NO_NATIVE_BF16} | {NO_NATIVE_BF16}"
    return f" | {bf16_seconds * scale:.{digits}f} | {fp32_seconds / bf16_seconds:.2f}x"


def cpu_bf16_line() -> str:
    """Which native bf16 instructions the CPU has, and what that means for ``mixed_precision=bf16``."""
    have = native_bf16_flags()
    if have:
        return f"CPU bf16 flags: {', '.join(have)} (native bf16: autocast is not emulated; whether it beats fp32 " \
               f"depends on the model's widths)"
    return (f"CPU bf16 flags: none of {', '.join(BF16_FLAGS)}: bf16 autocast is emulated and expected to be "
            f"SLOWER than fp32 on this CPU")


def bf16_autocast(fn: Callable[[], object], on: bool = True) -> Callable[[], object]:
    """``fn`` under CPU bf16 autocast (Accelerate's ``mixed_precision=bf16``) when ``on``, else as it is."""
    def call():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
            return fn()
    return call


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Shortest of ``repeats`` timed calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def side_by_side(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best time of each callable over ``repeats`` rounds, the callables interleaved within a round so
    that a change of machine load affects all of them alike."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = min(best[name], best_time(fn, 1))
    return best


def header(peak: float) -> str:
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32 matmul peak "
            f"{peak / 1e9:.1f} GFLOP/s (torch.mm 2048^2, this run)\n{cpu_bf16_line()}")
