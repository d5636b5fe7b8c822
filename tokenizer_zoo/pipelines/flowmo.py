"""FlowMoPipeline: images -> binary tokens -> images, the diffusers way.

    pipe = FlowMoPipeline.from_pretrained("outputs/flowmo_tiny")
    tokens = pipe.encode(images)                  # EncodeOutput(indices, codes)
    images = pipe.decode(tokens, num_inference_steps=25, rho=4, guidance_scale=1.5)
    recon = pipe(images)                          # encode + decode
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline

from tokenizer_zoo.pipelines.base import TokenizerPipelineMixin, pop_download_kwargs
from tokenizer_zoo.pipelines.hub import push_to_hub
from tokenizer_zoo.pipelines.images import from_model_output, to_model_input
from tokenizer_zoo.samplers.likelihood import LikelihoodOutput, conditional_velocity, flow_log_likelihood

DEFAULT_GUIDANCE_INTERVAL = (0.1453, 0.5050)


class FlowMoPipeline(TokenizerPipelineMixin, DiffusionPipeline):
    """A FlowMo tokenizer: encoder, quantizer, diffusion decoder and sampling scheduler.

    ``info`` holds what the model card reports (preset, dataset, steps, metrics); it is saved in
    ``tokenizer_zoo.json`` beside diffusers' files.
    """

    model_cpu_offload_seq = "encoder->decoder"
    sampling_defaults = {"num_inference_steps": 25, "rho": 4.0, "guidance_scale": 1.5,
                         "guidance_interval": DEFAULT_GUIDANCE_INTERVAL}

    def __init__(self, encoder, quantizer, decoder, scheduler):
        super().__init__()
        self.register_modules(encoder=encoder, quantizer=quantizer, decoder=decoder, scheduler=scheduler)
        self.info = {}

    def _velocity(self, codes, x, t, guidance_scale, guidance_interval) -> torch.Tensor:
        batch = x.shape[0]
        t_batch = t.expand(batch).to(x.dtype)
        low, high = guidance_interval
        if guidance_scale == 1.0 or not low <= float(t) <= high:
            return self.decoder(codes, x, t_batch)
        # conditional and unconditional passes in one forward call
        drop = torch.cat([torch.zeros(batch, dtype=torch.bool), torch.ones(batch, dtype=torch.bool)]).to(x.device)
        both = self.decoder(torch.cat([codes, codes]), torch.cat([x, x]), torch.cat([t_batch, t_batch]), drop_code=drop)
        v_cond, v_uncond = both.chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    @torch.no_grad()
    def decode(
        self,
        tokens,
        num_inference_steps: int = 25,
        rho: float = 4.0,
        guidance_scale: float = 1.5,
        guidance_interval: tuple[float, float] = DEFAULT_GUIDANCE_INTERVAL,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        latents: torch.Tensor | None = None,
    ):
        """Images from tokens by sampling the decoder's flow from noise (t = 1) to data (t = 0).

        ``tokens``: an EncodeOutput, integer indices, or float codes (B, S, d). ``latents``: the
        starting noise (B, 3, H, W) (diffusers' name); drawn from ``generator`` when not given.
        """
        codes = self._codes(tokens)
        shape = (codes.shape[0], 3, self.image_size, self.image_size)
        if latents is None:
            latents = torch.randn(shape, generator=generator, device=generator.device if generator else self.device)
        elif not isinstance(latents, torch.Tensor) or tuple(latents.shape) != shape:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must be the starting noise of shape {shape} (one per token sequence), got {got}")
        x = latents.to(self.device, self.decoder.dtype)
        self.scheduler.set_timesteps(num_inference_steps, rho=rho, device=self.device)
        # checked once here: a decoder compiled with torch.compile skips its own input checks
        self.decoder.check_inputs(codes, x, self.scheduler.timesteps[0])
        for t in self.progress_bar(self.scheduler.timesteps):
            v = self._velocity(codes, x, t, guidance_scale, guidance_interval)
            x = self.scheduler.step(v, t, x).prev_sample
        return from_model_output(x, output_type)

    @torch.no_grad()
    def likelihood(self, images, num_inference_steps: int = 32, rho: float = 1.0, divergence: str = "auto",
                   num_probes: int = 1, guidance_scale: float = 1.0,
                   guidance_interval: tuple[float, float] = DEFAULT_GUIDANCE_INTERVAL, dequantize: bool = False,
                   generator: torch.Generator | None = None) -> LikelihoodOutput:
        """log p(x | code(x)) in nats and bits per dimension (8-bit convention) by integrating the
        probability-flow ODE of the decoder from data to noise with its divergence (Heun steps).

        ``divergence``: "exact" (one backward pass per dimension), "hutchinson" (``num_probes``
        random probes from ``generator``) or "auto" (exact for at most 64 values per image).
        """
        pixels = to_model_input(images, self.image_size).to(self.device, self.decoder.dtype)
        codes = self.encode(pixels).codes
        velocity = conditional_velocity(self.decoder, codes, guidance_scale, guidance_interval)
        return flow_log_likelihood(velocity, pixels, num_steps=num_inference_steps, rho=rho, method="heun",
                                   divergence=divergence, num_probes=num_probes, generator=generator,
                                   dequantize=dequantize)

    def __call__(self, images, **decode_kwargs):
        """Reconstructions of ``images``: encode, then decode with ``decode_kwargs``."""
        return self.decode(self.encode(images), **decode_kwargs)

    @classmethod
    def from_single_file(cls, path_or_url_or_hub_file, config=None, *, torch_dtype: torch.dtype | None = None,
                         state_dict_key: str | None = None, verbose: bool = True, **kwargs) -> "FlowMoPipeline":
        """A pipeline from a checkpoint of the FlowMo reference release (a ``torch.save`` dict with
        ``model_ema_state_dict``), as diffusers loads original single files.

        ``path_or_url_or_hub_file``: a local ``.pth``, a Hub URL, ``owner/repo/file.pth``, or
        ``"flowmo_lo"`` / ``"flowmo_hi"`` for the paper's weights (fetched with ``hf_hub_download``).
        ``config``: the release's yaml, for what tensor shapes cannot tell (image size, code
        length, LFQ grouping, sampler). ``state_dict_key``: ``model_ema_state_dict`` (the yaml's
        default) or ``model_state_dict``; ``verbose``: print the dropped unused parameters;
        ``kwargs``: the Hub download settings (``cache_dir``, ``revision``, ``token``, ...).
        ``pipe.info["sampling"]`` holds the release's sampler settings:
        ``pipe.decode(tokens, **pipe.info["sampling"])`` samples as it does.
        See :mod:`tokenizer_zoo.pipelines.single_file`.
        """
        from tokenizer_zoo.pipelines.single_file import convert_release_checkpoint, dropped_summary

        download = pop_download_kwargs(kwargs)
        if kwargs:
            raise TypeError(f"from_single_file() got unexpected keyword argument(s) {sorted(kwargs)}; it takes config, "
                            f"torch_dtype, state_dict_key, verbose and the Hub download settings")
        result = convert_release_checkpoint(path_or_url_or_hub_file, config=config, torch_dtype=torch_dtype,
                                            state_dict_key=state_dict_key, **download)
        if verbose:
            print(dropped_summary(result))
        return result.pipeline

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the pipeline with a model card (preset, BPP, data, sampler defaults, metrics)."""
        return push_to_hub(self, repo_id, **kwargs)
