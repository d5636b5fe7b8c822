"""MaskGiT sampling settings side by side: guidance scale and decoding steps against quality and time.

    python benchmarks/maskgit_sampling.py [--model outputs/maskgit_digits/pipeline] [--samples 500]

For a MaskGiTPipeline trained on the embedded digits (``make maskgit-demo``), every setting samples
the same balanced labels with the same seed and is scored against the same real training digits:
gFID / sFID / precision / recall (FID InceptionV3) and the class accuracy of a pixel classifier
fitted on the real training digits; time is per image, generation and decoding, measured in this
run, and as a ratio to the first setting's. Writes ``benchmarks/results/maskgit_sampling.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tokenizer_zoo.data import EmbeddedDigits
from tokenizer_zoo.metrics.generation import PixelClassifier, generation_metrics, inception_features
from tokenizer_zoo.metrics.inception import InceptionFeatureExtractor
from tokenizer_zoo.pipelines import MaskGiTPipeline

RESULTS = Path(__file__).resolve().parent / "results" / "maskgit_sampling.md"
SETTINGS = [(8, 1.0), (8, 1.5), (8, 2.0), (8, 3.0), (4, 2.0), (16, 2.0)]  # (decoding steps, guidance scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="outputs/maskgit_digits/pipeline")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--reference", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    pipe = MaskGiTPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    extractor = InceptionFeatureExtractor.from_pretrained()
    train = EmbeddedDigits("train", image_size=pipe.image_size)
    real_images = torch.stack([train[i]["pixel_values"] for i in range(len(train))])
    real = inception_features(extractor, tqdm(real_images[: args.reference].split(args.batch), desc="reference"))
    classifier = PixelClassifier(real_images, train.labels)
    labels = torch.arange(args.samples) % pipe.maskgit.config.num_classes

    rows, first_ms = [], None
    for steps, guidance in SETTINGS:
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        images = torch.cat([pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                                 output_type="pt").images for chunk in labels.split(args.batch)]) * 2 - 1
        ms = (time.perf_counter() - start) / args.samples * 1000
        first_ms = first_ms or ms
        values, _ = generation_metrics(extractor, real, inception_features(extractor, images.split(args.batch)))
        rows.append(f"| {steps} | {guidance} | {values['gfid']:.2f} | {values['sfid']:.2f} | {values['precision']:.3f} "
                    f"| {values['recall']:.3f} | {classifier.accuracy(images, labels):.3f} | {ms:.2f} | {ms / first_ms:.2f} |")
        print(rows[-1])
    lines = [f"`python benchmarks/maskgit_sampling.py --model {args.model}`: {args.samples} samples per row "
             f"(balanced classes, seed 0) against {args.reference} real training digits.", "",
             "| decoding steps | guidance | gFID | sFID | precision | recall | class accuracy | ms / image | time ratio |",
             "|---|---|---|---|---|---|---|---|---|", *rows]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
