"""The trainer's side of unreadable training images: listed once per file, counted, and a limit.

Every process notes the files its batches skipped (:func:`tokenizer_zoo.data.bad_images.collate_skipping`).
After each optimiser step the processes exchange, in one all-gather, the stop signal any of them
received and how many images they read and skipped; only when some were skipped are the names
gathered too. The main process appends each file not listed before to ``output_dir/logs/bad_images.tsv``
(name, tab, reason; kept across resumes) and prints it. When more than ``max_bad_fraction`` of the
images read by all processes are bad, every process stops with :class:`TooManyBadImagesError`; the
fraction is judged on at least :data:`MIN_IMAGES_JUDGED` images, so a bad file among the first
batches of a good dataset does not stop the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object

from tokenizer_zoo.data.bad_images import SKIPPED_KEY, TooManyBadImagesError

LOG_FILE = "bad_images.tsv"
MIN_IMAGES_JUDGED = 1000


class BadImageLog:
    """Counts and lists the skipped images of a run (see the module docstring)."""

    def __init__(self, accelerator, log_dir: Path, max_bad_fraction: float, dataset: str = "dataset"):
        self.accelerator, self.max_bad_fraction, self.dataset = accelerator, max_bad_fraction, dataset
        self.path = Path(log_dir) / LOG_FILE
        self.listed = {line.split("\t")[0] for line in self.path.read_text().splitlines()} if self.path.is_file() else set()
        self.pending: list[tuple[str, str]] = []
        self.pending_read = 0
        self.bad = self.read = 0  # all processes, this run

    def take(self, batch: Any) -> Any:
        """``batch`` without its list of skipped files, which is noted; batches of other kinds pass as they are."""
        if not isinstance(batch, dict) or SKIPPED_KEY not in batch:
            return batch
        batch = dict(batch)
        skipped = batch.pop(SKIPPED_KEY)
        self.pending.extend(skipped)
        self.pending_read += len(next(iter(batch.values()))) + len(skipped)
        return batch

    def agree(self, signal: int | None) -> int | None:
        """The per-step exchange (one collective): returns the stop signal any process received, lists new bad
        files, and raises :class:`TooManyBadImagesError` on every process when there are too many."""
        accelerator = self.accelerator
        mine = torch.tensor([[signal or 0, len(self.pending), self.pending_read]], device=accelerator.device)
        every = accelerator.gather(mine) if accelerator.num_processes > 1 else mine
        signal, new_bad, new_read = int(every[:, 0].max()), int(every[:, 1].sum()), int(every[:, 2].sum())
        if new_bad:
            self._list(gather_object(self.pending) if accelerator.num_processes > 1 else self.pending)
        self.pending, self.pending_read = [], 0
        self.bad, self.read = self.bad + new_bad, self.read + new_read
        if self.bad > self.max_bad_fraction * max(self.read, MIN_IMAGES_JUDGED):
            raise TooManyBadImagesError(
                f"{self.bad} of the {self.read} training images read so far are unreadable, more than "
                f"max_bad_fraction={self.max_bad_fraction:g}: check that dataset={self.dataset} is the folder you "
                f"meant (the files are listed in {self.path}), or raise max_bad_fraction")
        return signal or None

    def _list(self, entries: list[tuple[str, str]]) -> None:
        new = {}
        for name, reason in entries:
            if name not in self.listed and name not in new:
                new[name] = reason
        if new and self.accelerator.is_main_process:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as log:
                log.writelines(f"{name}\t{' '.join(reason.split())}\n" for name, reason in new.items())
            for count, reason in enumerate(new.values(), start=len(self.listed) + 1):
                self.accelerator.print(f"skipped unreadable training image {count} (listed in {self.path}; "
                                       f"strict=true makes them fatal): {reason}")
        self.listed.update(new)
