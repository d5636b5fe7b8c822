"""Generation metrics of a set of samples against a set of real images, from one Inception pass each:
gFID, sFID, Inception Score, and k-NN precision / recall (the FlowMo paper's stage-2 table)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from tokenizer_zoo.metrics.fid import GenerationFID, InceptionScore, PrecisionRecall
from tokenizer_zoo.metrics.inception import InceptionFeatures


@torch.no_grad()
def inception_features(extractor: nn.Module, batches: Iterable[Tensor]) -> InceptionFeatures:
    """Features of every batch of images in [-1, 1], concatenated (on the CPU)."""
    parts = [extractor(batch.to(next(extractor.parameters()).device)) for batch in batches]
    if not parts:
        raise ValueError("no images to compute Inception features of")

    def join(name: str) -> Tensor | None:
        if getattr(parts[0], name) is None:
            return None
        return torch.cat([getattr(part, name).cpu() for part in parts])

    return InceptionFeatures(pool=join("pool"), spatial=join("spatial"), logits=join("logits"))


def generation_metrics(extractor: nn.Module, real: InceptionFeatures, fake: InceptionFeatures, k: int = 3,
                       splits: int = 10) -> tuple[dict[str, float], dict[str, str]]:
    """``({"gfid", "sfid", "inception_score", "precision", "recall"}, {skipped metric: why})``."""
    fid = GenerationFID(extractor, spatial=real.spatial is not None)
    fid.update(real, real=True)
    fid.update(fake)
    fid_out = fid.compute()
    pr = PrecisionRecall(extractor, k=k)
    pr.update(real=real, fake=fake)
    pr_out = pr.compute()
    values = {"gfid": fid_out.fid, "precision": pr_out.precision, "recall": pr_out.recall}
    skipped = {}
    if fid_out.sfid is not None:
        values["sfid"] = fid_out.sfid
    else:
        skipped["sfid"] = "the extractor gives no spatial features"
    if fake.logits is None:
        skipped["inception_score"] = ("the Inception weights have no classifier (the fid-helper import lacks it); "
                                      "put pytorch-fid's pt_inception-2015-12-05-6726825d.pth in the torch hub cache")
    else:
        score = InceptionScore(extractor, splits=splits)
        score.update(fake)
        values["inception_score"] = score.compute().mean
    return values, skipped


class PixelClassifier:
    """A multinomial logistic regression on 2 x 2-pooled grey pixels (scikit-learn), fitted on real labelled images:
    on small datasets such as the embedded digits, the share of samples it assigns to the class they
    were generated for measures whether class conditioning works (no pretrained network needed)."""

    def __init__(self, images: Tensor, labels: Tensor, max_iter: int = 1000):
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(max_iter=max_iter)
        self.model.fit(self._pixels(images), labels.cpu().numpy())

    @staticmethod
    def _pixels(images: Tensor):
        grey = torch.nn.functional.avg_pool2d(images.float().mean(1, keepdim=True), 2)  # (N, 1, H / 2, W / 2)
        return grey.flatten(1).cpu().numpy()

    def accuracy(self, images: Tensor, labels: Tensor) -> float:
        """Share of ``images`` classified as their ``labels``."""
        return float((self.model.predict(self._pixels(images)) == labels.cpu().numpy()).mean())
