import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread_per_test_process(monkeypatch):
    """Keep every test process at one intra-op thread. A recipe or evaluation run in-process sets as many
    threads as there are cores (right for one process alone on a machine); under ``pytest -n 2`` on 2 cores
    that oversubscribes the cores while it runs and, kept for the rest of the worker's life, slowed later
    tests 10-50 fold (90 Adam steps of a tiny model: 600 s instead of ~10 s). Subprocesses are not affected."""
    monkeypatch.setattr(torch, "set_num_threads", lambda count: None)
    yield
    monkeypatch.undo()
    torch.set_num_threads(1)
