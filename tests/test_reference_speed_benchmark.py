"""benchmarks/reference_speed.py without a usable release: a clear one-line skip, exit 0, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_speed.py"


@pytest.mark.parametrize("where, expected", [(None, "give the FlowMo release checkout with --reference PATH"),
                                              ("unmet", "needs its own requirements: No module named 'mup")])
def test_skips_clearly_without_the_release(tmp_path, where, expected):
    output = tmp_path / "table.md"
    args = [sys.executable, str(SCRIPT), "--output", str(output)]
    if where is not None:  # a checkout whose requirements are not installed
        (tmp_path / "flowmo").mkdir()
        (tmp_path / "flowmo" / "models.py").write_text("import mup_of_another_version\n")
        args += ["--reference", str(tmp_path)]
    run = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("skipped: ") and expected in run.stdout
    assert not output.exists()
