"""The converted release fixtures every converted-pipeline test runs over: add a release here and it joins them.

Each entry: the release file as published (tiny size, made by the release's own code), the config that tells
what shapes cannot (or None), the format name, and the fixture's own tolerance for float outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "fixtures"


@dataclass(frozen=True)
class ReleaseFixture:
    name: str
    checkpoint: Path
    config: Path | None
    format: str
    image_size: int


CONVERTED = [
    ReleaseFixture("flowmo", FIXTURES / "flowmo_reference_tiny" / "flowmo_ref_tiny.pth",
                   FIXTURES / "flowmo_reference_tiny" / "config.yaml", "flowmo", 32),
    ReleaseFixture("llamagen", FIXTURES / "llamagen_vq_reference_tiny" / "vq_ds8_c2i_tiny.pt",
                   FIXTURES / "llamagen_vq_reference_tiny" / "config.json", "llamagen", 32),
]
"""One entry per release format with a fixture (Open-MAGVIT2 and TiTok join here)."""
