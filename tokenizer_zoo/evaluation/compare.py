"""Many tokenizers, one dataset: every model reconstructs the same images, scored by the same streamed metrics.

    result = compare([ModelSpec.parse("a=outputs/flowmo_tiny/pipeline"), ModelSpec.parse("b=other")],
                     CompareSettings(dataset="embedded", num_images=64))
    write_report(result, "outputs/compare")      # compare.md / .json, rate_distortion.png, grid.png

The dataset is read once, in batches: each batch is centre-cropped and resized to the compared
resolution once, its Inception features (rFID's real side) are computed once, and every model
reconstructs it in turn. A model of another native size gets the batch resized to its own size
and its reconstruction resized back (bicubic, antialiased). Metrics are torchmetrics states, so N
can be 50,000; under ``accelerate launch`` each process takes its share of the batches and the
states are summed. A model that fails to load or to run becomes a row with its one-line reason.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from tokenizer_zoo.data import evaluation_split, load_image_dataset
from tokenizer_zoo.errors import one_line
from tokenizer_zoo.evaluation.models import ModelSpec, TimedModel, load_model, parameter_counts
from tokenizer_zoo.evaluation.streaming import (ModelMetrics, batch_generator, batches, evaluation_accelerator,
                                                gather_skipped, readable_subset, sampler_settings)

PREPROCESSING = ("each image is resized so its short side is {r} px (bicubic, antialiased) and centre-cropped to "
                 "{r} x {r}, once for all models; a model of another native size gets these images resized to its "
                 "size and its reconstructions resized back to {r} px (bicubic, antialiased)")


@dataclass
class CompareSettings:
    """What every model is compared on. ``resolution`` None: the largest native size among the models;
    ``steps``/``rho``/``guidance``/``guidance_interval`` None: each diffusion model's own default."""

    dataset: str = "embedded"
    split: str | None = None
    image_column: str | None = None
    num_images: int | None = None
    resolution: int | None = None
    steps: int | None = None
    rho: float | None = None
    guidance: float | None = None
    guidance_interval: tuple[float, float] | None = None
    seed: int = 0
    batch_size: int = 16
    lpips: tuple[str, ...] = ("vgg",)
    fid: bool = True
    grid_images: int = 8


@dataclass
class ModelRow:
    """One model's line of the comparison; ``error`` is its one-line reason when it did not run."""

    name: str
    source: str
    error: str | None = None
    pipeline: str | None = None
    native_size: int | None = None
    tokens: int | None = None
    bits_per_token: float | None = None
    encoder_parameters: int | None = None
    decoder_parameters: int | None = None
    sampler: dict | str | None = None
    nfe: float | None = None
    encode_images_per_second: float | None = None
    decode_images_per_second: float | None = None
    metrics: dict = field(default_factory=dict)
    skipped_metrics: dict = field(default_factory=dict)


@dataclass
class CompareResult:
    settings: dict
    rows: list[ModelRow]
    originals: torch.Tensor | None = None  # (K, 3, R, R) in [-1, 1], the grid's first row
    reconstructions: dict[str, torch.Tensor] = field(default_factory=dict)  # row name -> (K, 3, R, R)

    @property
    def ran(self) -> list[ModelRow]:
        return [row for row in self.rows if row.error is None]

    def to_json(self) -> dict:
        return {"settings": self.settings, "models": [asdict(row) for row in self.rows]}


@dataclass
class _Entry:
    row: ModelRow
    model: TimedModel | None = None
    metrics: ModelMetrics | None = None
    bar: tqdm | None = None


def _load(spec: ModelSpec, device) -> _Entry:
    row = ModelRow(name=spec.name, source=spec.source)
    try:
        pipe = load_model(spec).to(device)
    except Exception as error:  # any failure to load becomes the row's reason
        row.error = f"cannot load: {one_line(error)}"
        return _Entry(row)
    pipe.set_progress_bar_config(disable=True)
    model = TimedModel(pipe)
    row.pipeline, row.native_size, row.bits_per_token = type(pipe).__name__, pipe.image_size, model.bits_per_token
    row.encoder_parameters, row.decoder_parameters = parameter_counts(pipe)
    return _Entry(row, model)


def _unique_names(entries: list[_Entry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        count = seen[entry.row.name] = seen.get(entry.row.name, 0) + 1
        if count > 1:
            entry.row.name = f"{entry.row.name} ({count})"


def compare(specs: list[ModelSpec], settings: CompareSettings, accelerator: Accelerator | None = None
            ) -> CompareResult:
    """Load every model, stream the dataset through all of them, and return one row a model."""
    accelerator = accelerator or evaluation_accelerator()
    main = accelerator.is_main_process
    entries = [_load(spec, accelerator.device) for spec in specs]
    _unique_names(entries)
    running = [entry for entry in entries if entry.model is not None]
    resolution = settings.resolution or max((entry.row.native_size for entry in running), default=None)
    split = settings.split or (evaluation_split(settings.dataset) if running else None)
    sampler = sampler_settings(settings.steps, settings.rho, settings.guidance, settings.guidance_interval)
    recorded = {**asdict(settings), "split": split, "resolution": resolution, "processes": accelerator.num_processes,
                "preprocessing": PREPROCESSING.format(r=resolution) if resolution else None}
    result = CompareResult(recorded, [entry.row for entry in entries])
    if not running:
        return result

    data = readable_subset(load_image_dataset(settings.dataset, split, resolution, train=False,
                                              image_column=settings.image_column), settings.num_images)
    for position, entry in enumerate(running):
        entry.metrics = ModelMetrics.build(getattr(entry.model.pipe, "quantizer", None), settings.lpips, settings.fid,
                                           accelerator.device, lpips_builder=_shared_lpips)
        entry.bar = tqdm(total=len(data), desc=entry.row.name, position=position, disable=not main, unit="img")
    skipped = []
    for index, batch in enumerate(batches(data, settings.batch_size, accelerator)):
        skipped += batch["skipped"]
        images = batch["pixel_values"]
        if images is None:
            continue
        if main:
            result.originals = _first(settings.grid_images, result.originals, images)
        real = next((e.metrics.real_features(images) for e in running if e.metrics.rfid is not None), None)
        for entry in running:
            if entry.row.error is not None:
                continue
            try:
                recon = entry.model(images, batch_generator(settings.seed, index, accelerator), sampler)
                entry.metrics.update(images, recon.images, recon.encoded, real)
            except Exception as error:  # the model's row gets the reason; the others go on
                entry.row.error = f"failed on batch {index}: {one_line(error)}"
                continue
            if main:
                name = entry.row.name
                result.reconstructions[name] = _first(settings.grid_images, result.reconstructions.get(name),
                                                      recon.images)
            entry.bar.update(len(images))
    for entry in running:
        entry.bar.close()
    recorded["num_images"] = len(data) - len(gather_skipped(skipped, accelerator))
    _finish(running, sampler, accelerator)
    return result


def _first(count: int, kept: torch.Tensor | None, batch: torch.Tensor) -> torch.Tensor:
    """The first ``count`` images of the batches seen so far, on the CPU."""
    kept = batch[:0].cpu() if kept is None else kept
    return torch.cat([kept, batch[:count - len(kept)].cpu()])


def _finish(running: list[_Entry], sampler: dict, accelerator: Accelerator) -> None:
    """Errors of any process fail the row everywhere; the others' metrics are reduced across processes."""
    errors = gather_object([[entry.row.error for entry in running]])
    for position, entry in enumerate(running):
        entry.row.error = next((mine[position] for mine in errors if mine[position]), None)
        accounts = gather_object([(*entry.model.timing(), entry.model.images, entry.model.decoder_rows)])
        if entry.row.error is not None:  # a failed model keeps no partial numbers
            continue
        entry.row.encode_images_per_second = sum(a[0] / a[1] for a in accounts if a[1] > 0)
        entry.row.decode_images_per_second = sum(a[0] / a[2] for a in accounts if a[2] > 0)
        images = sum(account[3] for account in accounts)
        has_decoder = entry.model.decoder is not None  # a file codec has none: no NFE
        entry.row.nfe = sum(account[4] for account in accounts) / images if images and has_decoder else None
        entry.row.tokens = entry.model.tokens
        entry.row.sampler = entry.model.sampler or {**entry.model.pipe.sampling_defaults, **sampler}
        entry.row.metrics = entry.metrics.compute()
        entry.row.skipped_metrics = entry.metrics.skipped


@functools.cache
def _shared_lpips(net: str, weights_path=None) -> torch.nn.Module:
    """One LPIPS network per backbone for all models (and runs) of a process."""
    from tokenizer_zoo.losses.perceptual import build_lpips

    return build_lpips(net, weights_path)
