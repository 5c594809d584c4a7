"""``advrobust.evaluate``: robust accuracy under the worst case per point over an ensemble of attacks.

The procedure (Croce & Hein 2020's ensemble evaluation, generalized to many eps and both kinds of
attack):

1. Clean pass: points the model misclassifies are never attacked and never robust.
2. The attacks run in the suite's order; each runs only on the points still robust.
   * A fixed-budget attack is swept over the eps in increasing order; at eps_e it attacks the points
     still robust at eps_e, and an adversarial example it finds breaks the point at eps_e and at every
     larger eps (it lies inside every larger ball).
   * A minimum-norm attack runs once (unbounded) on the points robust at the smallest eps; the norm
     of what it finds, measured in the threat's norm, breaks the point at every eps >= that norm.
3. ``robust[e, i]`` is true iff point ``i`` is classified correctly and no attack broke it at eps_e:
   an upper bound on the true robust accuracy. For a randomized model (its outputs change between two
   passes of the same inputs, :mod:`advrobust.runtime.randomness`) every verdict, clean or adversarial,
   is taken over ``VERDICT_DRAWS`` fresh draws (wrong on more than half of them), the ``standard`` and
   ``plus`` suites give way to ``rand`` (APGD with EOT), and the result says so. For deterministic
   attacks a point robust to the ensemble is robust to each member run alone; a randomized member
   (random start, Square) draws other random numbers alone than on the ensemble's smaller set of
   points, so for it the comparison holds in distribution, not draw by draw.

The work is cut into units (attack × eps × chunk of ``batch_size`` points), each deterministic,
written to ``run_dir`` as it finishes (:mod:`~advrobust.evaluation.rundir`, for resuming) and dealt
out to the ranks of a process group (:mod:`~advrobust.distributed`, for scaling out): within a stage
chunk ``c`` goes to rank ``c mod world`` and every rank receives every chunk's result, so the merged
result equals the single-process one exactly.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch
from torch import Tensor

from advrobust.attacks.access import allows, model_access
from advrobust.attacks.base import Attack, FixedBudgetAttack
from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.inputs import check_inputs
from advrobust.attacks.oracle import VERDICT_DRAWS
from advrobust.data.fingerprint import data_fingerprint
from advrobust.distributed import gather, rank_and_world
from advrobust.errors import InputError
from advrobust.evaluation.result import AttackRecord, EvaluationResult, Example
from advrobust.evaluation.rundir import RunDir, UnitResult
from advrobust.evaluation.suites import RAND_REPLACES, Member, build_suite
from advrobust.losses import is_adversarial_by_majority
from advrobust.progress import SILENT, Progress
from advrobust.runtime.policy import RuntimePolicy
from advrobust.runtime.randomness import check_randomness
from advrobust.runtime.runner import Model
from advrobust.threat import Linf, Threat, within_budget
from advrobust.transforms.base import Transform
from advrobust.transforms.model import TransformedModel
from advrobust.version import __version__

#: points of the batch run twice to tell whether the model is randomized
RANDOMNESS_PROBE = 64


@torch.no_grad()
def _logits_of(model: Model, chunk: Tensor) -> Tensor:
    """``model(chunk)``, with a one-line error when the model fails on the data or returns no logits."""
    try:
        out = model(chunk)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"the model failed on inputs of shape {tuple(chunk.shape[1:])}: {first} "
            "(does the data match the model's input shape and channels?)"
        ) from None
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != chunk.shape[0]:
        raise InputError("the model must return logits of shape (N, classes)")
    return out


def model_fingerprint(model: Model) -> str:
    """SHA-256 of the weights (``advrobust.models``); ``"unknown"`` for a model that is no Module."""
    if not isinstance(model, torch.nn.Module):
        return "unknown"
    from advrobust.models.fingerprint import fingerprint

    return fingerprint(model)


def _describe(attack: Attack) -> dict[str, Any]:
    """An attack's class, threat and plain hyper-parameters: its identity for resuming (objects such
    as a progress sink, whose repr changes from process to process, are left out)."""
    plain = (int, float, str, bool, type(None))
    params = {k: v for k, v in sorted(vars(attack).items()) if isinstance(v, plain) and not k.startswith("_")}
    return {"class": type(attack).__name__, "threat": attack.threat.describe(), **params}


def versions() -> dict[str, str]:
    return {"advrobust": __version__, "torch": torch.__version__, "python": platform.python_version()}


def resolve_threat(threat: Threat | None, epsilons: Any) -> tuple[Threat, list[float]]:
    """The threat model and the sorted, distinct eps to evaluate (default ``Linf(eps=0.3)``)."""
    if threat is None:
        threat = Linf(eps=0.3) if epsilons is None else Linf()
    if not isinstance(threat, Threat):
        raise InputError(f"threat must be a threat model such as ar.Linf(eps=0.3), got {threat!r}")
    if epsilons is None:
        if threat.eps is None:
            raise InputError("give the threat model an eps (ar.Linf(eps=0.3)) or pass epsilons=[...]")
        values = [threat.eps]
    else:
        values = [float(e) for e in ([epsilons] if isinstance(epsilons, (int, float)) else epsilons)]
        if not values:
            raise InputError("epsilons is empty: give at least one budget")
        for v in values:
            threat.with_eps(v)  # validates: finite, >= 0
    return threat.with_eps(None), sorted(set(values))


@dataclass
class _State:
    """Per-point outcomes while the ensemble runs."""

    robust: Tensor  # E×N bool
    broken_by: list[list[str | None]]
    min_norm: Tensor  # N
    examples: list[dict[int, tuple[Tensor, float, str]]] = field(default_factory=list)

    def mark(self, e: int, points: Tensor, name: str) -> None:
        """Points broken at eps index ``e`` by ``name`` (the first attack to break one keeps it)."""
        fresh = points[self.robust[e, points]]
        for i in fresh.tolist():
            self.broken_by[e][i] = name
        self.robust[e, points] = False


@dataclass(frozen=True)
class EvaluationPlan:
    """What an evaluation does, fixed before it starts: the norm (``threat``, unbounded), the sorted
    budgets, the chunk of points one unit attacks, the seed of the attacks built from names, the
    examples kept per eps and how the model is run."""

    threat: Threat
    epsilons: list[float]
    batch_size: int
    seed: int
    n_examples: int
    runtime: RuntimePolicy


class _Evaluation:
    """One evaluation's fixed inputs; runs stages of units and folds their results into the state."""

    def __init__(self, model: Model, x: Tensor, y: Tensor, plan: EvaluationPlan, rundir: RunDir,
                 progress: Progress) -> None:
        self.model, self.x, self.y, self.plan = model, x, y, plan
        self.threat, self.epsilons = plan.threat, plan.epsilons
        self.rundir, self.progress = rundir, progress

    # --- clean pass ---------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        outs = [_logits_of(self.model, chunk) for chunk in x.split(self.plan.batch_size)]
        return torch.cat(outs) if outs else torch.zeros(0, 0)

    def clean_verdicts(self, randomized: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits, predicted class, correct)`` per point: one pass, or for a randomized model the
        mean logits, the most frequent class and "right on more than half" of ``VERDICT_DRAWS`` draws."""
        draws = VERDICT_DRAWS if randomized else 1
        passes = [self.logits(self.x) for _ in range(draws)]
        logits = torch.stack(passes).mean(dim=0)
        n = self.x.shape[0]
        if n and int(self.y.max()) >= logits.shape[1]:
            raise InputError(f"labels go up to {int(self.y.max())} but the model has {logits.shape[1]} classes")
        if not n:
            return logits, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
        predictions = torch.stack([z.argmax(dim=1) for z in passes])
        wrong = is_adversarial_by_majority(predictions, self.y) if randomized else predictions[0] != self.y
        return logits, predictions.mode(dim=0).values, ~wrong

    # --- units --------------------------------------------------------------------------------
    def _run_unit(self, attack: Attack, index: Tensor, eps: float | None) -> UnitResult:
        start = time.perf_counter()
        x = self.x[index]
        res = attack(self.model, x, self.y[index], runtime=self.plan.runtime)
        norm = self.threat.norm(res.x_adv - x)
        success = res.success.clone()
        if eps is not None:  # defense in depth: a fixed-budget success must lie inside the ball
            success &= within_budget(norm, eps)
        norm = torch.where(success, norm, torch.full_like(norm, math.inf))
        keep = _varied(success.nonzero().squeeze(1), self.y[index], self.plan.n_examples)
        return UnitResult(
            index=index.cpu(),
            success=success.cpu(),
            norm=norm.float().cpu(),
            queries=res.queries.cpu(),
            keep=keep.cpu(),
            x_adv=res.x_adv[keep].detach().cpu(),
            seconds=time.perf_counter() - start,
        )

    def run_stage(self, key: str, attack: Attack, todo: Tensor, eps: float | None, desc: str) -> list[UnitResult]:
        """Run ``attack`` on the points ``todo`` chunk by chunk; every rank gets every chunk back."""
        chunks = list(todo.split(self.plan.batch_size)) if todo.numel() else []
        rank, world = rank_and_world()
        mine: dict[int, UnitResult] = {}
        with self.progress.task(desc, total=len(range(rank, len(chunks), world))) as task:
            for c in range(rank, len(chunks), world):
                unit = self.rundir.load(f"{key}-{c}")
                if unit is None or not torch.equal(unit.index, chunks[c].cpu()):
                    unit = self._run_unit(attack, chunks[c], eps)
                    self.rundir.save(f"{key}-{c}", unit)
                mine[c] = unit
                task.advance(1)
        merged: dict[int, UnitResult] = {}
        for part in gather(mine):
            merged.update(part)
        return [merged[c] for c in range(len(chunks))]

    # --- folding units into the state ---------------------------------------------------------
    def fold(self, state: _State, units: list[UnitResult], name: str, eps_hits: list[int], e_min: int) -> None:
        """Apply units: a success breaks its point at every eps index ``e >= e_min`` whose eps
        is at least the success's norm (``eps_hits`` lists the eps indices to consider)."""
        device = state.robust.device
        for unit in units:
            index = unit.index.to(device)
            success, norm = unit.success.to(device), unit.norm.to(device)
            for e in eps_hits:
                if e < e_min:
                    continue
                hit = success & within_budget(norm, self.epsilons[e])
                state.mark(e, index[hit], name)
            won = index[success]
            state.min_norm[won] = torch.minimum(state.min_norm[won], norm[success])
            for pos, x_adv in zip(unit.keep.tolist(), unit.x_adv, strict=True):
                i, n = int(index[pos]), float(norm[pos])
                for e in eps_hits:
                    if e >= e_min and i not in state.examples[e] and within_budget(n, self.epsilons[e]):
                        self._offer_example(state.examples[e], i, (x_adv, n, name))

    def _offer_example(self, kept: dict[int, tuple[Tensor, float, str]], i: int,
                       item: tuple[Tensor, float, str]) -> None:
        """Keep point ``i``'s example while there is room, or in place of the latest example of a
        label kept twice when ``i``'s label is not kept yet (so the report shows many classes)."""
        if len(kept) < self.plan.n_examples:
            kept[i] = item
            return
        labels = [int(self.y[j]) for j in kept]
        if int(self.y[i]) in labels:
            return
        repeated = [j for j, label in zip(kept, labels, strict=True) if labels.count(label) > 1]
        if repeated:
            del kept[repeated[-1]]
            kept[i] = item


def _varied(broken: Tensor, labels: Tensor, k: int) -> Tensor:
    """Up to ``k`` of the positions ``broken``, one per label before a second of any label (the
    report shows them: a batch's first successes may well share a class), in order otherwise."""
    seen: dict[int, int] = {}
    rank = []
    for label in labels[broken].tolist():
        rank.append(seen.get(label, 0))
        seen[label] = rank[-1] + 1
    order = sorted(range(len(rank)), key=lambda j: (rank[j], j))[:k]
    return broken[torch.tensor(sorted(order), dtype=torch.long, device=broken.device)]


def _record(
    name: str, eps: float, units: list[UnitResult], within: float | None, robust_after: float,
    attacked: Tensor | None = None,
) -> AttackRecord:
    """Numbers of one attack at one eps; ``within`` counts successes of norm <= it (min-norm)."""
    if not units:
        return AttackRecord.idle(name, eps, robust_after)
    index = torch.cat([u.index for u in units])
    success = torch.cat([u.success for u in units])
    norm = torch.cat([u.norm for u in units])
    queries = torch.cat([u.queries for u in units]).float()
    if within is not None:
        success = success & within_budget(norm, within)
    if attacked is not None:  # min-norm: only the points still robust at this eps when it ran
        mask = attacked[index]
        success, norm = success[mask], norm[mask]
    n = int(success.numel())
    broken = int(success.sum())
    return AttackRecord(
        attack=name,
        eps=eps,
        robust_accuracy=robust_after,
        success_rate=broken / n if n else 0.0,
        median_norm=float(norm[success].median()) if broken else math.nan,
        mean_queries=float(queries.mean()) if queries.numel() else 0.0,
        seconds=float(sum(u.seconds for u in units)),
        attacked=n,
        broken=broken,
    )


def _as_data(x: Any, y: Any) -> tuple[Tensor, Tensor, list[str] | None, str | None]:
    """Accept ``(x, y)`` tensors or a Dataset (``.x``, ``.y``, ``.classes``, ``.name``)."""
    if y is None and hasattr(x, "x") and hasattr(x, "y"):
        return x.x, x.y, list(getattr(x, "classes", []) or []) or None, getattr(x, "name", None)
    if y is None:
        raise InputError("pass labels y with the inputs x, or a Dataset (advrobust.data.load(...))")
    return x, y, None, None


def _dense_task(task: Any, model: Model, x: Any, y: Any) -> Any:
    """The segmentation or detection task of an evaluation, or ``None`` for classification."""
    from advrobust.tasks import resolve_task

    labels = y if y is not None else getattr(x, "y", None)
    resolved = resolve_task(task, model, labels)
    return resolved if resolved.dense else None


def evaluate(
    model: Model,
    x: Any,
    y: Tensor | None = None,
    *,
    threat: Threat | None = None,
    epsilons: list[float] | float | None = None,
    suite: str | list[str | Attack] = "standard",
    batch_size: int = 256,
    store: Any = None,
    run_dir: str | os.PathLike[str] | None = None,
    progress: Progress = SILENT,
    classes: list[str] | None = None,
    model_name: str | None = None,
    data_name: str | None = None,
    seed: int = 0,
    n_examples: int = 4,
    runtime: RuntimePolicy | None = None,
    task: Any = None,
    eot: int | None = None,
    transform: Transform | None = None,
) -> Any:
    """Robust accuracy of ``model`` on ``(x, y)`` (or a Dataset) under ``threat`` at every eps.

    ``threat`` gives the norm and, without ``epsilons``, the one eps (default ``Linf(eps=0.3)``, the
    MNIST budget of Madry et al. 2018). ``suite``: ``"standard"`` (the default, in the spirit of
    AutoAttack), ``"plus"``, ``"seed"``, ``"quick"`` (FGSM and PGD: a smoke test, no robustness claim)
    (see :mod:`~advrobust.evaluation.suites`) or a list of attack names / Attack objects. ``batch_size``
    (default 256) is the chunk of points one unit attacks. ``store``: a SQLite path or
    :class:`~advrobust.evaluation.store.ResultStore` to record the result in. ``run_dir``: where
    finished units are written; the same call with the same ``run_dir`` resumes. ``seed`` (default 0)
    seeds the attacks built from names. ``n_examples`` (default 4): broken points kept per eps.
    ``runtime`` decides how the attacks run the model (default ``RuntimePolicy()``: the CPU fast path
    where it applies; results are confirmed on the plain model either way). ``eot``: every attack of
    the suite averages its gradients (or scores) over that many draws of the model (default: the
    suite's own; ``rand``'s is 20), for a randomized model.

    ``transform`` (a :class:`~advrobust.transforms.Transform`): the model as a camera sees it, through
    those transformations. A classifier becomes the randomized model ``f(t(x))``, one fresh draw per
    pass (:class:`~advrobust.transforms.model.TransformedModel`), evaluated like any randomized model;
    a segmenter's or detector's attacks run through ``eot`` draws per pass (default
    :data:`~advrobust.evaluation.tasks.PHYSICAL_EOT`) and are judged under fresh draws as well
    (:func:`advrobust.evaluation.tasks.evaluate_task`).

    A smoothed classifier is evaluated as an interval: certified accuracy (lower bound) and attacked
    robust accuracy (upper bound) per eps, in ``result.certified_accuracy`` and
    ``result.robust_accuracy`` (:mod:`~advrobust.evaluation.certified`): per l2 eps for
    :class:`advrobust.defences.GaussianSmoothing`, per patch side ``m`` (an ``m×m`` square anywhere,
    ``threat=None``, ``epsilons=[2, 5]``) for :class:`advrobust.defences.ColumnSmoothing`.

    ``task``: a segmenter or detector (named, declared by the model's ``task`` attribute, or read
    from the labels' form) is evaluated by :func:`advrobust.evaluation.tasks.evaluate_task` instead:
    its metrics (mIoU, mAP) under ``suite`` (a list of attacks; a suite name means DAG and PGD) at
    every eps, returned as a :class:`~advrobust.evaluation.tasks.TaskEvaluation`.
    """
    dense = _dense_task(task, model, x, y)
    if dense is not None:
        from advrobust.evaluation.tasks import evaluate_task

        if eot is not None and transform is None:
            raise InputError("eot for a segmenter or detector counts draws of a transform: pass transform= too")
        threat, eps_list = resolve_threat(threat, epsilons)
        return evaluate_task(
            model, x, y, task=dense, attacks=suite if isinstance(suite, list) else ["dag", "pgd"], threat=threat,
            epsilons=eps_list, batch_size=min(int(batch_size), 64), store=store, progress=progress,
            model_name=model_name, data_name=data_name, seed=seed, n_examples=n_examples, runtime=runtime,
            transform=transform, eot=eot,
        )
    if transform is not None:
        model = TransformedModel(model, transform, seed=seed)
    started = time.perf_counter()
    x, y, data_classes, data_label = _as_data(x, y)
    if getattr(model, "certifies", None) in ("l2", "patch"):  # a smoothed classifier: [certified, attacked] per eps
        from advrobust.evaluation.certified import evaluate_smoothed

        result = evaluate_smoothed(
            model, x, y, threat=threat, epsilons=epsilons, model_fingerprint=model_fingerprint(model.base),
            versions=versions(), progress=progress, classes=classes or data_classes, model_name=model_name,
            data_name=data_name or data_label, seed=seed,
        )
        _add_to_store(store, result)
        return result
    threat, eps_list = resolve_threat(threat, epsilons)
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    x, y, _ = check_inputs(model, x, y)
    with evaluation_mode(model):
        randomized = check_randomness(lambda rows: _logits_of(model, rows), x[:RANDOMNESS_PROBE]).randomized
    if randomized and isinstance(suite, str) and suite.strip().lower() in RAND_REPLACES:
        suite = "rand"  # a randomized model is evaluated with EOT and verdicts over draws
    label, members = build_suite(suite, threat.with_eps(eps_list[0]), seed, eot=eot)
    for m in members:
        if m.attack is not None and m.skipped_reason is None and not allows(model_access(model), m.attack.needs):
            m.attack, m.skipped_reason = None, f"needs {m.attack.needs} of the model"
    plan = EvaluationPlan(threat=threat, epsilons=eps_list, batch_size=int(batch_size), seed=int(seed),
                          n_examples=int(n_examples), runtime=runtime if runtime is not None else RuntimePolicy())
    fingerprint = model_fingerprint(model)
    identity = {
        "model": fingerprint,
        "data": data_fingerprint(x, y),
        "threat": threat.name,
        "epsilons": eps_list,
        "attacks": [_describe(m.attack) if m.attack else m.name for m in members],
        "batch_size": plan.batch_size,
        "seed": plan.seed,
        "n_examples": plan.n_examples,
        "randomized": randomized,
    }
    run = _Evaluation(model, x, y, plan, RunDir(run_dir, identity), progress)
    n, n_eps = x.shape[0], len(eps_list)
    with evaluation_mode(model):
        clean_logits, clean_pred, correct = run.clean_verdicts(randomized)
        state = _State(
            robust=correct[None, :].repeat(n_eps, 1),
            broken_by=[[None] * n for _ in range(n_eps)],
            min_norm=torch.where(correct, torch.full((n,), math.inf, device=x.device), torch.zeros(n, device=x.device)),
            examples=[{} for _ in range(n_eps)],
        )
        records = _run_members(run, state, members)
        examples = _examples(run, state, clean_logits)
    result = EvaluationResult(
        model_name=model_name or type(model).__name__,
        model_fingerprint=fingerprint,
        data_name=data_name or data_label or "tensors",
        threat=threat.name,
        epsilons=eps_list,
        suite=label,
        attacks=[m.name for m in members],
        classes=list(classes or data_classes or [str(c) for c in range(clean_logits.shape[1] if n else 0)]),
        labels=y.cpu(),
        clean_pred=clean_pred.cpu(),
        clean_correct=correct.cpu(),
        robust=state.robust.cpu(),
        broken_by=state.broken_by,
        min_norm=state.min_norm.float().cpu(),
        per_attack=records,
        examples=examples,
        seed=int(seed),
        versions=versions(),
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=time.perf_counter() - started,
        randomized=randomized,
        verdict_rule=f"wrong on more than half of {VERDICT_DRAWS} draws of the model" if randomized else "one pass",
    )
    _add_to_store(store, result)
    return result


def _add_to_store(store: Any, result: EvaluationResult) -> None:
    """Record ``result`` in ``store`` (a path or a ResultStore; ``None``: nowhere), from rank 0 only."""
    if store is not None and rank_and_world()[0] == 0:
        from advrobust.evaluation.store import ResultStore

        (store if isinstance(store, ResultStore) else ResultStore(store)).add(result)


def _run_members(run: _Evaluation, state: _State, members: list[Member]) -> list[AttackRecord]:
    records: list[AttackRecord] = []
    n = max(state.robust.shape[1], 1)
    all_eps = list(range(len(run.epsilons)))
    for m_i, member in enumerate(members):
        if member.attack is None:
            records += [
                AttackRecord.idle(member.name, eps, float(state.robust[e].sum()) / n, member.skipped_reason)
                for e, eps in enumerate(run.epsilons)
            ]
            continue
        if isinstance(member.attack, FixedBudgetAttack):
            for e, eps in enumerate(run.epsilons):
                todo = state.robust[e].nonzero().squeeze(1)
                attack = member.attack.with_threat(run.threat.with_eps(eps))
                units = run.run_stage(f"{m_i}-{e}", attack, todo, eps, f"{member.name} {run.threat.name} eps={eps:g}")
                run.fold(state, units, member.name, all_eps, e_min=e)
                records.append(_record(member.name, eps, units, None, float(state.robust[e].sum()) / n))
        else:
            before = state.robust.clone()
            todo = before[0].nonzero().squeeze(1)
            units = run.run_stage(f"{m_i}-min", member.attack, todo, None, f"{member.name} (minimum norm)")
            run.fold(state, units, member.name, all_eps, e_min=0)
            records += [
                _record(member.name, eps, units, eps, float(state.robust[e].sum()) / n, attacked=before[e].cpu())
                for e, eps in enumerate(run.epsilons)
            ]
    return records


@torch.no_grad()
def _examples(run: _Evaluation, state: _State, clean_logits: Tensor) -> list[Example]:
    out: list[Example] = []
    clean_prob = clean_logits.softmax(dim=1) if clean_logits.numel() else clean_logits
    for e, eps in enumerate(run.epsilons):
        items = sorted(state.examples[e].items())
        if not items:
            continue
        x_adv = torch.stack([v[0] for _, v in items]).to(run.x.device, run.x.dtype)
        adv_prob = run.logits(x_adv).softmax(dim=1)
        for k, (i, (_, norm, name)) in enumerate(items):
            out.append(
                Example(
                    index=i,
                    x=run.x[i].cpu(),
                    x_adv=x_adv[k].cpu(),
                    label=int(run.y[i]),
                    clean_pred=int(clean_prob[i].argmax()),
                    clean_conf=float(clean_prob[i].max()),
                    adv_pred=int(adv_prob[k].argmax()),
                    adv_conf=float(adv_prob[k].max()),
                    norm=norm,
                    eps=eps,
                    attack=name,
                )
            )
    return out

