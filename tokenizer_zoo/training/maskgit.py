"""What the MaskGiT recipe needs besides its loop: a dataset's tokens cached once in a token file,
and one ``nn.Module`` whose forward is the masked-token loss (so DDP syncs its gradients)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tokenizer_zoo.data.bad_images import SKIPPED_KEY, collate_skipping

from tokenizer_zoo.data.transforms import signed_to_unit
from tokenizer_zoo.generation.maskgit import MaskedLossOutput, MaskGiT
from tokenizer_zoo.tokens import TokenFile, load_tokens, save_tokens


class MaskedTokenTraining(nn.Module):
    """``forward(sub_tokens, labels, generator)`` = :meth:`MaskGiT.masked_loss` (random masks and label
    dropout drawn from ``generator``)."""

    def __init__(self, maskgit: MaskGiT):
        super().__init__()
        self.maskgit = maskgit

    def forward(self, sub_tokens: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator | None = None) -> MaskedLossOutput:
        return self.maskgit.masked_loss(sub_tokens, labels, generator=generator)


def tokenizer_fingerprint(pipe) -> str:
    """12 hex digits of SHA-256 over the encoder's and quantizer's weights: tokens cached with one
    tokenizer are never mistaken for another's, even when both have the same configuration."""
    digest = hashlib.sha256()
    for part in (pipe.encoder, pipe.quantizer):
        for name, tensor in sorted(part.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


@torch.no_grad()
def encode_dataset(pipe, dataset: Dataset, batch_size: int = 64, label_key: str = "label",
                   description: str = "encoding") -> tuple[torch.Tensor, list[int]]:
    """Token indices (N, *token_shape) and class labels of every item of ``dataset``."""
    indices, labels = [], []
    for batch in tqdm(DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping), desc=description):
        for name, reason in batch.pop(SKIPPED_KEY):  # a SkipBadImages dataset replaced these by the next image
            tqdm.write(f"skipped unreadable image {name}: {reason}")
        if label_key not in batch:
            raise KeyError(f"the dataset's items have no {label_key!r} (keys: {sorted(batch)}); a class-conditional "
                           "model needs labelled images (e.g. dataset=digits)")
        indices.append(pipe.encode(signed_to_unit(batch["pixel_values"])).indices.cpu())  # [-1, 1] -> the pipeline's [0, 1]
        labels += [int(label) for label in batch[label_key]]
    return torch.cat(indices), labels


def cached_tokens(folder: str | Path, pipe, dataset: Dataset, split: str, batch_size: int = 64,
                  preset: str | None = None) -> TokenFile:
    """The tokens and labels of ``dataset`` made by ``pipe``: read from ``folder`` when cached there,
    otherwise encoded once and saved as ``tokens_{split}_{fingerprint}.safetensors``."""
    path = Path(folder) / f"tokens_{split}_{tokenizer_fingerprint(pipe)}.safetensors"
    if not path.is_file():
        indices, labels = encode_dataset(pipe, dataset, batch_size, description=f"caching {split} tokens")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tokens(path, indices, pipe, pipe.image_size, preset=preset, labels=labels)
    tokens = load_tokens(path, expect=pipe)
    if tokens.labels is None:
        raise ValueError(f"{path} has no class labels; delete it to re-encode the dataset with its labels")
    return tokens
