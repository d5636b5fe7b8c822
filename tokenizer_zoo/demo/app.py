"""The comparison page (Gradio, the optional ``[demo]`` extra): one image, every chosen model's reconstruction.

    tokenizer-zoo demo outputs/flowmo_1a_tiny/pipeline "cnn=outputs/cnn/pipeline"    # http://127.0.0.1:7860
    make demo-page                                                                  # on what `make train` wrote

Drop an image or pick one of the embedded photographs, choose models, a bit budget (models above it
are left out) and the diffusion sampler's steps, guidance and seed. Each model shows its
reconstruction, its BPP, PSNR and LPIPS-VGG against the input at its own size, its decode time and
a zoomed crop (the crop's centre is set with two sliders). The page listens on 127.0.0.1 only, needs
no network (analytics off, no share link, fonts served locally), and loads each model on first use.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from tokenizer_zoo.data.images import from_model_output
from tokenizer_zoo.data.transforms import to_model_input
from tokenizer_zoo.demo.scoring import ModelCache, bits_per_pixel, score, zoom
from tokenizer_zoo.evaluation.streaming import sampler_settings

LOOPBACK = "127.0.0.1"
CSS = ".pixels img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;}"
"""Small reconstructions fill their box with visible pixels; the files served stay the exact reconstructions."""


def example_photos(folder: Path) -> list[str]:
    """The embedded evaluation photographs, written once as PNG files for the page's examples."""
    from tokenizer_zoo.data.embedded import SPLITS, load_photo

    paths = []
    for photo in SPLITS["eval"]:
        path = folder / f"{photo.name}.png"
        if not path.is_file():
            from_model_output(load_photo(photo)[None] * 2 - 1, "pil")[0].save(path)
        paths.append(str(path))
    return paths


@functools.cache
def _lpips_network(device):
    """LPIPS-VGG, or None (the page then says n/a) when its weights are not on this machine."""
    from tokenizer_zoo.losses.perceptual import LPIPSWeightsMissingError, build_lpips

    try:
        return build_lpips("vgg").to(device)
    except LPIPSWeightsMissingError:
        return None


def build_demo(models: list[str], device: str | None = None, steps: int = 25):
    """The page for ``models`` (MODEL arguments as for compare) as a ``gradio.Blocks``, not yet launched;
    ``steps``: the sampling steps the page starts with."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    cache = ModelCache(models, device)
    names = cache.names

    def run(image, chosen, budget, steps, guidance, seed, x, y):
        if image is None:
            raise gr.Error("drop an image or pick one of the examples first")
        sampler = sampler_settings(int(steps), guidance=float(guidance))
        updates, notes = [], []
        for name in names:
            shown = None
            if name in chosen:
                try:
                    model = cache.get(name)
                except RuntimeError as error:
                    notes.append(f"- {name}: {error}")
                    model = None
                bpp = None if model is None else bits_per_pixel(model)
                if bpp is not None and bpp > budget:
                    notes.append(f"- {name}: {bpp:.4f} BPP is above the budget of {budget:g}")
                elif model is not None:
                    shown = score(name, model, image, sampler, int(seed), _lpips_network(cache.device), (x, y))
            visible = shown is not None
            updates += [gr.update(value=shown and shown.image, visible=visible),
                        gr.update(value=shown and shown.crop, visible=visible),
                        gr.update(value=shown.caption() if visible else "", visible=visible)]
        size = max((cache.get(name).pipe.image_size for name in chosen if cache.loaded(name)), default=None)
        original = image.convert("RGB") if size is None else from_model_output(to_model_input(image, size), "pil")[0]
        return [zoom(original, x, y), "\n".join(notes), *updates]

    with gr.Blocks(title="tokenizer-zoo demo") as page:
        gr.Markdown("# tokenizer-zoo: reconstructions side by side\nDrop an image, or pick a photograph below.")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="pil", label="image", sources=["upload", "clipboard"], elem_id="input-image")
                examples = Path(tempfile.gettempdir()) / "tokenizer-zoo-demo-examples"
                examples.mkdir(exist_ok=True)
                gr.Examples(example_photos(examples), inputs=image)
            with gr.Column(scale=1):
                chosen = gr.CheckboxGroup(names, value=names, label="models", elem_id="models")
                budget = gr.Slider(0.0, 2.0, value=2.0, step=0.01, label="bit budget: at most this many BPP",
                                   elem_id="budget")
                steps = gr.Slider(1, 50, value=steps, step=1, label="sampling steps (diffusion decoders)")
                guidance = gr.Slider(1.0, 5.0, value=1.5, step=0.1, label="guidance scale (diffusion decoders)")
                seed = gr.Number(value=0, precision=0, label="seed of the sampling noise")
                x = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="zoom centre, across")
                y = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="zoom centre, down")
                button = gr.Button("Reconstruct", variant="primary", elem_id="run")
        notes = gr.Markdown(elem_id="notes")
        outputs = []
        with gr.Row():
            with gr.Column(min_width=200):
                original = gr.Image(label="original at the largest model size: zoom", format="png", elem_id="zoom-original", interactive=False)
            for index, name in enumerate(names):
                with gr.Column(min_width=200):
                    outputs += [gr.Image(label=name, format="png", elem_id=f"recon-{index}", interactive=False,
                                         visible=False, height=256, elem_classes="pixels"),
                                gr.Image(label=f"{name}: zoom", format="png", elem_id=f"zoom-{index}",
                                         interactive=False, visible=False),
                                gr.Markdown(elem_id=f"numbers-{index}", visible=False)]
        button.click(run, [image, chosen, budget, steps, guidance, seed, x, y], [original, notes, *outputs])
    return page


def serve(models: list[str], port: int = 7860, device: str | None = None, steps: int = 25, block: bool = True):
    """Launch the page on 127.0.0.1:``port`` (loopback only, no share link); ``block=False`` returns at once."""
    page = build_demo(models, device, steps)
    page.launch(css=CSS, server_name=LOOPBACK, server_port=port or None, share=False, ssr_mode=False, inbrowser=False,
                prevent_thread_lock=not block, quiet=not block)
    return page

