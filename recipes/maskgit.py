"""Stage 2: a class-conditional MaskGiT on the tokens of a trained tokenizer (FLOWMO_SPEC §6).

    accelerate launch recipes/flowmo_1a.py --config recipes/configs/digits.yaml   # a tokenizer on the digits
    accelerate launch recipes/maskgit.py                                          # MaskGiT on its tokens

1. Caches the dataset's tokens and labels once (token files under ``output_dir/tokens``, named by
   the tokenizer's weight fingerprint).
2. Trains MaskGiT with Accelerate (AdamW, warm-up + cosine learning rate, EMA, TensorBoard,
   resumable checkpoints: re-running the command continues).
3. Saves sample grids (one row per class) with the EMA weights every ``grid_every`` steps.
4. Samples ``eval_samples`` images (balanced classes) and reports gFID, sFID, IS, precision and
   recall against ``reference_images`` real training images, beside two reference rows: the real
   held-out images and the tokenizer's reconstructions of them; with ``classifier_images`` > 0
   also the class accuracy of a pixel classifier fitted on that many real training images.
   Writes ``metrics.json``, ``metrics.md``, ``samples.png`` and the ``MaskGiTPipeline`` folder
   ``output_dir/pipeline``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader, Subset, TensorDataset
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from config import load_config  # noqa: E402

from tokenizer_zoo.data import load_image_dataset  # noqa: E402
from tokenizer_zoo.data.bad_images import SkipBadImages  # noqa: E402
from tokenizer_zoo.errors import run_main  # noqa: E402
from tokenizer_zoo.generation import MaskGiT  # noqa: E402
from tokenizer_zoo.metrics.generation import PixelClassifier, generation_metrics, inception_features  # noqa: E402
from tokenizer_zoo.metrics.inception import InceptionFeatureExtractor, InceptionWeightsMissingError  # noqa: E402
from tokenizer_zoo.data.transforms import signed_to_unit, unit_to_signed  # noqa: E402
from tokenizer_zoo.pipelines import TOKENIZER_PIPELINES, MaskGiTPipeline, load_pipeline  # noqa: E402
from tokenizer_zoo.training.loop import RecipeConfig, Trainer, build_accelerator, config_yaml  # noqa: E402
from tokenizer_zoo.training.preemption import ignore_stop_signals  # noqa: E402
from tokenizer_zoo.training.maskgit import MaskedTokenTraining, cached_tokens  # noqa: E402
from tokenizer_zoo.training.optim import adam  # noqa: E402
from tokenizer_zoo.training.reporting import save_image_grid  # noqa: E402


@dataclasses.dataclass
class MaskGiTConfig(RecipeConfig):
    tokenizer: str = "outputs/digits_tokenizer/pipeline"  # a tokenizer pipeline folder or Hub id
    dataset: str = "digits"
    eval_dataset: str = "digits"
    output_dir: str = "outputs/maskgit_digits"
    label_column: str | None = "label"  # Hub datasets and image folders: the integer class column
    num_classes: int = 10
    num_sub_tokens: int = 2  # 18-bit LFQ tokens -> 2 sub-tokens of 9 bits
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    label_dropout: float = 0.1
    max_steps: int = 2000
    batch_size: int = 64
    lr: float = 4e-4
    weight_decay: float = 0.03
    adam_betas: tuple[float, float] = (0.9, 0.96)
    warmup_steps: int = 200
    ema_decay: float = 0.999
    encode_batch_size: int = 64
    # sampling (MaskGiT) and decoding (the tokenizer; eval_steps = its sampler steps)
    num_inference_steps: int = 8  # MaskGiT's decoding steps
    guidance_scale: float = 2.0
    temperature: float = 1.0
    choice_temperature: float = 4.5
    grid_every: int = 1000
    grid_per_class: int = 8
    # generation metrics (0 = skip them)
    eval_samples: int = 500
    reference_images: int = 1000
    classifier_images: int = 4500  # fit a pixel classifier on this many real images for class accuracy (0 = off)
    eval_batch_size: int = 100


def sample(pipe: MaskGiTPipeline, labels: torch.Tensor, cfg: MaskGiTConfig, seed: int, batch_size: int,
           description: str = "sampling") -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] of ``labels`` with the pipeline's sampling defaults, generated in
    batches with a fixed seed."""
    generator = torch.Generator(pipe.device).manual_seed(seed)
    chunks = labels.split(batch_size)
    images = [pipe(chunk, generator=generator, output_type="pt", decode_kwargs={"num_inference_steps": cfg.eval_steps}
                   ).images.cpu() for chunk in tqdm(chunks, desc=description, disable=len(chunks) == 1)]
    return unit_to_signed(torch.cat(images))


def balanced_labels(count: int, num_classes: int) -> torch.Tensor:
    return torch.arange(count) % num_classes


def labelled_images(cfg: MaskGiTConfig, name: str, split: str, image_size: int):
    """Centre-cropped images with their labels (``{"pixel_values", "label"}``)."""
    return load_image_dataset(name, split, image_size, train=False, image_column=cfg.image_column,
                              label_column=cfg.label_column)


def stack(data, count: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` images (N, 3, H, W) and labels (N,) of a labelled dataset."""
    loader = DataLoader(Subset(data, range(min(count, len(data)))), batch_size=batch_size)
    items = list(tqdm(loader, desc="loading images", disable=len(loader) == 1))
    return torch.cat([i["pixel_values"] for i in items]), torch.cat([i["label"] for i in items])


def evaluate(pipe: MaskGiTPipeline, cfg: MaskGiTConfig, out: Path) -> dict:
    """Generation metrics of the samples and of two reference rows, as a dict and ``metrics.md``."""
    try:
        extractor = InceptionFeatureExtractor.from_pretrained().to(pipe.device)
    except InceptionWeightsMissingError as error:
        print(f"generation metrics skipped: {error}")
        return {"skipped": str(error)}
    batch = cfg.eval_batch_size
    train = labelled_images(cfg, cfg.dataset, cfg.dataset_split, pipe.image_size)
    held_out = labelled_images(cfg, cfg.eval_dataset, cfg.eval_split, pipe.image_size)
    held_images, held_labels = stack(held_out, cfg.eval_samples, batch)
    sample_labels = balanced_labels(cfg.eval_samples, cfg.num_classes)
    samples = sample(pipe, sample_labels, cfg, cfg.seed + 1, batch)
    save_image_grid(samples[: 10 * cfg.num_classes], out / "samples.png", per_row=cfg.num_classes)
    generator = torch.Generator(pipe.device).manual_seed(cfg.seed)
    recon = unit_to_signed(torch.cat([pipe.tokenizer(signed_to_unit(images.to(pipe.device)), generator=generator,
                                                     output_type="pt", num_inference_steps=cfg.eval_steps).images.cpu()
                                      for images in tqdm(held_images.split(batch), desc="reconstructing")]))
    rows = {"MaskGiT samples": (samples, sample_labels),
            "tokenizer reconstructions of held-out images": (recon, held_labels),
            "real held-out images": (held_images, held_labels)}
    reference = stack(train, max(cfg.reference_images, cfg.classifier_images), batch)
    real = inception_features(extractor, tqdm(reference[0][: cfg.reference_images].split(batch), desc="Inception"))
    classifier = None
    if cfg.classifier_images > 0:
        classifier = PixelClassifier(reference[0][: cfg.classifier_images], reference[1][: cfg.classifier_images])
    results = {"reference": f"{len(real.pool)} real images of {cfg.dataset} [{cfg.dataset_split}]",
               "feature_network": extractor.source, "rows": {}}
    for name, (images, labels) in rows.items():
        features = inception_features(extractor, tqdm(images.split(batch), desc=f"Inception ({name})"))
        values, results["skipped"] = generation_metrics(extractor, real, features)
        if classifier is not None:
            values["class_accuracy"] = classifier.accuracy(images, labels)
        results["rows"][name] = {"images": len(images), **{k: round(v, 4) for k, v in values.items()}}
    columns = {"gfid": "gFID", "sfid": "sFID", "inception_score": "IS", "precision": "precision", "recall": "recall",
               "class_accuracy": "class accuracy"}
    lines = [f"Reference: {results['reference']}; features: {extractor.source}.", "",
             "| images | n | " + " | ".join(columns.values()) + " |", "|---" * (len(columns) + 2) + "|"]
    for name, row in results["rows"].items():
        lines.append(f"| {name} | {row['images']} | " + " | ".join(str(row.get(k, "n/a")) for k in columns) + " |")
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))
    return results


def cache_tokens(cfg: MaskGiTConfig, accelerator) -> tuple:
    """The tokenizer (on the accelerator's device) and the dataset's cached tokens and labels."""
    tokenizer = load_pipeline(cfg.tokenizer, kinds=TOKENIZER_PIPELINES).to(accelerator.device)
    tokenizer.set_progress_bar_config(disable=True)
    train_set = SkipBadImages(labelled_images(cfg, cfg.dataset, cfg.dataset_split, tokenizer.image_size), cfg.strict)
    with accelerator.main_process_first():  # the main process encodes, the others read its file
        tokens = cached_tokens(Path(cfg.output_dir) / "tokens", tokenizer, train_set, cfg.dataset_split,
                               cfg.encode_batch_size, preset=tokenizer.info.get("preset"))
    labels = torch.tensor(tokens.labels)
    if labels.min() < 0 or labels.max() >= cfg.num_classes:
        raise SystemExit(f"the dataset's labels span [{int(labels.min())}, {int(labels.max())}] but num_classes is "
                         f"{cfg.num_classes}; set num_classes=")
    return tokenizer, tokens, labels


def build_maskgit(cfg: MaskGiTConfig, tokens) -> MaskGiT:
    return MaskGiT(token_shape=list(tokens.token_shape), index_vocab_size=tokens.vocab_size,
                   num_sub_tokens=cfg.num_sub_tokens, num_classes=cfg.num_classes, hidden_size=cfg.hidden_size,
                   num_layers=cfg.num_layers, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
                   dropout=cfg.dropout, label_dropout=cfg.label_dropout)


def mask_inputs(cfg: MaskGiTConfig, accelerator):
    """``inputs(batch, micro_step)``: sub-tokens, labels and the generator of the masks and label dropout,
    which depend on (seed, micro-step, process) only, so resuming repeats them."""

    def inputs(batch, micro: int) -> tuple:
        sub_tokens, labels = batch
        masks = torch.Generator().manual_seed((cfg.seed * 1_000_003 + micro) * 4099 + accelerator.process_index)
        return sub_tokens, labels, masks

    return inputs


def sample_grids(trainer: Trainer, pipeline, cfg: MaskGiTConfig):
    """``evaluate(step)``: one row of samples per class with the EMA weights and a fixed seed (main process)."""

    def evaluate(step: int) -> bool:
        with trainer.ema_model() as model:  # every process: under FSDP the weights are gathered
            if not trainer.accelerator.is_main_process:
                return False
            labels = balanced_labels(cfg.grid_per_class * cfg.num_classes, cfg.num_classes).sort().values
            images = sample(pipeline(model.maskgit), labels, cfg, cfg.seed, batch_size=len(labels))
        path = save_image_grid(images, trainer.out / "grids" / f"step_{step:08d}.png", per_row=cfg.grid_per_class)
        trainer.accelerator.print(f"[step {step}] samples: {path}")
        return False

    return evaluate


def save_and_evaluate(pipe: MaskGiTPipeline, cfg: MaskGiTConfig, accelerator) -> None:
    """Write the pipeline folder, then (``eval_samples`` > 0) the generation metrics, and the folder again
    with them for its model card (main process)."""
    if not accelerator.is_main_process:
        return
    out = Path(cfg.output_dir)
    pipe.save_pretrained(out / "pipeline")  # before the evaluation, which takes a while
    (out / "pipeline" / "training_config.yaml").write_text(config_yaml(cfg))
    accelerator.print(f"saved the pipeline to {out / 'pipeline'}")
    if cfg.eval_samples > 0:
        rows = evaluate(pipe, cfg, out).get("rows", {})
        pipe.info["metrics"] = {f"{metric} ({name})": value for name, row in rows.items()
                                for metric, value in row.items() if metric != "images"}
        pipe.save_pretrained(out / "pipeline")


def main(argv: list[str] | None = None) -> MaskGiTPipeline:
    cfg = load_config(MaskGiTConfig, argv, "maskgit_digits.yaml", __doc__)
    accelerator = build_accelerator(Path(cfg.output_dir), cfg.mixed_precision, cfg.gradient_accumulation_steps, cfg.seed)
    tokenizer, tokens, labels = cache_tokens(cfg, accelerator)
    maskgit = build_maskgit(cfg, tokens)
    accelerator.print(f"MaskGiT: {sum(p.numel() for p in maskgit.parameters()) / 1e6:.2f}M parameters, "
                      f"{len(tokens)} images of {maskgit.seq_len} sub-tokens (radices {maskgit.split.radices})")
    optimizer = adam(maskgit.parameters(), lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay,
                     decoupled=True)
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.max_steps)
    loader = DataLoader(TensorDataset(maskgit.split.split(tokens.indices), labels), batch_size=cfg.batch_size,
                        shuffle=True, drop_last=True, num_workers=cfg.num_workers,
                        generator=torch.Generator().manual_seed(cfg.seed), worker_init_fn=ignore_stop_signals)
    trainer = Trainer(cfg, accelerator, MaskedTokenTraining(maskgit), optimizer, loader, list(maskgit.parameters()),
                      checkpointed=(schedule,), name="maskgit")  # the schedule steps once per optimiser step

    def pipeline(network: torch.nn.Module) -> MaskGiTPipeline:
        return MaskGiTPipeline(network, tokenizer, cfg.num_inference_steps, cfg.guidance_scale, cfg.temperature,
                               cfg.choice_temperature)

    def after_step(step: int) -> dict:
        schedule.step()
        return {"lr": torch.tensor(schedule.get_last_lr()[0])}

    run = trainer.run(mask_inputs(cfg, accelerator), sample_grids(trainer, pipeline, cfg), cfg.grid_every,
                      after_step=after_step)
    trainer.ema.copy_to(trainer.trainable)  # the output: EMA weights, a loadable pipeline, metrics
    trained = trainer.gathered()  # under FSDP: the main process's unsharded copy (None on the others)
    pipe = pipeline(trained.maskgit if trained is not None else trainer.unwrapped.maskgit)
    pipe.maskgit.eval()
    pipe.info = {"recipe": "maskgit", "dataset": cfg.dataset, "steps": run.step, "tokenizer": cfg.tokenizer,
                 "tokenizer_preset": tokenizer.info.get("preset"), "train_sequences_per_second": run.samples_per_second}
    save_and_evaluate(pipe, cfg, accelerator)
    accelerator.end_training()
    return pipe


if __name__ == "__main__":
    sys.exit(run_main(main, "maskgit.py"))
