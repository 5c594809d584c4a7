"""Data-parallel training with 2 CPU processes (gloo): the same accuracy band as one process, the
same weights on every rank, only rank 0 writing files, and adversarial methods working under DDP."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from advrobust.data.dataset import Dataset
from advrobust.distributed import leave
from advrobust.models import create, fingerprint
from advrobust.training import accuracy, create_method, fit, method_names

CLASSES = [str(i) for i in range(10)]
SETTINGS = {"epochs": 2, "batch_size": 32, "lr": 0.005, "optimizer": "adam", "seed": 0}
#: the adversarial methods trained under DDP, with their (small) settings
ADVERSARIAL = {"pgd-at": {"eps": 0.1, "steps": 2}, "fgsm-ep": {"eps": 0.1}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model():
    return create("mnist-cnn", 10, (1, 28, 28), seed=0, width=8, hidden=32)


def _worker(rank: int, port: int, data: tuple, folder: str, methods: tuple[str, ...]) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
                       "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    train, val = (Dataset("mnist-5k", split, x, y, CLASSES) for split, x, y in data)
    for name in methods:  # one spawn for all: starting processes costs more than these tiny runs
        model, out = _model(), os.path.join(folder, name)
        method = create_method(name, **ADVERSARIAL[name]) if name in ADVERSARIAL else name
        history = fit(model, train, val, method=method, device="cpu", checkpoint_dir=os.path.join(out, "state"),
                      log_path=os.path.join(out, "log.jsonl"), **SETTINGS)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
            json.dump({"fingerprint": fingerprint(model), "val_acc": history.records[-1].val_acc,
                       "train_loss": history.records[-1].train_loss, "acc": accuracy(model, val)}, handle)
    leave()  # fit joined the group on its first call and reused it on the second


@pytest.fixture(scope="module")
def ddp_runs(tiny_data, tmp_path_factory) -> dict:
    """Rank 0's and rank 1's results of a 2-process run per method (standard, and pgd-at and fgsm-ep,
    whose per-example priors live in each process, if present)."""
    methods = ("standard", *ADVERSARIAL) if "pgd-at" in method_names() else ("standard",)
    folder = tmp_path_factory.mktemp("ddp")
    for m in methods:
        (folder / m).mkdir()
    mp.spawn(_worker, args=(_free_port(), tiny_data, str(folder), methods), nprocs=2, join=True)
    runs: dict = {m: [json.loads((folder / m / f"rank{r}.json").read_text()) for r in (0, 1)] for m in methods}
    runs["folder"] = folder
    return runs


@pytest.fixture(scope="module")
def tiny_data(mnist_split):
    x_train, y_train, x_test, y_test = mnist_split
    tr = torch.cat([torch.arange(c * 400, c * 400 + 60) for c in range(10)])
    te = torch.cat([torch.arange(c * 100, c * 100 + 30) for c in range(10)])
    return (("train", x_train[tr], y_train[tr]), ("test", x_test[te], y_test[te]))


@pytest.mark.slow
def test_two_processes_train_like_one(tiny_data, ddp_runs):
    ranks, folder = ddp_runs["standard"], ddp_runs["folder"] / "standard"
    assert ranks[0]["fingerprint"] == ranks[1]["fingerprint"]  # DDP kept the replicas identical
    train, val = (Dataset("mnist-5k", split, x, y, CLASSES) for split, x, y in tiny_data)
    single = _model()
    history = fit(single, train, val, device="cpu", **SETTINGS)
    # the same global batches in the same order: the same accuracy band (up to float summation order)
    assert ranks[0]["val_acc"] == pytest.approx(ranks[0]["acc"])
    assert abs(ranks[0]["val_acc"] - history.records[-1].val_acc) <= 0.05
    assert ranks[0]["val_acc"] >= 0.4  # two short epochs: far above chance (0.1)
    assert len((folder / "log.jsonl").read_text().splitlines()) == 2  # written once, by rank 0
    assert sorted(p.name for p in (folder / "state").iterdir()) == ["state.pt"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_method_under_ddp(ddp_runs, name):
    if name not in ddp_runs:
        pytest.skip("the adversarial methods are not available")
    ranks = ddp_runs[name]
    assert ranks[0]["fingerprint"] == ranks[1]["fingerprint"]
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"]  # metrics are reduced over the ranks
