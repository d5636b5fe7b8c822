"""The sharded (FSDP) checkpoint format in one process: an exact round trip into fresh objects whose optimiser
has no state yet, tensors the loader lacks read whole, and planted pickles in the folder never opened.
Two processes: tests/training/test_fsdp.py."""

import pickle

import torch
from diffusers.training_utils import EMAModel
from torch import nn

from tests.training.test_checkpoints import Payload, _equal
from tokenizer_zoo.training.sharded_state import load_sharded, load_tree, save_sharded, state_tree
from tokenizer_zoo.training.stage1b import EarlyStopping


def _objects(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    ema, stopper = EMAModel(list(model.parameters()), decay=0.9), EarlyStopping(patience=3, higher_is_better=True)
    return {"models": [model], "optimizers": [optimizer], "schedulers": [], "objects": [ema, stopper]}


def test_sharded_state_round_trips_into_fresh_objects_without_unpickling(tmp_path):
    saved = _objects(0)
    model, optimizer, (ema, stopper) = saved["models"][0], saved["optimizers"][0], saved["objects"]
    for _ in range(2):
        model(torch.randn(5, 4)).square().mean().backward()
        optimizer.step(), optimizer.zero_grad(), ema.step(model.parameters())
    stopper.update(12.5, model.parameters(), step=2)  # best weights: tensors the fresh objects lack
    data = save_sharded(tmp_path / "sharded", state_tree(saved))
    assert sorted(p.suffix for p in (tmp_path / "sharded").iterdir()) == [".safetensors"]

    marker = tmp_path / "code_ran"
    for name in (".metadata", "__0_0.distcp", "planted.pkl"):  # what DCP's default reader would open
        (tmp_path / "sharded" / name).write_bytes(pickle.dumps(Payload(marker)))  # as DCP writes .metadata
    fresh = _objects(1)  # other weights, an optimiser without state, no best weights
    load_tree(fresh, load_sharded(tmp_path / "sharded", data, state_tree(fresh)))
    assert not marker.exists()
    for kind in ("models", "objects"):
        for loaded, original in zip(fresh[kind], saved[kind]):
            assert _equal(loaded.state_dict(), original.state_dict()), kind
    assert _equal(fresh["optimizers"][0].state_dict(), optimizer.state_dict())
