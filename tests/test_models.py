"""advrobust.models: architectures, Normalize, checkpoints, loading user models, fingerprints."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from advrobust.errors import InputError, ModelLoadError
from advrobust.models import (
    Normalize,
    create,
    fingerprint,
    list_architectures,
    load_checkpoint,
    load_model,
    read_metadata,
    save_checkpoint,
    with_normalization,
)

SHAPES = {"mnist-cnn": (1, 28, 28), "small-resnet": (3, 32, 32), "mlp": (1, 28, 28)}
TINY = {"mnist-cnn": {"width": 4, "hidden": 16}, "small-resnet": {"width": 4}, "mlp": {"hidden": 16}}


@pytest.mark.parametrize("arch", list_architectures())
def test_architectures_give_logits_for_their_inputs(arch):
    shape = SHAPES[arch]
    model = create(arch, num_classes=7, input_shape=shape, seed=0, **TINY[arch])
    z = model(torch.rand(3, *shape))
    assert z.shape == (3, 7) and torch.isfinite(z).all()
    # the model is not hard-wired to one size: a different input size/classes builds and runs
    other = (shape[0], 16, 20)
    assert create(arch, 3, other, **TINY[arch])(torch.rand(2, *other)).shape == (2, 3)


def test_create_seed_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = create("mnist-cnn", 10, (1, 28, 28), seed=5, **TINY["mnist-cnn"])
    assert torch.equal(torch.rand(1), expected_next)  # seed= did not consume the global RNG
    b = create("mnist-cnn", 10, (1, 28, 28), seed=5, **TINY["mnist-cnn"])
    c = create("mnist-cnn", 10, (1, 28, 28), seed=6, **TINY["mnist-cnn"])
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


def test_create_rejects_bad_requests():
    with pytest.raises(InputError, match="unknown architecture 'vgg'.*mnist-cnn"):
        create("vgg", 10, (1, 28, 28))
    with pytest.raises(InputError, match="input_shape"):
        create("mnist-cnn", 10, (28, 28))
    with pytest.raises(InputError, match="bad options"):
        create("mlp", 10, (1, 28, 28), depthh=3)


def test_normalize_math_and_wrapper():
    mean, std = [0.5, 0.25, 0.0], [0.5, 0.25, 2.0]
    x = torch.rand(4, 3, 5, 5)
    out = Normalize(mean, std)(x)
    for c in range(3):
        assert torch.allclose(out[:, c], (x[:, c] - mean[c]) / std[c])
    inner = nn.Sequential(nn.Flatten(), nn.Linear(75, 2))
    wrapped = with_normalization(inner, mean, std)
    assert torch.allclose(wrapped(x), inner(out))
    # the statistics are buffers: saved with the weights, not trained
    assert {"normalize.mean", "normalize.std"} <= set(wrapped.state_dict())
    assert all(not n.startswith("normalize") for n, _ in wrapped.named_parameters())
    with pytest.raises(InputError, match="positive"):
        Normalize([0.0], [0.0])
    with pytest.raises(InputError, match="one value per channel"):
        Normalize([0.0, 0.1], [1.0])


def _meta(arch="mnist-cnn", **extra):
    return {"arch": arch, "arch_kwargs": TINY[arch], "num_classes": 10, "input_shape": list(SHAPES[arch]),
            "data": "mnist-5k", "classes": [str(i) for i in range(10)], "clean_accuracy": 0.97,
            "training": {"method": "standard", "epochs": 3, "seed": 0}, **extra}


def test_checkpoint_round_trip_keeps_weights_and_metadata(tmp_path):
    model = with_normalization(create("small-resnet", 10, (3, 32, 32), seed=1, width=4), [0.5] * 3, [0.2] * 3)
    model.eval()(torch.rand(2, 3, 32, 32))  # nothing changes in eval mode; batch-norm buffers are saved too
    path = save_checkpoint(tmp_path / "m.safetensors", model, _meta("small-resnet", robust_accuracy={"0.3": 0.1}))
    loaded, meta = load_checkpoint(path)
    assert fingerprint(loaded) == fingerprint(model) == meta["fingerprint"]
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    assert meta["normalization"] == {"mean": [0.5] * 3, "std": pytest.approx([0.2] * 3)}
    assert meta["robust_accuracy"] == {"0.3": 0.1} and meta["clean_accuracy"] == 0.97
    assert meta["training"]["method"] == "standard" and meta["classes"][3] == "3"
    assert {"advrobust_version", "created"} <= set(meta)
    assert read_metadata(path) == meta
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    model = create("mnist-cnn", 10, (1, 28, 28), seed=0, **TINY["mnist-cnn"])
    path = save_checkpoint(tmp_path / "m.safetensors", model, _meta())
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_checkpoint(corrupt)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not safetensors at all")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_checkpoint(garbage)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ModelLoadError, match="not an advrobust checkpoint.*load_model"):
        load_checkpoint(plain)
    wrong = tmp_path / "wrong.safetensors"
    save_checkpoint(wrong, model, _meta(arch_kwargs={"width": 8, "hidden": 16}))  # metadata lies about width
    with pytest.raises(ModelLoadError, match="shape mismatch.*features.0.weight"):
        load_checkpoint(wrong)
    with pytest.raises(InputError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", model, {"arch": object()})


def _write_factory_module(folder: Path) -> None:
    (folder / "user_nets_adv.py").write_text(textwrap.dedent("""
        from torch import nn
        def make():
            return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        def broken():
            raise RuntimeError("boom")
        def not_a_module():
            return 42
    """))


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    _write_factory_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("user_nets_adv", None)


def _reference(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_load_model_factory_with_safetensors_and_state_dict(user_module):
    ref = _reference()
    x = torch.rand(5, 1, 4, 4)
    st = user_module / "w.safetensors"
    save_file(ref.state_dict(), str(st))
    pt = user_module / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, pt)  # DDP-style layout
    for weights in (st, pt):
        model = load_model("user_nets_adv:make", weights=weights)
        assert torch.equal(model(x), ref(x)) and not model.training
    by_file = load_model(f"{user_module / 'user_nets_adv.py'}:make", weights=st)
    assert torch.equal(by_file(x), ref(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_load_model_our_checkpoint_and_torchscript(tmp_path):
    model = create("mlp", 10, (1, 28, 28), seed=0, **TINY["mlp"]).eval()
    x = torch.rand(2, 1, 28, 28)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, _meta("mlp"))
    assert torch.equal(load_model(ckpt)(x), model(x))
    ts = tmp_path / "m.ts"
    torch.jit.script(model).save(str(ts))
    assert torch.allclose(load_model(ts)(x), model(x))


def test_load_model_errors_say_what_is_wrong(user_module):
    ref = _reference()
    with pytest.raises(ModelLoadError, match="neither an existing file nor"):
        load_model("missing_file.pt")
    with pytest.raises(ModelLoadError, match="cannot import 'no_such_pkg_adv'"):
        load_model("no_such_pkg_adv:make")
    with pytest.raises(ModelLoadError, match="no callable 'nothing'"):
        load_model("user_nets_adv:nothing")
    with pytest.raises(ModelLoadError, match="boom"):
        load_model("user_nets_adv:broken")
    with pytest.raises(ModelLoadError, match="returned int"):
        load_model("user_nets_adv:not_a_module")
    with pytest.raises(ModelLoadError, match="weights file .* does not exist"):
        load_model("user_nets_adv:make", weights=user_module / "nope.pt")
    extra = user_module / "extra.safetensors"
    save_file({**ref.state_dict(), "head.weight": torch.zeros(1)}, str(extra))
    with pytest.raises(ModelLoadError, match="unexpected keys head.weight"):
        load_model("user_nets_adv:make", weights=extra)
    partial = user_module / "partial.pt"
    torch.save({"1.weight": ref.state_dict()["1.weight"]}, partial)
    with pytest.raises(ModelLoadError, match="missing keys 1.bias"):
        load_model("user_nets_adv:make", weights=partial)
    bad = user_module / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model("user_nets_adv:make", weights=bad)
    sd = user_module / "state.pt"
    torch.save(ref.state_dict(), sd)
    with pytest.raises(ModelLoadError, match="give its architecture"):
        load_model(sd)


class _Payload:
    """A pickle that runs code when loaded: it would create ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_unsafe_pickle_is_refused_and_never_executed(user_module):
    marker = user_module / "pwned"
    evil = user_module / "evil.pt"
    torch.save({"1.weight": _Payload(str(marker))}, evil)
    with pytest.raises(ModelLoadError, match="weights_only=True.*refused.*state_dict"):
        load_model("user_nets_adv:make", weights=evil)
    assert not marker.exists()


def test_fingerprint_tracks_every_weight():
    a, b = _reference(0), _reference(0)
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 64 and int(fingerprint(a), 16) >= 0
    a.train(), b.eval()
    assert fingerprint(a) == fingerprint(b)  # mode is not identity
    with torch.no_grad():
        b[1].bias[2] += 1e-7
    assert fingerprint(a) != fingerprint(b)
    renamed = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(16, 3)))
    renamed[1][0].load_state_dict(a[1].state_dict())
    assert fingerprint(renamed) != fingerprint(a)  # same numbers under other names: another model


def test_checkpoint_metadata_is_plain_json(tmp_path):
    """Anyone can read the metadata without advrobust: it is the safetensors header's JSON."""
    model = create("mlp", 10, (1, 28, 28), seed=0, **TINY["mlp"])
    path = save_checkpoint(tmp_path / "m.safetensors", model, _meta("mlp"))
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert json.loads(header["__metadata__"]["meta"])["arch"] == "mlp"
