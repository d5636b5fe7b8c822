"""Run in spawned processes by test_distributed.py: each rank updates its share of the data."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from tests.metrics.helpers import TinyRandomLPIPS, noisy, photo_crops, stream
from tokenizer_zoo.metrics import LPIPS, PSNR, SSIM, TokenStatistics

# rank 0 gets images [0, 2), rank 1 images [2, 6): uneven shares, as the last batch of a loader can be
SHARES = ((0, 2), (2, 6))
VOCAB_SIZE = 32


def dataset():
    """Images, references and (B, S, G) token ids, the same in every process."""
    references = photo_crops().float()
    generator = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, VOCAB_SIZE // 2, (references.shape[0], 5, 2), generator=generator)
    return noisy(references, 0.1), references, tokens


def evaluate(start: int, stop: int, batch_size: int = 1) -> dict[str, float]:
    """All metrics over images [start, stop) in batches; computed values (synchronised if distributed)."""
    images, references, tokens = (tensor[start:stop] for tensor in dataset())
    cuts = list(range(0, stop - start, batch_size)) + [stop - start]
    pairs = [(images[a:b], references[a:b]) for a, b in zip(cuts, cuts[1:])]
    results = {
        "psnr": stream(PSNR(), pairs).item(),
        "ssim": stream(SSIM(), pairs).item(),
        "lpips": stream(LPIPS(network=TinyRandomLPIPS()), pairs).item(),
    }
    token_batches = [(tokens[a:b], (48, 48)) for a, b in zip(cuts, cuts[1:])]
    results.update({name: value.item() for name, value in stream(TokenStatistics(VOCAB_SIZE), token_batches).items()})
    return results


def run(rank: int, world_size: int, rendezvous: str, result_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        torch.save(evaluate(*SHARES[rank]), os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
