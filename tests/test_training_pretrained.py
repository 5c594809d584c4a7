"""The default model is trained once, cached under the XDG cache dir, and loaded the second time."""

from __future__ import annotations

import pytest

from advrobust.models import fingerprint
from advrobust.paths import cache_dir
from advrobust.training import pretrained
from advrobust.training.pretrained import DEFAULT_RECIPE, Recipe, default_model

TINY = Recipe(arch_kwargs={"width": 8, "hidden": 32}, epochs=2, batch_size=25, lr=0.005, optimizer="adam", limit=500)


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("ADVROBUST_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "advrobust"
    monkeypatch.setenv("ADVROBUST_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home"


def test_default_model_is_cached_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("ADVROBUST_HOME", str(tmp_path))
    model, meta = default_model(recipe=TINY)
    files = list((tmp_path / "models").glob("*.safetensors"))
    assert len(files) == 1 and TINY.key() in files[0].name
    assert meta["arch"] == "mnist-cnn" and meta["data"] == "mnist-5k" and meta["num_classes"] == 10
    assert 0.3 < meta["clean_accuracy"] <= 1  # two epochs on 500 digits: far above chance (0.1)
    assert meta["training"]["limit"] == 500 and meta["fingerprint"] == fingerprint(model)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been loaded, not retrained")

    monkeypatch.setattr(pretrained, "fit", no_training)
    again, meta2 = default_model(recipe=TINY)
    assert fingerprint(again) == fingerprint(model) and meta2 == meta
    # another recipe is another cache entry: never a stale model for a changed recipe
    assert Recipe(epochs=2).key() != Recipe().key() == DEFAULT_RECIPE.key()
    # a corrupt cache file is retrained, not an error
    files[0].write_bytes(b"garbage")
    monkeypatch.undo()
    monkeypatch.setenv("ADVROBUST_HOME", str(tmp_path))
    retrained, _ = default_model(recipe=TINY)
    assert fingerprint(retrained) == fingerprint(model)  # same recipe and seed: the same weights


@pytest.mark.parametrize("field", ["epochs", "seed"])
def test_recipe_key_changes_with_every_field(field):
    assert Recipe(**{field: getattr(DEFAULT_RECIPE, field) + 1}).key() != DEFAULT_RECIPE.key()
