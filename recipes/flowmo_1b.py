"""Stage 1B of FlowMo: mode-seeking post-training of the decoder of a stage-1A pipeline.

    accelerate launch recipes/flowmo_1b.py                  # on outputs/flowmo_1a_tiny/pipeline, CPU, minutes
    accelerate launch --multi_gpu --num_processes 8 recipes/flowmo_1b.py --config recipes/configs/lo_1b.yaml

``init_from`` names the stage-1A output (a pipeline folder or a Hub id). Encoder and quantizer are
frozen; the decoder trains on ``L_flow + sample_weight * d(x_chain, x)`` where ``x_chain`` is an
``sample_steps``-step Euler sample with random per-sample times, back-propagated through the chain
(activation checkpointing per decoder call), and ``d`` the ``sample_net`` perceptual network
(``resnet50_logits`` in the paper). See tokenizer_zoo/training/stage1b.py.

Every ``eval_every`` steps the EMA weights reconstruct the held-out images (grid + PSNR +
``stop_metric``); the best EMA weights are kept and the run stops after ``patience`` evaluations
without improvement. Post-training that goes on too long or with too large a ``sample_weight``
reward-hacks the perceptual network (its distance keeps falling while reconstructions get worse):
keep the stopping rule on a held-out metric. The run ends by writing the best weights as a
``FlowMoPipeline`` to ``output_dir/pipeline``; re-running the same command resumes.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from config import load_config  # noqa: E402

from tokenizer_zoo.errors import run_main  # noqa: E402
from tokenizer_zoo.layers.weight_norm import ForcedWeightNorm  # noqa: E402
from tokenizer_zoo.losses import PERCEPTUAL, FlowMatchingLoss  # noqa: E402
from tokenizer_zoo.pipelines import FlowMoPipeline  # noqa: E402
from tokenizer_zoo.training.loop import (RecipeConfig, Trainer, build_accelerator, heldout_metrics,  # noqa: E402
                                         ema_decision, load_recipe_data, save_best_pipeline)
from tokenizer_zoo.training.optim import adam  # noqa: E402
from tokenizer_zoo.training.stage1a import draw_flow_noise  # noqa: E402
from tokenizer_zoo.training.stage1b import EarlyStopping, SampleLoss, Stage1BModel, draw_chain_noise  # noqa: E402


@dataclasses.dataclass
class Stage1BConfig(RecipeConfig):
    init_from: str = "outputs/flowmo_1a_tiny/pipeline"  # stage-1A pipeline folder or Hub id
    output_dir: str = "outputs/flowmo_1b_tiny"
    max_steps: int = 25000
    batch_size: int = 8
    lr: float = 5e-5
    sample_weight: float = 0.01  # lambda_sample
    sample_steps: int = 8  # n, the Euler chain's length
    sample_net: str = "resnet50_logits"  # a name in tokenizer_zoo.losses.PERCEPTUAL
    sample_net_kwargs: dict = dataclasses.field(default_factory=dict)  # e.g. {weights_path: resnet50.safetensors}
    checkpointing: bool = True  # activation checkpointing per decoder call of the chain
    eval_every: int = 250  # K: held-out evaluation (and grid) every K steps
    patience: int = 4  # stop after this many evaluations without improvement
    stop_metric: str = "psnr"  # "psnr" (higher is better) or a PERCEPTUAL name (lower is better)


def build_model(cfg: Stage1BConfig, init: FlowMoPipeline) -> tuple[Stage1BModel, dict]:
    """The stage-1A pipeline's parts under the stage-1B loss, and the held-out distances ``stop_metric`` needs."""
    sample_net = PERCEPTUAL.build(cfg.sample_net, **cfg.sample_net_kwargs)
    loss = FlowMatchingLoss(perceptual_weight=0, timestep_sampler=cfg.timestep_sampler, cfg_dropout=cfg.cfg_dropout)
    model = Stage1BModel(init.encoder, init.quantizer, init.decoder, loss,
                         SampleLoss(sample_net, num_steps=cfg.sample_steps, checkpointing=cfg.checkpointing),
                         sample_weight=cfg.sample_weight)
    distances = {} if cfg.stop_metric == "psnr" else {
        cfg.stop_metric: sample_net if cfg.stop_metric == cfg.sample_net else PERCEPTUAL.build(cfg.stop_metric)}
    return model, distances


def batch_inputs(loss: FlowMatchingLoss, accelerator, cfg: Stage1BConfig):
    """``inputs(batch, micro_step)``: the images, their flow-matching noise and the chain's noise and
    times, drawn per (seed, micro-step) for the global batch and sliced per process."""

    def inputs(batch, micro: int) -> tuple:
        images = batch["pixel_values"]
        where = dict(process_index=accelerator.process_index, num_processes=accelerator.num_processes,
                     seed=cfg.seed, micro_step=micro)
        return (images, draw_flow_noise(images, loss=loss, **where),
                draw_chain_noise(images, num_steps=cfg.sample_steps, **where))

    return inputs


def early_stopping(trainer: Trainer, stopper: EarlyStopping, images: torch.Tensor, distances: dict,
                   cfg: Stage1BConfig):
    """``evaluate(step)``: held-out metrics of the EMA weights; True when the run should stop (the same
    answer on every process)."""

    def decide(step: int, model) -> bool:
        accelerator = trainer.accelerator
        metrics = heldout_metrics(model, images, trainer.out / "grids" / f"step_{step:08d}.png",
                                  num_inference_steps=cfg.eval_steps, seed=cfg.seed, distances=distances)
        best = stopper.update(metrics[cfg.stop_metric], trainer.gathered_trainable, step)
        accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
        accelerator.print(f"[step {step}] held-out " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                          + (" (best)" if best else f" (best {stopper.best:.4f} at step {stopper.best_step})"))
        return stopper.should_stop

    return ema_decision(trainer, decide)


def main(argv: list[str] | None = None) -> torch.nn.Module:
    cfg = load_config(Stage1BConfig, argv, "tiny_1b.yaml", __doc__)
    accelerator = build_accelerator(Path(cfg.output_dir), cfg.mixed_precision, cfg.gradient_accumulation_steps, cfg.seed)
    init = FlowMoPipeline.from_pretrained(cfg.init_from)  # encoder and quantizer frozen, the decoder trains
    model, distances = build_model(cfg, init)
    trainable = list(init.decoder.parameters())
    optimizer = adam(trainable, lr=cfg.lr, betas=cfg.adam_betas)
    weight_norm = ForcedWeightNorm(init.decoder)
    stopper = EarlyStopping(cfg.patience, higher_is_better=cfg.stop_metric == "psnr")
    data = load_recipe_data(cfg, init.image_size)
    trainer = Trainer(cfg, accelerator, model, optimizer, data.loader, trainable, weight_norm,
                      checkpointed=(weight_norm, stopper), name="flowmo_1b")
    evaluate = early_stopping(trainer, stopper, data.eval_images, distances, cfg)
    stopped = evaluate(0) if trainer.step == 0 else stopper.should_stop  # step 0: the stage-1A weights
    run = trainer.run(batch_inputs(model.loss, accelerator, cfg), evaluate, cfg.eval_every, stopped=stopped)
    if run.stopped:
        accelerator.print(f"stopped at step {run.step}: no held-out {cfg.stop_metric} improvement in {cfg.patience} "
                          f"evaluations; keeping the EMA weights of step {stopper.best_step}")

    # --- the output: the best EMA weights as a loadable pipeline -------------------------------
    metric = f"heldout_{cfg.stop_metric} (best EMA, {len(data.eval_images)} images, {cfg.eval_steps} steps)"
    info = {**init.info, "init_from": cfg.init_from, "stopped_early": run.stopped}
    save_best_pipeline(trainer, stopper, info, run, "flowmo_1b", metric, digits=4)
    return trainer.unwrapped


if __name__ == "__main__":
    sys.exit(run_main(main, "flowmo_1b.py"))
