"""The README's Python example runs as documented, from a fresh cache: the snippet itself, and its
runnable form examples/quickstart.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "quickstart.py"


def _readme_python(section: str = "## In Python") -> str:
    """The first ```python block after ``section`` in the README."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(section):]
    start = after.index("```python\n") + len("```python\n")
    return after[start:after.index("```", start)]


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


@pytest.mark.slow
def test_readme_python_snippet_runs_as_written(tmp_path):
    snippet = tmp_path / "snippet.py"
    snippet.write_text(_readme_python())
    env = {**os.environ, "ADVROBUST_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(snippet)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert float(lines[0].split()[1]) == 0.0  # clean and robust accuracy: the undefended CNN has none left at 0.3
    assert lines[1].startswith("True")  # the audit passed
    assert "median" in lines[2]  # the FMN curve's summary
    report = tmp_path / "report.html"
    assert report.exists() and "<html" in report.read_text()[:200].lower()


@pytest.mark.slow
def test_readme_defences_snippet_runs_as_written(tmp_path):
    snippet = tmp_path / "defences.py"
    snippet.write_text(_readme_python("## Defences that fool naive evaluations"))
    env = {**os.environ, "ADVROBUST_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(snippet)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("rand True wrong on more than half of 11 draws")
    naive, through_bpda = (float(v) for v in lines[1].split())
    assert naive > through_bpda + 0.3  # quantization hides the gradients; BPDA finds the examples
