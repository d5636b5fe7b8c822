"""The stage-1A training module: one ``nn.Module`` whose forward is the whole loss, for DDP.

    loss = L_flow + perceptual_weight * LPIPS(x_hat, x) + quantizer.aux_loss      (FLOWMO_SPEC §3)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tokenizer_zoo.losses.flow_matching import FlowMatchingLoss, FlowNoise
from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
from tokenizer_zoo.samplers.shifted_euler import ShiftedEulerScheduler


@dataclass
class Stage1AOutput:
    loss: torch.Tensor
    logs: dict[str, torch.Tensor]


class Stage1AModel(nn.Module):
    """Encoder -> quantizer -> flow-matching loss of the decoder, plus the quantizer's aux loss."""

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, decoder: nn.Module, loss: FlowMatchingLoss):
        super().__init__()
        self.encoder, self.quantizer, self.decoder, self.loss = encoder, quantizer, decoder, loss

    def forward(self, images: torch.Tensor, noise: FlowNoise | None = None,
                generator: torch.Generator | None = None) -> Stage1AOutput:
        quantized = self.quantizer(self.encoder(images))
        flow = self.loss(self.decoder, images, quantized.quantized, generator=generator, noise=noise)
        total = flow.total + quantized.aux_loss
        logs = {"loss": total, "flow": flow.flow, "perceptual": flow.perceptual, "quantizer": quantized.aux_loss}
        if self.loss.x0_weight > 0:
            logs["x0"] = flow.x0
        logs.update({f"quantizer/{k}": v for k, v in quantized.losses.items()})
        return Stage1AOutput(loss=total, logs={k: v.detach().float() for k, v in logs.items()})

    def to_pipeline(self, scheduler: ShiftedEulerScheduler | None = None) -> FlowMoPipeline:
        """A pipeline sharing this model's encoder, quantizer and decoder (not copies)."""
        return FlowMoPipeline(self.encoder, self.quantizer, self.decoder, scheduler or ShiftedEulerScheduler())


def draw_flow_noise(images: torch.Tensor, process_index: int, num_processes: int, loss: FlowMatchingLoss,
                    seed: int, micro_step: int) -> FlowNoise:
    """This process's rows of the noise drawn for the whole global batch of ``micro_step``.

    The draw depends only on (seed, micro_step), so N processes with batch b see exactly the
    noise that one process with batch N*b sees, and a resumed run sees what an uninterrupted one
    did.
    """
    batch = images.shape[0]
    generator = torch.Generator().manual_seed(seed * 1_000_003 + micro_step)
    global_batch = images.new_empty((batch * num_processes, *images.shape[1:]), device="cpu")
    noise = loss.draw(global_batch, generator)
    mine = noise.rows(process_index * batch, (process_index + 1) * batch)
    return FlowNoise(*(part.to(images.device) for part in mine))
