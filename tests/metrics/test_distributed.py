"""Two gloo processes, each updating its share of the data, compute what one process computes over all.

The processes come from a fork server that imported the worker module once: children start
without importing torch again (spawn would, twice) and without forking this pytest process,
whose thread pools could deadlock a forked child.
"""

import pytest
import torch
import torch.multiprocessing as mp

from tests.metrics import distributed_worker


@pytest.mark.slow
def test_two_processes_gather_to_the_single_process_values(tmp_path):
    world_size = len(distributed_worker.SHARES)
    mp.set_forkserver_preload([distributed_worker.__name__])
    args = (world_size, str(tmp_path / "rendezvous"), str(tmp_path))
    mp.start_processes(distributed_worker.run, args=args, nprocs=world_size, start_method="forkserver")
    single = distributed_worker.evaluate(0, distributed_worker.SHARES[-1][1])
    for rank in range(world_size):
        gathered = torch.load(tmp_path / f"rank{rank}.pt")
        assert gathered.keys() == single.keys()
        for name, value in single.items():
            assert gathered[name] == pytest.approx(value, rel=1e-6), (rank, name)
    # the shares alone differ from the whole, so the equality above needs the gathering
    assert distributed_worker.evaluate(*distributed_worker.SHARES[0])["psnr"] != pytest.approx(single["psnr"], rel=1e-6)
