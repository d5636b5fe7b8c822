"""FlowMoPipeline: images -> binary tokens -> images, the diffusers way.

    pipe = FlowMoPipeline.from_pretrained("outputs/flowmo_tiny")
    tokens = pipe.encode(images)                        # EncodeOutput(indices, codes)
    images = pipe.decode(tokens).images                 # sampling defaults of the saved configs
    images = pipe.decode(tokens, num_inference_steps=8, guidance_scale=2.0).images   # overridden for one call
    recon = pipe(images, output_type="pt").images       # encode + decode, (B, 3, H, W) in [0, 1]

Sampling defaults have one home each: ``num_inference_steps`` and ``rho`` in the scheduler's config,
``guidance_scale`` and ``guidance_interval`` in the pipeline's (``model_index.json``). Any diffusers
flow-matching scheduler (``set_timesteps(num_inference_steps)``, ``step``) can be assigned to
``pipe.scheduler``; its timesteps are divided by its ``num_train_timesteps`` to give flow times.
"""

from __future__ import annotations

from typing import Iterator

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput

from tokenizer_zoo.data.images import from_model_output
from tokenizer_zoo.data.transforms import to_model_input
from tokenizer_zoo.pipelines.arguments import check_arguments
from tokenizer_zoo.pipelines.base import TokenizerPipelineMixin, pop_download_kwargs
from tokenizer_zoo.pipelines.hub import push_to_hub
from tokenizer_zoo.registry import PIPELINES
from tokenizer_zoo.samplers.likelihood import LikelihoodOutput, conditional_velocity, flow_log_likelihood

DEFAULT_GUIDANCE_INTERVAL = (0.1453, 0.5050)
DEFAULT_NUM_INFERENCE_STEPS = 25  # for schedulers whose config has no num_inference_steps (diffusers' own)


@PIPELINES.register("FlowMoPipeline")
class FlowMoPipeline(TokenizerPipelineMixin, DiffusionPipeline):
    """A FlowMo tokenizer: encoder, quantizer, diffusion decoder and sampling scheduler.

    ``info`` holds what the model card reports (preset, dataset, steps, metrics); it is saved in
    ``tokenizer_zoo.json`` beside diffusers' files.
    """

    model_cpu_offload_seq = "encoder->decoder"

    def __init__(self, encoder, quantizer, decoder, scheduler, guidance_scale: float = 1.5,
                 guidance_interval: list = DEFAULT_GUIDANCE_INTERVAL):  # [low, high]; a bare type for diffusers
        super().__init__()
        self.register_modules(encoder=encoder, quantizer=quantizer, decoder=decoder, scheduler=scheduler)
        self.register_to_config(guidance_scale=float(guidance_scale), guidance_interval=list(guidance_interval))
        self.info = {}

    @property
    def sampling_defaults(self) -> dict:
        """What ``decode`` uses for the settings it is not given, read from the scheduler's and the pipeline's configs."""
        scheduler = self.scheduler.config
        defaults = {"num_inference_steps": scheduler.get("num_inference_steps", DEFAULT_NUM_INFERENCE_STEPS)}
        if "rho" in scheduler:
            defaults["rho"] = scheduler["rho"]
        return {**defaults, "guidance_scale": self.config.guidance_scale,
                "guidance_interval": tuple(self.config.guidance_interval)}

    def _scheduler_for_call(self, rho: float | None):
        """The pipeline's scheduler, or for another ``rho`` a copy with that config."""
        if rho is None:
            return self.scheduler
        if "rho" not in self.scheduler.config:
            raise TypeError(f"rho is a setting of FlowMo's shifted schedulers; {type(self.scheduler).__name__} has "
                            "none: leave rho out, or set the schedule through that scheduler's own config")
        return type(self.scheduler).from_config(self.scheduler.config, rho=rho)

    def _velocity(self, codes, x, t, guidance_scale, guidance_interval, step_size=None) -> torch.Tensor:
        batch = x.shape[0]
        t_batch = t.expand(batch).to(x.dtype)
        if step_size is not None:  # a few-step student: told its step, guidance distilled into one pass
            return self.decoder(codes, x, t_batch, step_size=step_size, guidance=guidance_scale)
        low, high = guidance_interval
        if guidance_scale == 1.0 or not low <= float(t) <= high:
            return self.decoder(codes, x, t_batch)
        # conditional and unconditional passes in one forward call
        drop = torch.cat([torch.zeros(batch, dtype=torch.bool), torch.ones(batch, dtype=torch.bool)]).to(x.device)
        both = self.decoder(torch.cat([codes, codes]), torch.cat([x, x]), torch.cat([t_batch, t_batch]), drop_code=drop)
        v_cond, v_uncond = both.chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    def _initial_noise(self, batch: int, generator: torch.Generator | None, latents: torch.Tensor | None):
        shape = (batch, 3, self.image_size, self.image_size)
        if latents is None:
            latents = torch.randn(shape, generator=generator, device=generator.device if generator else self.device)
        elif not isinstance(latents, torch.Tensor) or tuple(latents.shape) != shape:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must be the starting noise of shape {shape} (one per token sequence), got {got}")
        return latents.to(self.device, self.decoder.dtype)

    @check_arguments()
    @torch.no_grad()
    def decode(
        self,
        tokens,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        rho: float | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Images from tokens by sampling the decoder's flow from noise (t = 1) to data (t = 0).

        ``tokens``: an EncodeOutput, integer indices, or float codes (B, S, d). Settings left out
        come from :attr:`sampling_defaults`. ``latents``: the starting noise (B, 3, H, W), drawn from
        ``generator`` when not given. ``output_type``: "pil", "np" or "pt" (both in [0, 1]).
        """
        codes = self._codes(tokens)
        defaults = self.sampling_defaults
        guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        guidance_interval = defaults["guidance_interval"] if guidance_interval is None else guidance_interval
        scheduler = self._scheduler_for_call(rho)
        scheduler.set_timesteps(num_inference_steps or defaults["num_inference_steps"], device=self.device)
        x = self._initial_noise(codes.shape[0], generator, latents)
        for x in self.trajectory(codes, x, scheduler, guidance_scale, guidance_interval):
            pass
        images = from_model_output(x, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @check_arguments()
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
        codes = self.quantizer(self.encoder(pixels)).quantized
        velocity = conditional_velocity(self.decoder, codes, guidance_scale, guidance_interval)
        return flow_log_likelihood(velocity, pixels, num_steps=num_inference_steps, rho=rho, method="heun",
                                   divergence=divergence, num_probes=num_probes, generator=generator,
                                   dequantize=dequantize)

    def trajectory(self, codes: torch.Tensor, x: torch.Tensor, scheduler, guidance_scale: float,
                   guidance_interval: tuple[float, float]) -> Iterator[torch.Tensor]:
        """The samples after each step of ``scheduler`` (its timesteps set) from the noise ``x``; the last is
        :meth:`decode`'s output before conversion. A few-step student's decoder (``step_embed``) is told
        each step's size and takes the guidance scale as an input (one pass per step, no interval)."""
        flow_time_scale = scheduler.config.get("num_train_timesteps", 1)
        student = self.decoder.config.get("step_embed", False)
        if student and not hasattr(scheduler, "step_sizes"):
            raise TypeError(f"this decoder is a few-step student: sample it with its FewStepScheduler, not "
                            f"{type(scheduler).__name__}")
        step_sizes = scheduler.step_sizes.to(x.dtype) if student else [None] * len(scheduler.timesteps)
        # checked once here: a decoder compiled with torch.compile skips its own input checks
        self.decoder.check_inputs(codes, x, scheduler.timesteps[0] / flow_time_scale, step_size=step_sizes[0],
                                  guidance=guidance_scale if student else None)
        for timestep, step_size in zip(self.progress_bar(scheduler.timesteps), step_sizes):
            v = self._velocity(codes, x, timestep / flow_time_scale, guidance_scale, guidance_interval, step_size)
            x = scheduler.step(v, timestep, x).prev_sample
            yield x

    @check_arguments(decode)
    def __call__(self, images, **decode_kwargs) -> ImagePipelineOutput | tuple:
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
        The release's sampler settings become the pipeline's sampling defaults (steps and ``rho`` in the
        scheduler's config, guidance in the pipeline's), so ``pipe.decode(tokens)`` samples as it does;
        ``pipe.info["sampling"]`` records them.
        See :mod:`tokenizer_zoo.convert.flowmo`; :func:`tokenizer_zoo.convert.load_release` reads every release format.
        """
        from tokenizer_zoo.convert import flowmo
        from tokenizer_zoo.convert.keys import dropped_of

        download = pop_download_kwargs(kwargs)
        if kwargs:
            raise TypeError(f"from_single_file() got unexpected keyword argument(s) {sorted(kwargs)}; it takes config, "
                            f"torch_dtype, state_dict_key, verbose and the Hub download settings")
        pipe = flowmo.from_single_file(cls, path_or_url_or_hub_file, config=config, torch_dtype=torch_dtype,
                                       state_dict_key=state_dict_key, **download)
        if verbose:
            print(dropped_of(pipe).summary())
        return pipe

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the pipeline with a model card (preset, BPP, data, sampler defaults, metrics)."""
        return push_to_hub(self, repo_id, **kwargs)
