"""Derandomized column smoothing (Levine & Feizi 2020): the ablated encoding, a case where the
certificate is tight (certified exactly when the worst patch cannot flip the vote), and the
training methods that feed smoothing (Gaussian noise, ablated images)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from advrobust.defences import ColumnSmoothing, ablate
from advrobust.defences.ablation import largest_certified_patch, patch_reach
from advrobust.errors import InputError
from advrobust.training import create_method, fit


def test_ablated_encoding_keeps_one_wrapping_band() -> None:
    x = torch.rand(2, 3, 5, 7)
    out = ablate(x, torch.tensor([1, 5]), band=3)
    assert out.shape == (2, 6, 5, 7)
    for n, kept in ((0, [1, 2, 3]), (1, [5, 6, 0])):
        for col in range(7):
            if col in kept:
                assert torch.equal(out[n, :3, :, col], x[n, :, :, col])
                assert torch.allclose(out[n, 3:, :, col], 1 - x[n, :, :, col])
            else:
                assert not out[n, :, :, col].any()  # (0, 0): "ablated", unlike any pixel value
    rows = ablate(x, torch.tensor([4, 0]), band=2, axis="row")
    assert rows[0, :, [4, 0]].any() and not rows[0, :, 1:4].any()


class AnyBright(nn.Module):
    """Class 1 iff some kept pixel of the band is brighter than 0.5: a base classifier for which an
    all-white patch moves every band it touches from class 0 to class 1 (the certificate's worst case)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = (x[:, :1] > 0.5).flatten(1).any(dim=1).float()
        return torch.stack([1 - bright, bright], dim=1)


def _worst_patch_flips(smoothed: ColumnSmoothing, x: torch.Tensor, m: int) -> bool:
    """Whether an all-white m×m patch placed anywhere changes the vote."""
    clean = int(smoothed.predict(x)[0])
    _, _, h, w = x.shape
    for top in range(h - m + 1):
        for left in range(w - m + 1):
            patched = x.clone()
            patched[..., top : top + m, left : left + m] = 1.0
            if int(smoothed.predict(patched)[0]) != clean:
                return True
    return False


@pytest.mark.parametrize("band", [1, 2, 3])
def test_certificate_is_tight_for_the_worst_base_classifier(band: int) -> None:
    """Certified against m×m patches exactly when the worst patch does not flip the vote: a Δ too
    small would certify points the patch flips, one too large would refuse points it cannot."""
    smoothed = ColumnSmoothing(AnyBright(), band=band)
    x = torch.zeros(1, 1, 8, 12)
    for m in range(1, 8):
        cert = smoothed.certify(x, patch=m)
        assert int(cert.counts[0, 0]) == 12 and int(cert.prediction[0]) == 0
        assert bool(cert.certified[0]) == (not _worst_patch_flips(smoothed, x, m)), (band, m)
    # 2Δ ≤ 12 with Δ = m + b − 1, and ties go to class 0
    assert int(smoothed.certify(x, patch=1).largest_patch[0]) == 6 - band + 1


def test_largest_patch_tie_breaking_and_reach() -> None:
    counts = torch.tensor([[10, 4, 0], [4, 10, 0], [2, 2, 0], [12, 0, 0]])
    # point 0: slack 6 -> Δ 3; point 1: winner class 1, class 0 < 1 -> slack 5 -> Δ 2; point 2: tie
    assert largest_certified_patch(counts, band=2, size=12).tolist() == [2, 1, 0, 5]
    assert patch_reach(5, 4, 28) == 8 and patch_reach(30, 4, 28) == 28


def test_certified_points_survive_random_patches() -> None:
    """A random CNN: no patch of the certified width changes a certified vote."""
    torch.manual_seed(0)
    base = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)
    )
    with torch.no_grad():
        base[-1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))  # a vote that is often decided
    smoothed = ColumnSmoothing(base, band=2)
    x = torch.rand(6, 1, 10, 10) * 0.3
    cert = smoothed.certify(x, patch=2)
    assert bool(cert.certified.any())
    gen = torch.Generator().manual_seed(1)
    for i in cert.certified.nonzero().flatten().tolist():
        for left in range(9):
            patched = x[i : i + 1].repeat(4, 1, 1, 1)
            patched[..., 3:5, left : left + 2] = torch.rand(4, 1, 2, 2, generator=gen)
            patched[0, ..., 3:5, left : left + 2] = 1.0
            assert (smoothed.predict(patched) == cert.prediction[i]).all()


def test_column_smoothing_bad_input() -> None:
    with pytest.raises(InputError, match="wider"):
        ColumnSmoothing(AnyBright(), band=20).certify(torch.zeros(1, 1, 8, 12), patch=2)
    with pytest.raises(InputError, match="patch"):
        ColumnSmoothing(AnyBright(), band=2).certify(torch.zeros(1, 1, 8, 12), patch=0)
    with pytest.raises(InputError, match="axis"):
        ColumnSmoothing(AnyBright(), band=2, axis="diagonal")


def _toy_data(n: int = 128) -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 1, 6, 6, generator=g) * 0.4
    x[y == 1, :, :, :3] += 0.5  # class 1: bright left half
    return SimpleNamespace(x=x, y=y)


def test_noise_and_ablation_training_methods() -> None:
    data = _toy_data()
    with pytest.raises(InputError, match="sigma"):
        create_method("gaussian-noise", sigma=-1)
    torch.manual_seed(0)
    noisy = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    history = fit(noisy, data, method="gaussian-noise", epochs=3, batch_size=32, lr=0.1, device="cpu")
    assert history.last.train_loss < history.records[0].train_loss
    method = create_method("gaussian-noise", sigma=0.5)
    torch.manual_seed(1)
    a, _ = method.loss(noisy, data.x, data.y, 0.0)
    torch.manual_seed(1)
    b, _ = method.loss(noisy, data.x, data.y, 0.0)
    clean = nn.functional.cross_entropy(noisy(data.x), data.y)
    assert a.item() == b.item() and a.item() != clean.item()

    with pytest.raises(InputError, match="input_shape=\\(2, H, W\\)"):
        fit(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(2)), data, method="column-ablation",
            epochs=1, device="cpu")
    ablated = nn.Sequential(nn.Flatten(), nn.Linear(72, 2))  # 2·C channels
    fit(ablated, data, method="column-ablation", epochs=3, batch_size=32, lr=0.1, device="cpu")
    cert = ColumnSmoothing(ablated, band=2).certify(data.x, patch=1)
    assert cert.certified_accuracy(data.y) > 0.5  # the vote learned the bright half, and certifies it


class BandBrightness(nn.Module):
    """Class 1 iff the kept band's brightness exceeds 2.5 (a differentiable base classifier): on a
    dark image, a white m×m patch (m >= 3) turns every band it touches, m + b − 1 of them, to class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :1].flatten(1).sum(dim=1)
        return torch.stack([torch.zeros_like(s), 4 * (s - 2.5)], dim=1)


def test_patch_interval_is_tight_where_the_certificate_is() -> None:
    """Dark 8×12 images, band 2: the vote (12 to 0) is certified up to m = 5 (Δ = 6 bands, a tie goes
    to class 0) and a white 6×6 patch flips 7 bands: the attack closes the interval at every size, and
    no certified point is ever broken."""
    from advrobust.defences import certify_and_attack_patches

    smoothed = ColumnSmoothing(BandBrightness(), band=2)
    x = torch.rand(3, 1, 8, 12, generator=torch.Generator().manual_seed(0)) * 0.02
    y = torch.tensor([0, 0, 1])  # the last point is misclassified
    res = certify_and_attack_patches(smoothed, x, y, sizes=[6, 0, 1, 3, 5])
    assert res.epsilons == [0.0, 1.0, 3.0, 5.0, 6.0]
    assert res.certified == res.attacked == pytest.approx([2 / 3] * 4 + [0.0])
    assert not bool((res.certified_points(y) & res.broken).any())
    assert res.norm[:2].tolist() == [6.0, 6.0] and res.attacked_points == [0, 2, 2, 2, 2]
    with pytest.raises(InputError, match="whole numbers"):
        certify_and_attack_patches(smoothed, x, y, sizes=[2.5])
    with pytest.raises(InputError, match="does not fit"):
        certify_and_attack_patches(smoothed, x, y, sizes=[9])


def test_evaluate_column_smoothing_reports_the_patch_interval(tmp_path) -> None:
    """ar.evaluate on a column-smoothed model: the patch threat (eps = the square's side), certified <=
    attacked per size, in the result, its JSON, the table, the report and the results store."""
    import advrobust as ar
    from advrobust.cli.evaluate import results_table
    from advrobust.evaluation import EvaluationResult
    from advrobust.evaluation.store import ResultStore
    from advrobust.report import write_report

    smoothed = ColumnSmoothing(BandBrightness(), band=2)
    x = torch.rand(3, 1, 8, 12, generator=torch.Generator().manual_seed(0)) * 0.02
    y = torch.tensor([0, 0, 1])
    store = ResultStore(tmp_path / "results.sqlite")
    result = ar.evaluate(smoothed, x, y, epsilons=[3, 6], store=store)
    assert result.threat == "patch" and result.epsilons == [3.0, 6.0]
    assert result.certified_accuracy == pytest.approx({3.0: 2 / 3, 6.0: 0.0})
    assert result.robust_accuracy == pytest.approx({3.0: 2 / 3, 6.0: 0.0})
    assert result.min_norm.tolist() == [6.0, 6.0, 0.0] and result.broken_by[1][:2] == ["roa-vote"] * 2
    again = EvaluationResult.from_json(result.to_json())
    assert torch.equal(again.certified, result.certified) and again.certification["band"] == 2
    assert store.rows()[0].flat()["certified@3"] == pytest.approx(2 / 3)
    assert "certified" in str(results_table(result).renderables[1].columns[-1].header)
    page = write_report(tmp_path / "report.html", again).read_text()
    assert "patch side (pixels)" in page and "interval.png" in page
    with pytest.raises(InputError, match="patch"):
        ar.evaluate(smoothed, x, y, threat=ar.L0(eps=25))


def test_vote_forward_ranks_as_the_vote_and_differentiates_the_soft_vote() -> None:
    """SoftVote(vote_forward=True): its argmax is the vote's winner (ties to the smaller class), its
    gradient the soft vote's divided by 2W."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    smoothed = ColumnSmoothing(base, band=2)
    x = torch.rand(16, 1, 6, 6)
    vote, soft = smoothed.soft(vote_forward=True), smoothed.soft()
    assert torch.equal(vote(x).argmax(dim=1), smoothed.predict(x))
    xv = x.clone().requires_grad_(True)
    (g_vote,) = torch.autograd.grad(vote(xv)[:, 1].sum(), xv)
    (g_soft,) = torch.autograd.grad(soft(xv).exp()[:, 1].sum(), xv)
    assert torch.allclose(g_vote, g_soft / 12, atol=1e-7)
