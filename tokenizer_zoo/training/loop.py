"""The one training loop of the recipes (:class:`Trainer`) and what they share around it: the
Accelerator, data, resumable epochs under gradient accumulation, EMA evaluation, held-out metrics and
the final pipeline folder. A recipe supplies its model, the inputs of a batch and its evaluation."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, broadcast, send_to_device, set_seed
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tokenizer_zoo.data import load_image_dataset
from tokenizer_zoo.data.bad_images import SkipBadImages, collate_skipping
from tokenizer_zoo.data.streaming import load_streamed_images
from tokenizer_zoo.data.transforms import signed_to_unit, unit_to_signed
from tokenizer_zoo.metrics.code_use import code_use
from tokenizer_zoo.metrics.psnr import psnr
from tokenizer_zoo.training.bad_images import BadImageLog
from tokenizer_zoo.training.checkpoints import check_training_logs, resume, save_checkpoint
from tokenizer_zoo.training.fsdp import fsdp_requested, shard, without_accelerate_fsdp
from tokenizer_zoo.training.preemption import StopSignals, TrainingPreempted, ignore_stop_signals
from tokenizer_zoo.training.reporting import resolve_mixed_precision, save_comparison_grid


def build_accelerator(output_dir: Path, mixed_precision: str, gradient_accumulation_steps: int, seed: int) -> Accelerator:
    """Accelerator with TensorBoard logging under ``output_dir/logs``, seeded identically on every process.

    ``cpu=not cuda`` so that ``accelerate launch --multi_gpu`` gives real data parallelism on CPUs.
    Compilation is Accelerate's own setting (``accelerate launch --dynamo_backend inductor``, the
    ``ACCELERATE_DYNAMO_BACKEND`` variable or the config file). Accelerate checkpoints the module it
    was given, not its compiled wrapper, so the saved names have no ``_orig_mod.`` prefix and
    checkpoints move between compiled and eager runs (tests/training/test_compiled_training.py).
    """
    with without_accelerate_fsdp():  # the Trainer shards the model itself (tokenizer_zoo.training.fsdp)
        accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            mixed_precision=resolve_mixed_precision(mixed_precision),
            gradient_accumulation_steps=gradient_accumulation_steps,
            log_with="tensorboard",
            project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
    set_seed(seed)
    if accelerator.device.type == "cpu" and accelerator.num_processes == 1:
        # `accelerate launch` without a GPU sets OMP_NUM_THREADS=1; one CPU process should use every core
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    return accelerator


@dataclass
class RecipeConfig:
    """The settings every FlowMo recipe has (data, batching, optimiser, EMA, logging); recipes subclass it."""

    dataset: str = "embedded"  # "embedded", "imagefolder:PATH" or a Hub dataset id
    dataset_split: str = "train"
    eval_dataset: str = "embedded"
    eval_split: str = "validation"
    image_column: str | None = None
    output_dir: str = "outputs/run"
    max_steps: int = 1000  # optimiser steps
    seed: int = 0
    batch_size: int = 16  # per process, per micro-step
    gradient_accumulation_steps: int = 1
    num_workers: int = 0
    adam_betas: tuple[float, float] = (0.9, 0.95)
    ema_decay: float = 0.9999
    timestep_sampler: str = "thick_tailed_logit_normal"
    timestep_shift: float = 1.0  # SD3-style shift of the drawn noise levels (1: the paper)
    t1_prob: float = 0.0  # probability of t = 1, the one-pass x0 loss (0: the paper)
    x0_weight: float = 0.0  # weight of the one-pass x0 loss of every image at t = 1 (0: the paper)
    cfg_dropout: float = 0.1
    mixed_precision: str = "auto"  # "auto" = bf16 on GPUs that support it, else fp32
    log_every: int = 25
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    eval_images: int = 16
    eval_steps: int = 25  # sampler steps for held-out reconstructions
    dataset_streaming: bool = False  # read a Hub dataset or image folder as a stream (tokenizer_zoo.data.streaming)
    shuffle_buffer: int = 1000  # examples in the shuffle buffer of a streamed dataset
    strict: bool = False  # unreadable training images stop the run (default: skipped, counted and listed)
    max_bad_fraction: float = 0.01  # stop when more of the training images read than this are unreadable
    fsdp: bool = False  # shard the model with FSDP2 (also set by `accelerate launch --use_fsdp`)


@dataclass
class RecipeData:
    loader: DataLoader
    eval_images: torch.Tensor  # (N, 3, H, W) in [-1, 1], the fixed held-out images


def load_recipe_data(cfg: RecipeConfig, image_size: int) -> RecipeData:
    """Training loader and held-out images of a recipe config's data settings."""
    if cfg.dataset_streaming:
        return _streamed_recipe_data(cfg, image_size)
    train_set = load_image_dataset(cfg.dataset, cfg.dataset_split, image_size, train=True,
                                   image_column=cfg.image_column, seed=cfg.seed)
    eval_set = load_image_dataset(cfg.eval_dataset, cfg.eval_split, image_size, train=False, image_column=cfg.image_column)
    eval_images = torch.stack([eval_set[i]["pixel_values"] for i in range(min(cfg.eval_images, len(eval_set)))])
    loader = DataLoader(SkipBadImages(train_set, strict=cfg.strict), batch_size=cfg.batch_size, shuffle=True,
                        drop_last=True, num_workers=cfg.num_workers, collate_fn=collate_skipping,
                        worker_init_fn=ignore_stop_signals)
    return RecipeData(loader, eval_images)


def _streamed_recipe_data(cfg: RecipeConfig, image_size: int) -> RecipeData:
    """This process's part of the streamed training set; the held-out images are the first of the evaluation
    set, streamed too unless it is bundled."""
    if cfg.num_workers:
        raise ValueError(f"dataset_streaming=true reads the stream in the training process, so that checkpoints "
                         f"hold its position: set num_workers=0 (not {cfg.num_workers})")
    state = PartialState()
    train_set = load_streamed_images(cfg.dataset, cfg.dataset_split, image_size, True, cfg.image_column, cfg.seed,
                                     cfg.shuffle_buffer, state.process_index, state.num_processes, cfg.strict)
    if cfg.eval_dataset in ("embedded", "digits"):
        eval_set = load_image_dataset(cfg.eval_dataset, cfg.eval_split, image_size, train=False)
        eval_items = (eval_set[i] for i in range(min(cfg.eval_images, len(eval_set))))
    else:
        eval_items = itertools.islice(load_streamed_images(cfg.eval_dataset, cfg.eval_split, image_size, False,
                                                           cfg.image_column, strict=cfg.strict), cfg.eval_images)
    eval_images = torch.stack([item["pixel_values"] for item in eval_items])
    return RecipeData(DataLoader(train_set, batch_size=cfg.batch_size, collate_fn=collate_skipping), eval_images)


def epoch_batches(accelerator: Accelerator, loader, step: int, gradient_accumulation_steps: int) -> Iterator:
    """The micro-batches of the rest of the epoch that optimisation step ``step`` falls in, so a resumed
    run sees the batches an uninterrupted one would have.

    Every optimiser step averages exactly ``gradient_accumulation_steps`` micro-batches: the last
    ``len(loader) % gradient_accumulation_steps`` micro-batches of an epoch are read but not yielded
    (``drop_last`` at the level of optimiser steps), so an epoch has ``len(loader) // accumulation``
    steps and a run with micro-batches b x accumulation k sees the batches of a run with batch b k.
    """
    steps_per_epoch = len(loader) // gradient_accumulation_steps
    if steps_per_epoch < 1:
        raise ValueError(f"gradient_accumulation_steps={gradient_accumulation_steps} exceeds the {len(loader)} "
                         "micro-batches of an epoch; lower it or batch_size")
    epoch, done_in_epoch = divmod(step, steps_per_epoch)
    loader.set_epoch(epoch)
    usable = (steps_per_epoch - done_in_epoch) * gradient_accumulation_steps
    for index, batch in enumerate(accelerator.skip_first_batches(loader, done_in_epoch * gradient_accumulation_steps)):
        if index < usable:  # the tail is still read, so that Accelerate sees the epoch end
            yield batch


def accumulated_step(accelerator: Accelerator, model, optimizer, *inputs):
    """One micro-step under gradient accumulation: forward, backward, and the optimiser step that
    Accelerate turns into a no-op until gradients sync. Returns the model's output (``.loss``, ``.logs``)."""
    with accelerator.accumulate(model):
        with accelerator.autocast():  # a sharded model is not wrapped by accelerator.prepare
            output = model(*inputs)
        accelerator.backward(output.loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return output


def after_micro_step(accelerator: Accelerator, weight_norm, ema, params) -> bool:
    """True when the micro-step just taken ended an optimiser step (gradients synced); then the forced
    weight norm is re-applied and the EMA updated."""
    if not accelerator.sync_gradients:
        return False
    if weight_norm is not None:  # models without transformer blocks (CNN baselines) have none
        weight_norm()
    ema.step(params)
    return True


def log_metrics(accelerator: Accelerator, logs: dict[str, torch.Tensor], step: int, progress=None) -> dict[str, float]:
    """Average ``logs`` over processes, send them to the trackers and show them on the progress bar; stop
    training when one is NaN or inf."""
    means = {k: accelerator.reduce(v.detach(), "mean").item() for k, v in logs.items()}
    check_training_logs(accelerator, means, step)
    accelerator.log(means, step=step)
    if progress is not None:
        progress.set_postfix({k: f"{v:.4f}" for k, v in means.items()})
    return means


@contextlib.contextmanager
def ema_weights(ema, params: list[torch.nn.Parameter]):
    """Temporarily swap the EMA weights into ``params``."""
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)


@torch.no_grad()
@contextlib.contextmanager
def eval_mode(model):
    """``model`` in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def main_process_decides(accelerator: Accelerator, decide: Callable[[], bool]) -> bool:
    """``decide()`` run on the main process only (an evaluation that may stop the run); its answer on
    every process."""
    answer = bool(decide()) if accelerator.is_main_process else False
    return bool(broadcast(torch.tensor([answer], device=accelerator.device)).item())


def ema_decision(trainer: "Trainer", decide: Callable[[int, torch.nn.Module], bool]) -> Callable[[int], bool]:
    """``evaluate(step)`` of a run that early stopping may end: ``decide(step, model)`` on the main process
    with the EMA weights (:meth:`Trainer.ema_model`, gathered under FSDP); its answer on every process."""

    def evaluate(step: int) -> bool:
        with trainer.ema_model() as model:
            return main_process_decides(trainer.accelerator, lambda: decide(step, model))

    return evaluate


def reconstruct(model, images: torch.Tensor, num_inference_steps: int = 25, seed: int = 0, **decode_kwargs) -> torch.Tensor:
    """Held-out reconstructions of ``images`` (both [-1, 1], the training convention) through
    ``model.to_pipeline()`` (whose images are [0, 1]) with a fixed generator, in eval mode."""
    pipe = model.to_pipeline()
    pipe.set_progress_bar_config(disable=True)
    with eval_mode(model):
        recon = pipe(signed_to_unit(images.to(pipe.device)), num_inference_steps=num_inference_steps,
                     generator=torch.Generator(pipe.device).manual_seed(seed), output_type="pt", **decode_kwargs).images
    return unit_to_signed(recon)


@torch.no_grad()
def heldout_metrics(model, images: torch.Tensor, grid_path: Path, num_inference_steps: int = 25, seed: int = 0,
                    distances: dict[str, Callable] | None = None) -> dict[str, float]:
    """Mean per-image PSNR and each ``distances[name](recon, images)`` of held-out reconstructions; saves a grid.

    For a diffusion decoder also the one-step PSNRs at t = 1 with the true and the null code and their
    difference, the code gain (:func:`tokenizer_zoo.metrics.code_use.code_use`).
    """
    recon = reconstruct(model, images, num_inference_steps, seed)
    save_comparison_grid(images, recon, Path(grid_path))
    results = {"psnr": psnr(recon.float().cpu(), images.cpu()).mean().item()}
    if getattr(model.decoder, "is_generative", False):
        with eval_mode(model):
            results.update(code_use(model.encoder, model.quantizer, model.decoder, images, seed).as_dict())
    for name, distance in (distances or {}).items():
        results[name] = distance(recon, images.to(recon.device)).float().mean().item()
    return results


def config_yaml(cfg: Any) -> str:
    """A recipe dataclass config as YAML (tuples as lists)."""
    return yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()})


def save_recipe_pipeline(accelerator: Accelerator, model, output_dir: Path, info: dict, cfg: Any) -> None:
    """Write ``output_dir/pipeline`` (a FlowMoPipeline with ``info``) and its ``training_config.yaml``."""
    if not accelerator.is_main_process:
        return
    pipe = accelerator.unwrap_model(model).to_pipeline()
    pipe.info = info
    pipe.save_pretrained(output_dir / "pipeline")
    (output_dir / "pipeline" / "training_config.yaml").write_text(config_yaml(cfg))
    accelerator.print(f"saved the pipeline to {output_dir / 'pipeline'}")


def save_best_pipeline(trainer: "Trainer", stopper, info: dict, run: "TrainingRun", recipe: str, metric: str,
                       digits: int) -> None:
    """End a run kept by early stopping (call on every process): the main process writes the best weights
    ``stopper`` kept as ``output_dir/pipeline``, the others take the EMA weights; then the trackers close.
    The pipeline's ``info`` is ``info`` plus the recipe, the steps, the best step and the best value of
    ``metric`` (rounded to ``digits``)."""
    info = {**info, "recipe": recipe, "steps": run.step, "best_step": stopper.best_step,
            "metrics": {metric: round(stopper.best, digits)}}
    model = trainer.gathered()
    if trainer.accelerator.is_main_process:
        stopper.copy_best_to(trainer.gathered_trainable)
        save_recipe_pipeline(trainer.accelerator, model, trainer.out, info, trainer.cfg)
    else:
        trainer.ema.copy_to(trainer.trainable)
    trainer.accelerator.end_training()


@dataclass
class TrainingRun:
    """How a :meth:`Trainer.run` ended: the step reached, whether ``evaluate`` stopped it, and the
    training throughput (evaluations excluded)."""

    step: int
    stopped: bool
    samples_per_second: float


class Trainer:
    """The loop every recipe runs: micro-steps under gradient accumulation, the forced weight norm and
    EMA after each optimiser step, logging, evaluation, resumable checkpoints and a progress bar.

    Construction prepares ``model``, ``optimizer`` and ``loader`` with ``accelerator``, registers the EMA
    of ``trainable`` and ``checkpointed`` (objects with ``state_dict``) for checkpointing, and resumes from
    the newest checkpoint in ``cfg.output_dir`` (``self.step``). The model's ``forward(*inputs)`` returns
    an output with ``.loss`` and ``.logs``. A loader of a streamed dataset (an endless ``IterableDataset``
    with ``state_dict``, already split between processes) is not prepared: its position is checkpointed
    per process. :mod:`tokenizer_zoo.training.preemption` and :mod:`tokenizer_zoo.training.bad_images`
    say what happens on a stop signal and with unreadable images. Under FSDP (``--use_fsdp`` or
    ``cfg.fsdp``) the model is sharded first (:mod:`tokenizer_zoo.training.fsdp`); evaluations and the
    output pipeline then use :meth:`ema_model` / :meth:`gathered`, which every process must call.
    """

    def __init__(self, cfg: RecipeConfig, accelerator: Accelerator, model: torch.nn.Module, optimizer, loader,
                 trainable: list[torch.nn.Parameter], weight_norm: Callable[[], None] | None = None,
                 checkpointed: tuple = (), name: str = "train"):
        self.cfg, self.accelerator, self.name = cfg, accelerator, name
        self.out, self.trainable, self.weight_norm = Path(cfg.output_dir), trainable, weight_norm
        self.stream = loader.dataset if isinstance(loader.dataset, torch.utils.data.IterableDataset) else None
        self.sharding = shard(accelerator, model, optimizer, trainable, weight_norm) if fsdp_requested(cfg) else None
        # a sharded model is not prepared (no DDP wrapper); a stream's loader is not either
        models = () if self.sharding is not None else (model,)
        prepared = accelerator.prepare(*models, optimizer, *(() if self.stream is not None else (loader,)))
        prepared = list(prepared) if isinstance(prepared, tuple) else [prepared]
        self.model = prepared.pop(0) if self.sharding is None else self.sharding.model
        self.optimizer = prepared.pop(0)
        self.loader = prepared.pop(0) if self.stream is None else loader
        self.ema = EMAModel(trainable, decay=cfg.ema_decay)  # after sharding: the EMA of the sharded parameters
        accelerator.register_for_checkpointing(self.ema, *checkpointed)
        self.step = resume(accelerator, self.out, self.stream.load_state_dict if self.stream is not None else None)
        self.bad_images = BadImageLog(accelerator, self.out / "logs", cfg.max_bad_fraction, cfg.dataset)
        if accelerator.is_main_process:
            accelerator.init_trackers(name, config={k: str(v) for k, v in dataclasses.asdict(cfg).items()})

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def gathered(self) -> torch.nn.Module | None:
        """Call on every process: the model as one unsharded module with the current weights, for the
        main process's evaluation and the final pipeline (under FSDP: the main process's copy, None on
        the others; else :attr:`unwrapped`)."""
        return self.unwrapped if self.sharding is None else self.sharding.gathered()

    @property
    def gathered_trainable(self) -> list[torch.nn.Parameter] | None:
        """The parameters of :meth:`gathered`'s model that ``trainable`` names."""
        return self.trainable if self.sharding is None else self.sharding.copy_trainable

    @contextlib.contextmanager
    def ema_model(self):
        """Call on every process: :meth:`gathered` with the EMA weights swapped in for the block."""
        with ema_weights(self.ema, self.trainable):
            yield self.gathered()

    def _due(self, every: int) -> bool:
        return self.step % every == 0 or self.step == self.cfg.max_steps

    def _batches(self) -> Iterator:
        """The batches from the current step on: the rest of the epoch, or the stream (endless) on this device."""
        if self.stream is None:
            return epoch_batches(self.accelerator, self.loader, self.step, self.cfg.gradient_accumulation_steps)
        return (send_to_device(batch, self.accelerator.device) for batch in self.loader)

    def _save(self) -> Path:
        return save_checkpoint(self.accelerator, self.out, self.step, keep=self.cfg.keep_checkpoints,
                               data_state=self.stream.state_dict() if self.stream is not None else None)

    def run(self, inputs: Callable[[Any, int], tuple], evaluate: Callable[[int], bool] | None = None,
            evaluate_every: int = 0, stopped: bool = False,
            after_step: Callable[[int], dict[str, torch.Tensor]] | None = None) -> TrainingRun:
        """Train until ``cfg.max_steps`` or until ``evaluate`` returns True.

        ``inputs(batch, micro_step)``: the model's inputs of a batch. ``evaluate(step)`` runs every
        ``evaluate_every`` steps and at the last one, before that step's checkpoint. ``after_step(step)``
        runs after each optimiser step (learning-rate changes) and returns extra logs. ``stopped``: the
        run stopped before (e.g. restored early stopping); nothing is trained then.
        """
        cfg, accelerator = self.cfg, self.accelerator
        accumulation = cfg.gradient_accumulation_steps
        progress = tqdm(total=cfg.max_steps, initial=self.step, desc=self.name, disable=not accelerator.is_main_process)
        first_step, micro, seconds, tick = self.step, self.step * accumulation, 0.0, time.perf_counter()
        with StopSignals() as signals:
            while self.step < cfg.max_steps and not stopped:
                for batch in self._batches():
                    batch = self.bad_images.take(batch)
                    output = accumulated_step(accelerator, self.model, self.optimizer, *inputs(batch, micro))
                    micro += 1
                    if not after_micro_step(accelerator, self.weight_norm, self.ema, self.trainable):
                        continue
                    self.step += 1
                    progress.update(1)
                    logs = {**output.logs, **(after_step(self.step) if after_step else {})}
                    if self._due(cfg.log_every):
                        log_metrics(accelerator, logs, self.step, progress)
                    if evaluate is not None and self._due(evaluate_every):
                        seconds += time.perf_counter() - tick
                        stopped = evaluate(self.step)
                        self.model.train()  # evaluations may switch modules to eval mode
                        tick = time.perf_counter()
                    saved = None
                    if self._due(cfg.checkpoint_every) or stopped:
                        saved = self._save()
                    signum = self.bad_images.agree(signals.received)
                    if signum is not None:
                        progress.close()
                        self._stop_on_signal(signum, saved)
                    if self.step >= cfg.max_steps or stopped:
                        break
        progress.close()
        seconds += time.perf_counter() - tick
        samples = (self.step - first_step) * cfg.batch_size * accumulation * accelerator.num_processes
        return TrainingRun(self.step, stopped, round(samples / max(seconds, 1e-9), 2))

    def _stop_on_signal(self, signum: int, saved: Path | None) -> None:
        """Checkpoint the step just taken (unless ``saved`` already holds it), say where, and raise
        :class:`TrainingPreempted` on every process."""
        accelerator = self.accelerator
        saved = saved or self._save()
        message = (f"stopped by {signal.Signals(signum).name} after step {self.step}: checkpoint {saved}; run the "
                   f"same command to resume (exit code {128 + signum})")
        accelerator.print(message)
        accelerator.end_training()
        raise TrainingPreempted(message, signum)
