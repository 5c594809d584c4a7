"""The README's Python example (examples/quickstart.py) runs as documented, from a fresh cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "examples" / "quickstart.py"


@pytest.mark.slow
def test_quickstart_example_runs(tmp_path):
    env = {**os.environ, "ADVROBUST_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "audit passed: True" in out.stdout
    assert "robust accuracy {0.3: 0.0}" in out.stdout  # an undefended MNIST CNN has none left at 0.3
    report = tmp_path / "quickstart_report.html"
    assert report.exists() and "<html" in report.read_text()[:200].lower()
