"""Large tensors go on huge pages when the command line runs: the switch is set before the first
large tensor (PyTorch reads it once), a value the user set is kept, and a large tensor then lies on
transparent huge pages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from advrobust.cli.main import main
from advrobust.runtime.huge_pages import HUGE_PAGES_ENV, prefer_huge_pages

THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")

ON_HUGE_PAGES = """
import re, torch
{setup}
big = torch.empty(6 * 2**20)  # 24 MB, touched
big.fill_(1.0)
print(re.search(r"AnonHugePages:\\s+(\\d+)", open("/proc/self/smaps_rollup").read()).group(1))
"""


def huge_page_kb(setup: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES_ENV}
    out = subprocess.run([sys.executable, "-c", ON_HUGE_PAGES.format(setup=setup)], capture_output=True,
                         text=True, env=env, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not THP_SETTING.exists() or "[never]" in THP_SETTING.read_text()
                    or not Path("/proc/self/smaps_rollup").exists(),
                    reason="needs Linux with transparent huge pages available on request")
def test_a_large_tensor_lies_on_huge_pages_once_asked_before_the_first_one():
    ask = "from advrobust.runtime.huge_pages import prefer_huge_pages\nprefer_huge_pages()"
    assert huge_page_kb(ask) >= 2048
    if "[always]" not in THP_SETTING.read_text():  # granted only on request here
        assert huge_page_kb("") == 0
        assert huge_page_kb("torch.empty(6 * 2**20).fill_(0)\n" + ask) == 0  # read once: too late


def test_the_command_line_asks_first_and_keeps_a_users_choice(monkeypatch):
    # a copy of the environment, so that this process's own is left as it was
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != HUGE_PAGES_ENV})
    with pytest.raises(SystemExit):
        main(["attacks"])
    assert os.environ[HUGE_PAGES_ENV] == "1"
    os.environ[HUGE_PAGES_ENV] = "0"
    prefer_huge_pages()
    assert os.environ[HUGE_PAGES_ENV] == "0"
