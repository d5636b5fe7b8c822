"""A tiny model trained by the shared Trainer on a streamed image folder (flat grey images: image i has level i),
recording the levels of every batch it trains on. Used in-process and by tests/_stream_worker.py."""

import io
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from accelerate.state import AcceleratorState, GradientState
from torch import nn

from tokenizer_zoo.training.loop import RecipeConfig, Trainer, build_accelerator, load_recipe_data

BATCH = 2


class GreyRegression(nn.Module):
    """Fits a line to (grey level, level squared): the weights depend on the order of the batches."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)
        with torch.no_grad():
            self.linear.weight.fill_(0.5)
            self.linear.bias.zero_()

    def forward(self, pixels):
        level = pixels.mean(dim=(1, 2, 3)).unsqueeze(1)
        loss = ((self.linear(level) - level**2) ** 2).mean()
        return SimpleNamespace(loss=loss, logs={"loss": loss.detach()})


def grey_folder(folder, count: int = 7):
    """``count`` flat grey 16 px PNGs, image i of grey level 20 i (:func:`levels` reads it back)."""
    folder.mkdir(parents=True)
    for index in range(count):
        stream = io.BytesIO()
        Image.fromarray(np.full((16, 16, 3), index * 20, dtype=np.uint8)).save(stream, "PNG")
        (folder / f"{index:02d}.png").write_bytes(stream.getvalue())
    return folder


def levels(pixels: torch.Tensor) -> list[int]:
    return [round((float(v) + 1) * 127.5 / 20) for v in pixels.mean(dim=(1, 2, 3))]


def train_streamed(folder, output_dir, max_steps: int, shuffle_buffer: int = 1, seen: list | None = None):
    """Train ``max_steps`` (resuming from ``output_dir``); append each batch's levels to ``seen``. Returns the
    trained model's state."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    cfg = RecipeConfig(dataset=f"imagefolder:{folder}", dataset_streaming=True, shuffle_buffer=shuffle_buffer,
                       output_dir=str(output_dir), batch_size=BATCH, max_steps=max_steps, checkpoint_every=100,
                       log_every=1, mixed_precision="no", eval_images=1, seed=3)
    accelerator = build_accelerator(output_dir, "no", 1, cfg.seed)
    model = GreyRegression()
    data = load_recipe_data(cfg, 16)
    trainer = Trainer(cfg, accelerator, model, torch.optim.SGD(model.parameters(), lr=0.1), data.loader,
                      list(model.parameters()))

    def inputs(batch, micro):
        if seen is not None:
            seen.append(levels(batch["pixel_values"]))
        return (batch["pixel_values"],)

    trainer.run(inputs)
    accelerator.end_training()
    return {k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()}
