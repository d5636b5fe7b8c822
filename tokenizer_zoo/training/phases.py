"""Wall-clock and CPU seconds of a run's phases (set-up, compile warm-up, training, evaluation, saving),
for ``benchmarks/main_job.py``: a recipe laps its clock and writes ``phases.json`` beside its output."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path


class PhaseClock:
    """``lap(name)`` adds the time since the previous lap to ``name``; ``timed(name, before)`` first laps
    ``before``, then adds the block's time to ``name``. Both wall (``perf_counter``) and this process's CPU
    time, in seconds."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._last = (time.perf_counter(), time.process_time())

    def _add(self, name: str, since: tuple[float, float]) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[name] = self.wall.get(name, 0.0) + now[0] - since[0]
        self.cpu[name] = self.cpu.get(name, 0.0) + now[1] - since[1]
        self._last = now

    def lap(self, name: str) -> None:
        self._add(name, self._last)

    @contextlib.contextmanager
    def timed(self, name: str, before: str):
        self.lap(before)
        try:
            yield
        finally:
            self._add(name, self._last)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"wall_seconds": self.wall, "cpu_seconds": self.cpu}, indent=2))
