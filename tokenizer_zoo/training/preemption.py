"""Preemption-safe training: SIGTERM, SIGINT and SIGUSR1 end a run with a checkpoint, not a lost day.

Clusters announce preemption with a signal (SLURM and Kubernetes send SIGTERM some seconds before
SIGKILL; ``sbatch --signal=USR1@120`` sends SIGUSR1 ahead of the time limit). While
:meth:`~tokenizer_zoo.training.loop.Trainer.run` trains, :class:`StopSignals` records such a signal
instead of dying; after the optimiser step in progress the processes agree (one all-gather per step,
:meth:`tokenizer_zoo.training.bad_images.BadImageLog.agree`)
that one of them was signalled, write a checkpoint of that step, and stop with
:class:`TrainingPreempted`, whose exit code is ``128 + signal`` (143 for SIGTERM, 130 for SIGINT,
138 for SIGUSR1), as a shell reports a process the signal ended. Re-running the same command resumes.

Further signals while stopping are reported and ignored, so a second Ctrl-C or a repeated SIGTERM
never interrupts the checkpoint being written (checkpoints are written to a temporary folder and
renamed when complete, so even SIGKILL leaves the previous checkpoints loadable).
"""

from __future__ import annotations

import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class TrainingPreempted(Exception):
    """Training stopped on a signal after writing a checkpoint; ``exit_code`` is ``128 + signal``."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def ignore_stop_signals(_worker_id: int | None = None) -> None:
    """Let the main process alone handle the stop signals (a DataLoader ``worker_init_fn``): a worker that a
    process-group signal killed would end the run before its checkpoint."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class StopSignals:
    """While entered (in the main thread), the first of :data:`STOP_SIGNALS` is recorded in ``received``
    instead of ending the process; later ones are reported and ignored. The previous handlers come back
    on exit."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            print(f"received {name}: finishing the current step, then writing a checkpoint", file=sys.stderr, flush=True)
        else:
            print(f"received {name} again: ignored while the checkpoint is written", file=sys.stderr, flush=True)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python handles signals there only
            self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
