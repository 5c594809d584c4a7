"""``advrobust evaluate --task segmentation|detection``: a segmenter or detector under attack.

    advrobust evaluate --task segmentation                      # built-in segmenter on mnist-seg, DAG and PGD
    advrobust evaluate --task detection --eps 0.05 --report det.html
    advrobust evaluate --task segmentation --model seg.safetensors --data masks --root my_scenes/
    advrobust evaluate --task segmentation --attack dag:gamma=4,targets=0 --eps none   # the paper's unbounded DAG
    advrobust evaluate --task segmentation --transform printed-digit --eps 0.1   # EOT, judged under 20 fresh draws

Prints the task's metrics (mIoU and pixel accuracy; mAP@0.5 and recall) clean and after each attack
at each eps, records them in the results store, and can write the HTML report with example images.
With ``--transform`` every attack runs through the transformations (EOT) and is judged under fresh
draws of them as well, next to the transformations alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from advrobust.cli.console import console
from advrobust.errors import InputError
from advrobust.progress import Progress

#: default budgets (l∞) for the built-in 64×64 scenes: from about the paper's mean perturbation
#: (Xie et al. 2017: l∞ well under 10/255) to a budget a digit's stroke survives
DEFAULT_TASK_EPS = [0.02, 0.05, 0.1]
DEFAULT_TASK_ATTACKS = ["dag", "pgd"]
BUILTIN = {"segmentation": "mnist-seg", "detection": "mnist-det"}


def load_task_model(task: str, spec: str | None, progress: Progress) -> tuple[Any, str]:
    """``--model`` for a dense task: a checkpoint, or the built-in segmenter / detector."""
    if task not in BUILTIN:
        raise InputError(f"--task must be classification, segmentation or detection, got {task!r}")
    if spec is None:
        from advrobust.training.dense import default_detector, default_segmenter

        model, meta = (default_segmenter if task == "segmentation" else default_detector)(progress)
        return model, f"{meta['arch']} (built in)"
    if not spec.endswith(".safetensors"):
        raise InputError("--task takes an advrobust checkpoint (.safetensors) or the built-in model (no --model)")
    from advrobust.models import load_checkpoint

    model, _ = load_checkpoint(spec)
    return model, Path(spec).stem


def load_task_data(task: str, name: str, root: str | None, split: str, n: int | None) -> Any:
    """``--data``: ``mnist-seg`` / ``mnist-det``, ``masks`` (``--root`` images/ + masks/) or ``coco``
    (``--root`` the JSON file); the first ``n`` images."""
    from advrobust.data.dense_files import load_coco, load_mask_folder
    from advrobust.data.scenes import SCENE_DATASETS, load_scenes

    key = BUILTIN[task] if name == "mnist-5k" else name.lower()
    if key in SCENE_DATASETS:
        data = load_scenes(key, split, n)
    elif key in ("masks", "coco"):
        if root is None:
            what = "the folder with images/ and masks/" if key == "masks" else "the COCO JSON file"
            raise InputError(f"--data {key} needs --root ({what})")
        data = load_mask_folder(root) if key == "masks" else load_coco(root)
    else:
        raise InputError(f"unknown data {name!r} for --task {task}: use {BUILTIN[task]}, masks or coco")
    if data.task != task:
        raise InputError(f"{data.name} holds {data.task} labels, not {task}")
    if n is not None:
        if n < 1:
            raise InputError(f"--n must be at least 1, got {n}")
        data = data.take(slice(0, n))
    return data


def metrics_table(result: Any) -> Table:
    """The metrics per eps and attack; a physical evaluation adds them under the transformations
    (the clean row: the transformations alone; the per-image worst case is digital only)."""
    names = list(result.clean)
    title = f"{result.model_name} on {result.data_name} ({result.n_points} images), {result.threat}"
    if result.transform:
        title += f"; attacks through the transformations (EOT {result.eot}), judged under {result.draws} fresh draws"
    table = Table(title=title)
    table.add_column("eps", justify="right")
    table.add_column("attack")
    for name in names:
        table.add_column(name, justify="right")
    for name in names if result.transform else ():
        table.add_column(f"{name} transformed", justify="right")
    table.add_column("median ‖r‖∞", justify="right")

    def cells(values: dict[str, float] | None) -> list[str]:
        return [f"{100 * values[m]:.1f}%" if values else "—" for m in names]

    transformed = cells(result.baseline) if result.transform else []
    table.add_row("clean", "—", *cells(result.clean), *transformed, "—")
    for eps, by_attack in result.metrics.items():
        for attack, values in by_attack.items():
            norm = result.norms[eps].get(attack, {}).get("median_linf")
            transformed = cells(result.physical.get(eps, {}).get(attack)) if result.transform else []
            table.add_row(eps, attack, *cells(values), *transformed, "—" if norm is None else f"{norm:.4f}")
    return table


def run(
    task: str, model_spec: str | None, data_name: str, root: str | None, split: str, n_points: int | None,
    seed: int, norm: str, epsilons: list[float | None] | None, attacks: list[Any], batch_size: int,
    json_path: Path | None, report_path: Path | None, store: Any, progress: Progress, runtime: Any = None,
    physical: dict[str, Any] | None = None,
) -> None:
    """The ``evaluate --task`` command (after its options are parsed; ``attacks``: registry entries,
    ``epsilons``: ``None`` in the list for no budget; ``physical``: ``transform``, ``eot`` and
    ``draws`` for :func:`~advrobust.evaluation.tasks.evaluate_task`)."""
    from advrobust.evaluation.tasks import evaluate_task
    from advrobust.threat import threat_from_name

    model, model_name = load_task_model(task, model_spec, progress)
    data = load_task_data(task, data_name, root, split, n_points)
    result = evaluate_task(
        model, data, task=task, attacks=attacks or DEFAULT_TASK_ATTACKS, threat=threat_from_name(norm),
        epsilons=epsilons or DEFAULT_TASK_EPS, batch_size=batch_size, store=store, progress=progress,
        model_name=model_name, seed=seed, runtime=runtime,
        **(physical or {}),
    )
    console.print(metrics_table(result))
    if result.transform:
        console.print(f"transformations: {result.transform}", highlight=False)
    console.print(f"{result.seconds:.1f} s" + (f"; recorded in {store.path}" if store else ""))
    if json_path is not None:
        console.print(f"result saved to {result.save(json_path)}")
    if report_path is not None:
        from advrobust.report.tasks import write_task_report

        console.print(f"report written to {write_task_report(report_path, result)}")
