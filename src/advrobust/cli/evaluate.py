"""``advrobust evaluate``: attack a model, print clean and robust accuracy, record the result.

    advrobust evaluate                                  # default model, mnist-5k, l∞ 0.3, standard
    advrobust evaluate --model net.safetensors --eps 0.1,0.2,0.3 --n 500
    advrobust evaluate --defence bit-depth:2 --bpda      # a non-differentiable defence, through BPDA
    advrobust evaluate --defence noise:0.3               # a randomized one: the rand suite, EOT 20
    advrobust evaluate --transform printed-digit         # as a camera sees the digits: EOT, verdicts over draws
    advrobust evaluate --task detection --transform printed-digit:0.5   # EOT through poses, judged under them
    torchrun --nproc_per_node 2 -m advrobust evaluate --points 500   # sharded across 2 processes

Interrupted (Ctrl-C, kill -9), the same command resumes from its run directory (in the cache,
or ``--run-dir``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import click
from rich.console import Group
from rich.table import Table
from rich.text import Text

from advrobust.attacks.registry import Entry, parse_entry
from advrobust.cli.common import (
    defence_options,
    defend_model,
    load_model,
    load_points,
    model_options,
    parse_eps,
    parse_scene,
    pct,
    pct_ci,
    progress_for,
)
from advrobust.cli.console import console, err_console
from advrobust.errors import InputError
from advrobust.evaluation.tasks import PHYSICAL_DRAWS, PHYSICAL_EOT

#: the default budget per norm for 28×28 digits: l∞ 0.3 (Madry et al. 2018), l2 2 and l1 10 (the MNIST
#: budgets of Croce & Hein 2020/2021), l0 20 pixels. One budget: a strong suite at a small eps runs its
#: full budget on almost every point; ask for a sweep with ``--eps 0.1,0.2,0.3``.
DEFAULT_EPS: dict[str, list[float]] = {"linf": [0.3], "l2": [2.0], "l1": [10.0], "l0": [20]}



# --- the command ---------------------------------------------------------------------------------
def results_table(result: Any) -> Group:
    """Robust accuracy per eps: after each attack (cumulative), and of the ensemble with its CI.

    The heading is printed as its own lines, not as the table's title, which rich would wrap to
    the width of the (narrow) table.
    """
    heading = Text(
        f"{result.model_name} on {result.data_name} ({result.n_points} points), {result.threat}, {result.suite}\n"
        f"clean accuracy {pct_ci(result.clean_accuracy, result.clean_accuracy_ci)}; "
        "robust accuracy after each attack, and of the ensemble:"
    )
    table = Table()
    table.add_column("eps", justify="right", no_wrap=True)
    for name in result.attacks:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("robust [95% CI]", justify="right", style="bold", no_wrap=True)
    certified = result.certified_accuracy  # a smoothed classifier: its certified lower bound too
    if certified is not None:
        table.add_column("certified (lower bound)", justify="right", style="bold", no_wrap=True)
    ci = result.robust_accuracy_ci
    for eps, acc in result.robust_accuracy.items():
        by_attack = {r.attack: r for r in result.records_for(eps)}
        cells = [
            "skipped" if by_attack[name].skipped_reason else pct(by_attack[name].robust_accuracy)
            for name in result.attacks
        ]
        table.add_row(f"{eps:g}", *cells, pct_ci(acc, ci[eps]), *([pct(certified[eps])] if certified else []))
    from advrobust.evaluation.suites import suite_caveat

    notes = []
    if result.randomized:
        notes.append(Text(
            f"Randomized model (its outputs change between calls): attacks average gradients over draws (EOT); "
            f"a point counts as misclassified when the model is {result.verdict_rule}.", style="bold yellow"))
    caveat = suite_caveat(result.suite)
    if caveat:
        notes.append(Text(f"Not a robustness claim: {caveat}.", style="bold yellow"))
    return Group(heading, table, *notes)


def _run_dir_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@click.command("evaluate")
@model_options()
@click.option("--norm", default="linf", show_default=True, type=click.Choice(["linf", "l2", "l1", "l0"]))
@click.option("--eps", "eps_values", multiple=True, metavar="EPS[,EPS...]",
              help="Budgets (repeat or comma-separate) [default: linf 0.3, l2 2, l1 10, l0 20; with --task: "
                   "linf 0.02, 0.05, 0.1, and `none`, unbounded, for DAG].")
@click.option("--suite", default="standard", show_default=True,
              help="standard (APGD-CE x5, APGD-T, FMN, Square), plus, seed, or quick (FGSM+PGD: a smoke "
                   "test only, it overstates robustness).")
@click.option("--attack", "attack_names", multiple=True, metavar="NAME[:OPTION=VALUE,...]",
              help="Run these attacks instead of a suite (repeatable; see `advrobust attacks`), with options "
                   "that replace their defaults: pgd:steps=100,restarts=5; dag:gamma=4,targets=0 (a name given "
                   "twice shows as NAME#2).")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Save the result as JSON.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep per-point results here (resume with the same command) [default: a folder in "
                   "the cache, removed when the evaluation completes].")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the HTML report here.")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path),
              help="Results store [default: results.sqlite in the advrobust cache].")
@click.option("--no-store", is_flag=True, help="Do not record the result in the results store.")
@click.option("--plain-forward", is_flag=True,
              help="Run the model as it is: no channels-last fast path, no frozen copies (slower; results "
                   "are confirmed on the plain model either way).")
@click.option("--task", default="classification", show_default=True,
              type=click.Choice(["classification", "segmentation", "detection"]),
              help="What the model does: segmentation/detection report mIoU/mAP under DAG and PGD "
                   "(default model and data: the built-in segmenter/detector on mnist-seg/mnist-det).")
@click.option("--transform", "transform_spec", metavar="NAME[:STRENGTH]",
              help="Evaluate the model as a camera sees it, through physical or printed-digit transformations at "
                   "STRENGTH × their ranges (e.g. printed-digit:0.5). A classifier becomes a randomized model (the "
                   "rand suite: EOT, verdicts over draws); with --task, attacks run through them (EOT over --eot "
                   f"draws per pass, default {PHYSICAL_EOT}) and are judged digitally and under --draws fresh ones.")
@click.option("--draws", type=int,
              help="With --task and --transform: the fresh transformations each image is judged under "
                   f"[default: {PHYSICAL_DRAWS}].")
@defence_options()
def command(
    model_spec: str | None, weights: str | None, data_name: str, root: str | None, split: str,
    n_points: int | None, seed: int, norm: str, eps_values: tuple[str, ...], suite: str,
    attack_names: tuple[str, ...], batch_size: int, json_path: Path | None, run_dir: Path | None,
    report_path: Path | None, db: Path | None, no_store: bool, plain_forward: bool, task: str,
    transform_spec: str | None, draws: int | None, defence: str | None, bpda: bool, eot: int | None,
) -> None:
    """Attack a model with an ensemble of attacks at several budgets; print clean accuracy and robust
    accuracy (worst case per point, with 95% Wilson intervals) and record the result. With --task
    segmentation or detection: the task's metrics clean and under each attack at each eps."""
    import advrobust as ar
    from advrobust.distributed import join, rank_and_world
    from advrobust.evaluation.rundir import RunDirMismatch
    from advrobust.evaluation.store import ResultStore
    from advrobust.paths import cache_dir
    from advrobust.runtime import RuntimePolicy
    from advrobust.threat import threat_from_name

    if task != "classification":
        from advrobust.cli import tasks

        if defence is not None or bpda:
            raise InputError("--defence and --bpda put a defence in front of a classifier; with --task, attack the "
                             "segmenter or detector as it is (a checkpoint with --model)")
        if (eot is not None or draws is not None) and transform_spec is None:
            raise InputError("--eot and --draws with --task count draws of --transform: name the transformations too "
                             "(e.g. --transform printed-digit)")
        physical = None if transform_spec is None else {"transform": parse_scene(transform_spec), "eot": eot,
                                                        "draws": draws}
        tasks.run(task, model_spec, data_name, root, split, n_points, seed, norm,
                  parse_eps(eps_values, unbounded=True), [parse_entry(a) for a in attack_names],
                  min(batch_size, 64), json_path, report_path, None if no_store else ResultStore(db),
                  progress_for(0), RuntimePolicy(fast=not plain_forward), physical)
        return
    if draws is not None:
        raise InputError("--draws counts the draws a segmenter's or detector's attacks are judged under (--task); a "
                         "classifier under --transform is judged by its majority over draws")
    scene = None if transform_spec is None else parse_scene(transform_spec)

    join()
    rank, _ = rank_and_world()
    progress = progress_for(rank)
    epsilons = parse_eps(eps_values) or DEFAULT_EPS[norm]
    chosen: str | list[Entry] = [parse_entry(a) for a in attack_names] if attack_names else suite
    model, model_name, classes = load_model(model_spec, weights, progress)
    model, model_name = defend_model(model, model_name, defence, bpda)
    if scene is not None:  # the model as a camera sees it: a randomized model, one fresh draw per pass
        model_name = f"{model_name} under {transform_spec}"
    data = load_points(data_name, root, split, n_points, seed)
    store = None if no_store else ResultStore(db)
    own_run_dir = run_dir is None
    if own_run_dir:
        key = _run_dir_key({"model": ar.models.fingerprint(model), "data": [data.name, root, split, n_points],
                            "norm": norm, "eps": epsilons, "attacks": chosen, "seed": seed, "batch": batch_size,
                            "defence": [defence, bpda], "eot": eot, "transform": transform_spec,
                            "version": ar.__version__})
        run_dir = cache_dir() / "runs" / key
    settings = {"threat": threat_from_name(norm), "epsilons": epsilons, "suite": chosen, "batch_size": batch_size,
                "store": store, "progress": progress, "classes": classes, "model_name": model_name,
                "data_name": data.name, "seed": seed, "runtime": RuntimePolicy(fast=not plain_forward), "eot": eot,
                "transform": scene}
    try:
        result = ar.evaluate(model, data, run_dir=run_dir, **settings)
    except RunDirMismatch:
        if not own_run_dir:
            raise
        shutil.rmtree(run_dir, ignore_errors=True)  # our own folder, from another version: start over
        result = ar.evaluate(model, data, run_dir=run_dir, **settings)
    if rank != 0:
        return
    if own_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    console.print(results_table(result))
    for record in result.per_attack:
        if record.skipped_reason and record.eps == result.epsilons[0]:
            err_console.print(f"note: {record.attack} skipped: {record.skipped_reason}")
    console.print(f"{result.seconds:.1f} s" + (f"; recorded in {store.path}" if store else ""))
    if json_path is not None:
        result.save(json_path)
        console.print(f"result saved to {json_path}")
    if report_path is not None:
        try:
            from advrobust.report import write_report
        except ImportError:
            raise InputError("the report module is not available in this installation") from None
        console.print(f"report written to {write_report(report_path, result)}")
