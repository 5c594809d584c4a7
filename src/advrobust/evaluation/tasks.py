"""Segmenters and detectors under attack: mIoU / pixel accuracy, mAP@0.5 / recall at every eps.

    clean_metrics(model, data)                    # on the clean images
    task_metrics(model, x_adv, y, task)           # on any images (e.g. an attack's x_adv)
    ev = evaluate_task(model, data, attacks=["dag", "pgd"], epsilons=[0.02, 0.05])
    ev.clean, ev.metrics["0.05"]["dag"], ev.metrics["0.05"]["worst"]
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advrobust.attacks.base import Attack
from advrobust.attacks.registry import Entry
from advrobust.errors import InputError
from advrobust.models.fingerprint import fingerprint
from advrobust.progress import SILENT, Progress
from advrobust.tasks import Segmentation, Task, resolve_task
from advrobust.tasks.metrics import miou_interval, per_image_confusion
from advrobust.tasks.scoring import metrics_of_outputs, model_metrics, outputs
from advrobust.threat import Linf, Threat, threat_from_name
from advrobust.transforms.base import Transform
from advrobust.transforms.model import TransformedModel

#: a physical evaluation's defaults: draws averaged per attack pass (EOT), and fresh draws each
#: attacked image is judged under
PHYSICAL_EOT = 4
PHYSICAL_DRAWS = 20


def task_metrics(model: Any, x: Tensor, y: Tensor, task: Task | str | None = None) -> dict[str, float]:
    """The metrics of ``model`` on images ``x`` with labels ``y`` (the task's tensor form)."""
    return model_metrics(model, x, y, resolve_task(task, model, y))


def clean_metrics(model: Any, data: Any, task: Task | str | None = None) -> dict[str, float]:
    """The metrics of ``model`` on a scene data set (:class:`~advrobust.data.scenes.SceneDataset`)."""
    return task_metrics(model, data.x, data.y, task if task is not None else resolve_task(None, model, data.y))


# --- evaluation of a dense task under attack ---------------------------------------------------------


@dataclass
class TaskExample:
    """One image the report shows: clean and adversarial input, and the model's outputs on both
    (a label map for segmentation; boxes ``M×6`` rows ``(x1, y1, x2, y2, score, label)`` for detection)."""

    eps: float | None
    attack: str
    x: Tensor
    x_adv: Tensor
    clean: Tensor
    adversarial: Tensor
    truth: Tensor

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, Tensor) else v) for k, v in vars(self).items()}


@dataclass
class TaskEvaluation:
    """The metrics of a segmenter or detector, clean and under each attack at each budget.

    ``metrics[eps_key][attack]`` maps a metric name (``miou``, ``pixel_accuracy`` / ``map``,
    ``recall``) to its value; the ``"worst"`` entry takes, per image, the attack that damaged it most
    (segmentation: most labelled pixels wrong; detection: fewest boxes found), so it is never above
    any single attack's damage. ``norms[eps_key][attack]`` holds the median ``‖r‖∞`` and ``‖r‖₂``;
    ``extras[eps_key][attack]`` the means of the attack's own diagnostics (DAG: iterations, flipped).
    """

    task: str
    model_name: str
    model_fingerprint: str
    data_name: str
    n_points: int
    threat: str
    epsilons: list[float | None]
    attacks: list[str]
    clean: dict[str, float]
    metrics: dict[str, dict[str, dict[str, float]]]
    norms: dict[str, dict[str, dict[str, float]]]
    extras: dict[str, dict[str, dict[str, float]]]
    examples: list[TaskExample] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    #: segmentation: 95% bootstrap intervals of the mIoU over images, ``"clean"`` and per eps and attack
    intervals: dict[str, Any] = field(default_factory=dict)
    #: with a transformation (physical evaluation): its description, the draws each attack pass
    #: averaged (EOT), the fresh draws each image was judged under, the metrics under them per eps and
    #: attack (``physical``) and of the clean images under the transformations alone (``baseline``)
    transform: str = ""
    eot: int = 1
    draws: int = 0
    physical: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    timestamp: str = ""

    @staticmethod
    def key(eps: float | None) -> str:
        return "unbounded" if eps is None else f"{eps:g}"

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "examples"}
        out["examples"] = [e.to_dict() for e in self.examples]
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def _damage(z: Tensor, y: Tensor, task: Task) -> Tensor:
    """Per image, how badly the output ``z`` is wrong: the share of labelled pixels misclassified
    (segmentation) or of boxes not detected (detection)."""
    if isinstance(task, Segmentation):
        return task.fooled(z, y, None)
    found = [task.found(d, y[i]) for i, d in enumerate(task.decode(z))]
    return torch.tensor([1.0 - float(f.float().mean()) if f.numel() else 0.0 for f in found], device=z.device)


def _interval(z: Tensor, y: Tensor, task: Task) -> list[float] | None:
    """The mIoU's bootstrap interval (segmentation; ``None`` for detection, whose mAP is not
    resampled here)."""
    if not isinstance(task, Segmentation):
        return None
    return list(miou_interval(per_image_confusion(z.argmax(dim=1), y, z.shape[1], task.ignore_index)))


def drawn_outputs(z: Tensor, task: Task) -> list[Tensor]:
    """What the report draws of each output: the label map, or the detections as ``M×6`` rows."""
    if isinstance(task, Segmentation):
        return list(z.argmax(dim=1).cpu())
    return [torch.cat([d.boxes, d.scores[:, None], d.labels[:, None].float()], dim=1).cpu() for d in task.decode(z)]


def evaluate_task(
    model: Any,
    x: Any,
    y: Any = None,
    *,
    task: Task | str | None = None,
    attacks: Sequence[Entry | Attack] = ("dag", "pgd"),
    threat: Threat | None = None,
    epsilons: Sequence[float | None] | None = None,
    batch_size: int = 64,
    store: Any = None,
    progress: Progress = SILENT,
    model_name: str | None = None,
    data_name: str | None = None,
    seed: int = 0,
    n_examples: int = 3,
    runtime: Any = None,
    transform: Transform | None = None,
    eot: int | None = None,
    draws: int | None = None,
) -> TaskEvaluation:
    """The task's metrics of ``model`` on ``(x, y)`` (or a scene data set), clean and after each
    attack at each eps. ``attacks``: registry names, ``(name, options)`` pairs or
    :class:`~advrobust.attacks.base.Attack` s (each re-targeted to every eps; a name used twice is
    shown as ``name#2``); ``threat``: the norm (default ``Linf``); ``epsilons``: the budgets
    (``None`` in the list: unbounded, for DAG). ``store``: a results store (path or
    :class:`~advrobust.evaluation.store.ResultStore`) to record the result in; ``runtime``: how the
    attacks run the model (:class:`~advrobust.runtime.RuntimePolicy`).

    ``transform``: a physical evaluation. Every attack then runs through the model seen under the
    transformations (:class:`~advrobust.transforms.model.TransformedModel` with ``eot`` draws per
    pass, default :data:`PHYSICAL_EOT`: EOT, each draw's output brought back over the input), and its
    examples are judged under ``draws`` fresh draws as well (default :data:`PHYSICAL_DRAWS`;
    ``physical``; labels follow each draw), next to the clean images under the transformations alone
    (``baseline``), all under the same draws."""
    from advrobust.evaluation.physical import metrics_under
    from advrobust.evaluation.suites import build_suite

    started = time.perf_counter()
    classes: list[str] = []
    if y is None:
        if not (hasattr(x, "x") and hasattr(x, "y")):
            raise InputError("pass labels y with the images x, or a scene data set (advrobust.data.scenes)")
        data_name = data_name or getattr(x, "name", None)
        classes = list(getattr(x, "classes", []))
        x, y = x.x, x.y
    task = resolve_task(task, model, y)
    if not task.dense:
        raise InputError(f"evaluate_task is for segmentation and detection; use ar.evaluate for {task.name}")
    y = task.labels(y, x)
    threat = threat if threat is not None else Linf()
    eps_list = list(epsilons) if epsilons is not None else [threat.eps]
    some_eps = next((e for e in eps_list if e is not None), 1.0)
    _, members = build_suite(list(attacks), threat.with_eps(some_eps), seed)
    for m in members:
        if m.attack is None:
            raise InputError(f"{m.name} cannot run here: {m.skipped_reason}")
        if None in eps_list and m.attack.needs_budget:
            raise InputError(f"{m.name} needs an eps: the unbounded budget (None) is for DAG")
    names, built = [m.name for m in members], [m.attack for m in members]
    n = x.shape[0]
    attacked = model
    if transform is not None:
        eot, draws = PHYSICAL_EOT if eot is None else eot, PHYSICAL_DRAWS if draws is None else draws
        if isinstance(draws, bool) or int(draws) != draws or draws < 1:
            raise InputError(f"draws is the number of fresh transformations each image is judged under, got {draws!r}")
        draws = int(draws)
        attacked = TransformedModel(model, transform, draws=eot, seed=seed, task=task)
    clean_out = outputs(model, x)
    result = TaskEvaluation(
        task=task.name, model_name=model_name or type(model).__name__, model_fingerprint=fingerprint(model),
        data_name=data_name or "tensors", n_points=n, threat=threat.name, epsilons=eps_list, attacks=names,
        clean=metrics_of_outputs(clean_out, y, task), metrics={}, norms={}, extras={}, classes=classes,
        intervals={"clean": _interval(clean_out, y, task)},
    )
    if transform is not None:
        result.transform, result.eot, result.draws = transform.describe(), attacked.draws, draws
        result.baseline = metrics_under(model, x, y, task, transform, draws, seed)
    linf, l2 = threat_from_name("linf"), threat_from_name("l2")
    with progress.task(f"{task.name}: {', '.join(names)}", total=len(eps_list) * len(built)) as bar:
        for eps in eps_list:
            key = TaskEvaluation.key(eps)
            worst_x, worst_damage = x.clone(), torch.full((n,), -1.0)
            result.metrics[key], result.norms[key], result.extras[key], result.intervals[key] = {}, {}, {}, {}
            for name, attack in zip(names, built, strict=True):
                attack = attack.with_threat(threat.with_eps(eps))
                parts = [attack(attacked, x[i : i + batch_size], y[i : i + batch_size], task=task, runtime=runtime)
                         for i in range(0, n, batch_size)]
                x_adv = torch.cat([p.x_adv for p in parts])
                if transform is not None:
                    result.physical.setdefault(key, {})[name] = metrics_under(model, x_adv, y, task, transform,
                                                                              draws, seed)
                z = outputs(model, x_adv)
                result.metrics[key][name] = metrics_of_outputs(z, y, task)
                result.intervals[key][name] = _interval(z, y, task)
                r = x_adv - x
                result.norms[key][name] = {"median_linf": float(linf.norm(r).median()),
                                           "median_l2": float(l2.norm(r).median())}
                result.extras[key][name] = {k: float(torch.cat([p.extras[k] for p in parts]).float().mean())
                                            for k in parts[0].extras}
                damage = _damage(z, y, task).cpu()
                better = damage > worst_damage
                worst_damage[better] = damage[better]
                better = better.to(x.device)
                worst_x[better] = x_adv[better]
                if len(result.examples) < n_examples * len(eps_list):
                    _keep_examples(result, task, eps, name, x, x_adv, clean_out, z, y, n_examples)
                bar.advance(1)
            z_worst = outputs(model, worst_x)
            result.metrics[key]["worst"] = metrics_of_outputs(z_worst, y, task)
            result.intervals[key]["worst"] = _interval(z_worst, y, task)
    result.seconds = time.perf_counter() - started
    result.timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if store is not None:
        from advrobust.evaluation.store import ResultStore

        (store if isinstance(store, ResultStore) else ResultStore(store)).add_task(result)
    return result


def _keep_examples(
    result: TaskEvaluation, task: Task, eps: float | None, name: str, x: Tensor, x_adv: Tensor, clean: Tensor,
    z: Tensor, y: Tensor, k: int,
) -> None:
    """The first ``k`` images, once per eps (under the first attack run at that eps)."""
    if any(e.eps == eps for e in result.examples):
        return
    k = min(k, x.shape[0])
    before, after = drawn_outputs(clean[:k], task), drawn_outputs(z[:k], task)
    for i in range(k):
        result.examples.append(TaskExample(eps, name, x[i].cpu(), x_adv[i].cpu(), before[i], after[i], y[i].cpu()))
