"""What evaluate and compare share: readable-image batches split across processes, and the metrics they stream.

Metrics are torchmetrics states, so any number of images streams through in constant memory and
``compute()`` sums the states of every process (``accelerate launch``).
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, gather_object
from torch.utils.data import DataLoader, Dataset, Subset

from tokenizer_zoo.data import InvalidImageError
from tokenizer_zoo.metrics import (FileRate, ReconstructionFID, ReconstructionMetrics, TokenStatistics,
                                  reconstruction_metrics)
from tokenizer_zoo.metrics.inception import InceptionFeatureExtractor, InceptionWeightsMissingError


class ReadableImages(Dataset):
    """``data`` whose unreadable items become ``{"skipped": {"file", "reason"}}`` instead of raising."""

    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        try:
            return self.data[index]
        except InvalidImageError as error:
            file = self.data.file_name(index) if hasattr(self.data, "file_name") else f"item {index}"
            return {"skipped": {"file": file, "reason": str(error)}}


def collate(items: list[dict]) -> dict:
    """A batch of the readable images (``pixel_values`` None when there are none) and the skipped ones."""
    images = [item["pixel_values"] for item in items if "pixel_values" in item]
    return {"pixel_values": torch.stack(images) if images else None,
            "skipped": [item["skipped"] for item in items if "skipped" in item]}


def evaluation_accelerator() -> Accelerator:
    """An Accelerator that splits images across processes without padding the last batch; one CPU process
    uses every core (``accelerate launch`` sets one thread per process without a GPU)."""
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              dataloader_config=DataLoaderConfiguration(even_batches=False))
    if accelerator.device.type == "cpu" and accelerator.num_processes == 1:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    return accelerator


def readable_subset(data, num_images: int | None) -> ReadableImages | Subset:
    """The first ``num_images`` items of ``data`` (all without it), unreadable ones marked instead of raising."""
    data = ReadableImages(data)
    return data if num_images is None else Subset(data, range(min(num_images, len(data))))


def batches(data, batch_size: int, accelerator: Accelerator) -> DataLoader:
    """This process's share of ``data`` in order, as :func:`collate` batches."""
    return accelerator.prepare(DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate))


def unreadable(data, accelerator: Accelerator) -> list[dict]:
    """Every unreadable image of ``data``; each process reads its share once."""
    mine = [item["skipped"] for index in range(accelerator.process_index, len(data), accelerator.num_processes)
            if "skipped" in (item := data[index])]
    return sorted(gather_object(mine), key=lambda entry: entry["file"])


def gather_skipped(skipped: list[dict], accelerator: Accelerator) -> list[dict]:
    """The skipped images of all processes, sorted by file, each printed once on stderr."""
    every = sorted(gather_object(skipped), key=lambda entry: entry["file"])
    for entry in every if accelerator.is_main_process else []:
        print(f"skipped {entry['file']}: {entry['reason']}", file=sys.stderr)
    return every


def batch_generator(seed: int, index: int, accelerator: Accelerator) -> torch.Generator:
    """The sampling noise of batch ``index`` of this process: the same for every model given the same ``seed``."""
    return torch.Generator(accelerator.device).manual_seed(seed * 1_000_003 + index * 1009 + accelerator.process_index)


def sampler_settings(steps: int | None = None, rho: float | None = None, guidance: float | None = None,
                     guidance_interval: tuple[float, float] | None = None) -> dict:
    """The ``decode`` keywords of the sampler settings given (the rest stay each model's defaults)."""
    given = {"num_inference_steps": steps, "rho": rho, "guidance_scale": guidance,
             "guidance_interval": guidance_interval and tuple(guidance_interval)}
    return {key: value for key, value in given.items() if value is not None}


@functools.cache
def inception_extractor() -> InceptionFeatureExtractor:
    """The FID InceptionV3, loaded once per process (raises InceptionWeightsMissingError without weights)."""
    return InceptionFeatureExtractor.from_pretrained()


@dataclass
class ModelMetrics:
    """The metrics streamed for one model, and for each one left out the reason why.

    ``update(originals, reconstructions, encoded)``: images in [-1, 1] at the compared size; ``encoded``
    what the pipeline's ``encode`` returned: its token ids (``indices``, None for continuous codes), or a
    file codec's files, whose sizes are then the bit rate (``bpp`` reached and ``mean_quality``).
    ``real_features`` lets several models share one Inception pass over the originals.
    ``compute()``: metric name -> float.
    """

    pairwise: ReconstructionMetrics
    rfid: ReconstructionFID | None
    tokens: TokenStatistics | None
    files: FileRate | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, quantizer, lpips_nets: tuple[str, ...], fid: bool, device, lpips_builder=None) -> "ModelMetrics":
        """PSNR, SSIM, LPIPS per backbone, rFID and token statistics; whatever cannot run is skipped with its reason."""
        pairwise = reconstruction_metrics(lpips_nets=tuple(lpips_nets), build_network=lpips_builder)
        skipped = dict(pairwise.skipped)
        rfid = None
        if not fid:
            skipped["rfid"] = "disabled with --no-fid"
        else:
            try:
                rfid = ReconstructionFID(inception_extractor()).to(device)
            except InceptionWeightsMissingError as error:
                skipped["rfid"] = str(error)
        files = None
        if quantizer is None:  # a file codec (JPEG, WebP): its files' sizes are its bit rate
            tokens, files = None, FileRate().to(device)
            skipped["tokens"] = "a file codec has no token ids; bpp is its files' size"
        else:
            try:
                tokens = TokenStatistics.for_quantizer(quantizer).to(device)
            except TypeError as error:  # continuous codes: no token ids, no bit rate
                tokens, skipped["tokens"] = None, str(error)
        return cls(pairwise.to(device), rfid, tokens, files, skipped)

    def real_features(self, originals: torch.Tensor):
        """Inception features of ``originals`` (None without rFID), to pass to several models' ``update``."""
        if self.rfid is None:
            return None
        with torch.no_grad():
            return self.rfid.extractor(originals)

    def update(self, originals: torch.Tensor, reconstructions: torch.Tensor, encoded, real_features=None) -> None:
        self.pairwise.update(reconstructions, originals)
        if self.rfid is not None:
            self.rfid.update(originals if real_features is None else real_features, reconstructions)
        if self.tokens is not None and encoded.indices is not None:
            self.tokens.update(encoded.indices, image_size=originals.shape[-2:])
        if self.files is not None:
            self.files.update(encoded.file_bits, encoded.qualities, image_size=originals.shape[-2:])

    def compute(self) -> dict[str, float]:
        values = self.pairwise.summary()
        if self.rfid is not None:
            values["rfid"] = float(self.rfid.compute().fid)
        for rate in (self.tokens, self.files):
            if rate is not None:
                values.update({name: float(value) for name, value in rate.compute().items()})
        return values
