"""tokenizer-zoo demo in a real browser: Debian's chromium, driven by Playwright's Python client.

The page is served on a free loopback port; the test uploads a photograph, asks for the
reconstructions and checks that each chosen model's image and numbers appear and equal a direct
pipeline call (same image, steps, guidance and seed): the PNG the page shows, BPP, PSNR (scikit-image)
and LPIPS-VGG. A screenshot goes to the test's temp folder. Skipped only when chromium is missing.
"""

from __future__ import annotations

import io
import re
import shutil
import socket

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from tokenizer_zoo.data.embedded import EVAL_PHOTOS, load_photo
from tokenizer_zoo.data.transforms import to_model_input
from tokenizer_zoo.losses.perceptual import build_lpips
from tokenizer_zoo.pipelines import load_pipeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STEPS, GUIDANCE, SEED = 2, 1.5, 0
NUMBERS = re.compile(r"([\d.]+) BPP · PSNR ([\d.-]+) dB · LPIPS ([\d.]+) · decode ([\d.]+) ms · NFE (\d+)")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                                                          ".ci/run installs it)")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _direct(folder, photo: Image.Image, lpips) -> dict:
    """What the page should show for one model, computed here without the demo's code."""
    pipe = load_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    recon = pipe(photo, num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="pt",
                 generator=torch.Generator().manual_seed(SEED)).images
    reference = (to_model_input(photo, pipe.image_size) + 1) / 2
    image = (recon[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    psnr = peak_signal_noise_ratio(reference[0].double().numpy(), recon[0].double().numpy(), data_range=1.0)
    return {"image": image, "bpp": pipe.bits_per_pixel, "psnr": psnr,
            "lpips": float(lpips(recon * 2 - 1, reference * 2 - 1).flatten()[0])}


def test_page_shows_each_models_reconstruction_and_numbers(models, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from tokenizer_zoo.demo.app import serve

    photo = Image.fromarray((load_photo(EVAL_PHOTOS[0]).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    upload = tmp_path / "photo.png"
    photo.save(upload)
    chosen = {"flowmo": models["flowmo"], "cnn": models["cnn_fsq"]}
    port = _free_port()
    page_server = serve([str(models["flowmo"]), f"cnn={models['cnn_fsq']}"], port=port, steps=STEPS, block=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#input-image input[type=file]").set_input_files(str(upload))
            page.locator("#run").click()
            shown = {}
            for index, name in enumerate(chosen):
                numbers = page.locator(f"#numbers-{index}")
                expect(numbers).to_contain_text("BPP", timeout=120_000)
                source = page.locator(f"#recon-{index} img").first.get_attribute("src")
                png = page.request.get(source if source.startswith("http") else f"http://127.0.0.1:{port}{source}")
                shown[name] = (np.asarray(Image.open(io.BytesIO(png.body())).convert("RGB")),
                               NUMBERS.search(numbers.inner_text()))
                expect(page.locator(f"#zoom-{index} img").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            # a bit budget below both models' 0.28 BPP leaves them out, each with a note
            budget = page.locator("#budget input[type=number]")
            budget.fill("0.1")
            budget.press("Enter")
            page.locator("#run").click()
            expect(page.locator("#notes")).to_contain_text("cnn: 0.2812 BPP is above the budget of 0.1", timeout=60_000)
            expect(page.locator("#recon-0")).to_be_hidden()
            browser.close()
    finally:
        page_server.close()
    print(f"screenshot: {tmp_path / 'demo.png'}")
    lpips = build_lpips("vgg")
    for name, folder in chosen.items():
        expected = _direct(folder, photo, lpips)
        image, numbers = shown[name]
        assert numbers is not None, f"{name}: no numbers on the page"
        assert image.shape == expected["image"].shape and np.abs(image.astype(int) - expected["image"]).max() <= 1
        assert float(numbers[1]) == pytest.approx(expected["bpp"], abs=5e-5)
        assert float(numbers[2]) == pytest.approx(expected["psnr"], abs=0.006)
        assert float(numbers[3]) == pytest.approx(expected["lpips"], abs=6e-4)
        assert float(numbers[4]) > 0 and int(numbers[5]) == (1 if name == "cnn" else STEPS)  # guided steps: 2 NFE
    assert (tmp_path / "demo.png").stat().st_size > 10_000
