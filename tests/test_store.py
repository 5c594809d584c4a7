"""The SQLite results store: round trip, leaderboard order and filters, exports, bad files."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import advrobust as ar
from advrobust.evaluation.store import ResultStore


@pytest.fixture
def two_results(linear_model):
    x = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    y = linear_model(x).argmax(1)
    weak = ar.evaluate(linear_model, x, y, epsilons=[0.1, 0.3], suite=["fgsm"], model_name="lin")
    strong = ar.evaluate(linear_model, x, y, epsilons=[0.1, 0.3], suite="quick", model_name="lin")
    return weak, strong


def test_round_trip_and_leaderboard(tmp_path, two_results):
    weak, strong = two_results
    store = ResultStore(tmp_path / "results.sqlite")
    id_weak, id_strong = store.add(weak), store.add(strong)
    assert store.get(id_strong).to_dict() == strong.to_dict()
    rows = store.rows()
    # the leaderboard: most robust first, ties newest first (the two results may fall in different seconds)
    expected = sorted([id_weak, id_strong], key=lambda i: store.get(i).timestamp, reverse=True)
    expected.sort(key=lambda i: -store.get(i).robust_accuracy[0.3])
    assert [r.id for r in rows] == expected
    assert rows[0].robust_accuracy[0.3][0] >= rows[1].robust_accuracy[0.3][0]
    row = next(r for r in rows if r.id == id_strong)
    acc, lo, hi = row.robust_accuracy[0.1]
    assert acc == strong.robust_accuracy[0.1] and lo <= acc <= hi
    assert row.model_fingerprint == strong.model_fingerprint and len(row.model_fingerprint) == 64
    assert store.rows(model=strong.model_fingerprint[:10]) and not store.rows(model="other")
    assert not store.rows(threat="l2") and len(store.rows(eps=0.3)) == 2 and not store.rows(eps=0.2)
    # persisted: a new handle on the same file sees the same runs
    assert [r.id for r in ResultStore(tmp_path / "results.sqlite").rows()] == [r.id for r in rows]
    store.delete(id_weak)
    assert [r.id for r in store.rows()] == [id_strong]
    with pytest.raises(ar.InputError, match="no stored evaluation"):
        store.get(id_weak)


def test_exports(tmp_path, two_results):
    store = ResultStore(tmp_path / "r.sqlite")
    for r in two_results:
        store.add(r)
    rows = store.rows()
    data = json.loads(store.export_json(tmp_path / "out.json", rows).read_text())
    assert [d["id"] for d in data] == [r.id for r in rows]
    assert ar.evaluation.EvaluationResult.from_dict(data[0]["result"]).robust_accuracy == {
        e: v[0] for e, v in rows[0].robust_accuracy.items()
    }
    with open(store.export_csv(tmp_path / "out.csv", rows), newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2 and float(table[0]["robust@0.3"]) == rows[0].robust_accuracy[0.3][0]


def test_evaluate_records_into_store_and_bad_files(tmp_path, linear_model):
    x = torch.rand(10, 1, 4, 4)
    y = linear_model(x).argmax(1)
    path = tmp_path / "db.sqlite"
    res = ar.evaluate(linear_model, x, y, suite=["fgsm"], store=path)
    assert ResultStore(path).get(ResultStore(path).rows()[0].id).robust_accuracy == res.robust_accuracy
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(ar.InputError, match="not an advrobust results database"):
        ResultStore(bad)
    with pytest.raises(ar.InputError, match="folder"):
        ResultStore(tmp_path)
