"""Deterministic signals for preemption tests: sent by the training process to itself at a chosen step."""

import os

from tokenizer_zoo.training import loop


def send_signals_during_training(monkeypatch, at_step: int, signum: int, during_save: int | None = None) -> None:
    """Send ``signum`` to this process right after the ``at_step``-th optimiser step of the next run, and
    ``during_save`` (if given) while the checkpoint that follows is being written."""
    steps = {"done": 0}
    after_micro_step, save_checkpoint = loop.after_micro_step, loop.save_checkpoint

    def counting(*args):
        synced = after_micro_step(*args)
        steps["done"] += synced
        if synced and steps["done"] == at_step:
            os.kill(os.getpid(), signum)
        return synced

    def interrupted_save(*args, **kwargs):
        if during_save is not None and steps["done"] >= at_step:
            os.kill(os.getpid(), during_save)
        return save_checkpoint(*args, **kwargs)

    monkeypatch.setattr(loop, "after_micro_step", counting)
    monkeypatch.setattr(loop, "save_checkpoint", interrupted_save)
