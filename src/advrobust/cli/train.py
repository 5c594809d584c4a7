"""``advrobust train``: train a model (standard or adversarial) by its method's recipe, check it, save it.

    advrobust train                                       # mnist-cnn on mnist-5k, standard
    advrobust train --method pgd-at --eps 0.3             # the pgd-at recipe; robust validation, then
                                                          # the `standard` suite on 200 test points
    advrobust train --method pgd-at --help                # the recipe that will run (flags change it)
    torchrun --nproc_per_node 2 -m advrobust train ...    # data parallel; same hyper-parameters

The resumable state goes to ``--checkpoint-dir`` (default: beside ``--out``); running the same
command again after an interruption continues from the last complete epoch. A run that fails
(:mod:`advrobust.training.collapse`) saves nothing at ``--out`` and exits with status 1.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from advrobust.cli.console import RichProgress, console
from advrobust.errors import AdvrobustError, InputError
from advrobust.progress import SILENT
from advrobust.training.config import AUTO_VAL_STEPS
from advrobust.training.methods import method_names, method_options
from advrobust.training.recipes import MEASURED, METHOD_SETTINGS, Recipe, recipe_for

# CLI option -> keyword of the method's constructor, beside the recipe's own method settings
THREAT_OPTIONS = {"eps": "eps", "norm": "norm", "inner_attack": "attack", "sigma": "sigma"}
RECIPE_OPTIONS = tuple(f.name for f in fields(Recipe) if f.name != "source")
#: test points the `standard` suite attacks at the end of adversarial training
VERIFY_POINTS = 200
#: a training PGD figure this far above the `standard` suite's is flagged (gradient masking)
GAP_WARNING = 0.10


class TrainingFailed(AdvrobustError):
    """A training run that collapsed: nothing is saved as a trained model."""


@dataclass
class Plan:
    """What a command line will run: the recipe, the method built from it, the validation attack."""

    recipe: Recipe
    method: Any
    val_attack: Any
    val_eps: float | None

    def rows(self, val_points: int) -> list[tuple[str, str]]:
        """The recipe as (flag, value) rows, read back from the objects the run uses."""
        described = self.method.describe()
        attack = described.get("attack") or {}
        outer = ["epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "shift"]
        if self.recipe.optimizer != "sgd":
            outer.remove("momentum")  # Adam has none
        rows = [(name.replace("_", "-"), _fmt(getattr(self.recipe, name))) for name in outer]
        if "eps" in described:
            start = f" from the {attack['start']}" if "start" in attack else ""  # FGSM-EP's epoch prior
            rows += [("eps", _fmt(described["eps"])), ("norm", described["norm"]),
                     ("warmup", _fmt(described["warmup"])), ("inner-attack", attack.get("name", "—") + start)]
            if "steps" in attack:
                rows.append(("steps", _fmt(attack["steps"])))
            rows.append(("step-size", _fmt(attack["alpha"]) if "alpha" in attack else "—"))
            if "beta" in described:
                rows.append(("beta", _fmt(described["beta"])))
        if self.val_attack == "auto":
            validation = f"pgd, {AUTO_VAL_STEPS} steps, at eps {_fmt(described['eps'])}"
        else:
            validation = "—" if self.val_attack is None else f"{self.val_attack.name} at eps {_fmt(self.val_eps)}"
        rows += [("val-attack", validation), ("val-points", str(val_points) if validation != "—" else "—")]
        return rows


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


@click.command(name="train", add_help_option=False)
@click.option("--data", "data_name", default="mnist-5k", show_default=True, help="data set name (advrobust data list)")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="where the data set's files are")
@click.option("--arch", default="mnist-cnn", show_default=True, help="architecture (advrobust models list)")
@click.option("--width", type=int, default=None, help="channel width of the architecture (its default if not set)")
@click.option("--method", default="standard", show_default=True, type=click.Choice(method_names()),
              help="training method; its recipe is shown by --method M --help")
@click.option("--eps", type=float, default=None, help="training budget of an adversarial method [default: 0.3]")
@click.option("--norm", type=click.Choice(["linf", "l2", "l1"]), default=None, help="norm of the training threat")
@click.option("--steps", type=int, default=None, help="inner attack steps (pgd-at, trades) [recipe]")
@click.option("--step-size", "--alpha", "step_size", type=float, default=None,
              help="inner attack step size α [recipe: the method's rule]")
@click.option("--beta", type=float, default=None, help="weight of the robustness term: TRADES' β, FGSM-EP's λ [recipe]")
@click.option("--sigma", type=float, default=None, help="noise std of gaussian-noise (randomized smoothing)")
@click.option("--warmup", type=float, default=None, help="fraction of training over which eps ramps up from 0 [recipe]")
@click.option("--inner-attack", default=None, help="attack for the inner maximization (pgd-at), e.g. apgd-ce")
@click.option("--epochs", type=int, default=None, help="[recipe]")
@click.option("--batch-size", type=int, default=None, help="global batch size, the same at any number of processes "
              "[recipe]")
@click.option("--lr", type=float, default=None, help="peak learning rate [recipe]")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default=None, help="[recipe]")
@click.option("--momentum", type=float, default=None, help="SGD momentum [recipe]")
@click.option("--schedule", type=click.Choice(["cosine", "onecycle", "cyclic", "constant"]), default=None,
              help="learning-rate schedule [recipe]")
@click.option("--weight-decay", type=float, default=None, help="[recipe]")
@click.option("--shift", type=int, default=None,
              help="data augmentation: translate each training image by up to N pixels, zero-filled [recipe]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="train on a stratified subset of N points")
@click.option("--val-attack", default="auto", show_default=True,
              help="attack for robust validation accuracy each epoch: auto (PGD-10 at the training eps for "
                   "adversarial methods), none, or an attack name")
@click.option("--val-eps", type=float, default=None, help="budget of a named --val-attack (default: --eps)")
@click.option("--val-points", type=int, default=200, show_default=True, help="validation points attacked per epoch")
@click.option("--patience", type=int, default=None,
              help="early stopping: stop after N epochs without a better validation metric; keep the best weights")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="after adversarial training, evaluate the saved model with the `standard` suite")
@click.option("--verify-points", type=int, default=VERIFY_POINTS, show_default=True,
              help="test points of that evaluation")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="results store of that evaluation [default: results.sqlite in the advrobust cache]")
@click.option("--no-store", is_flag=True, help="do not record that evaluation in the results store")
@click.option("--amp/--no-amp", default=False, show_default=True, help="mixed precision (fp16 on CUDA, bf16 on CPU)")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="checkpoint to write [default: ARCH-DATA-METHOD.safetensors]")
@click.option("--checkpoint-dir", type=click.Path(path_type=Path), default=None,
              help="resumable state, saved every epoch [default: OUT with .state]")
@click.option("--resume/--no-resume", default=True, show_default=True, help="continue an interrupted run")
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=None,
              help="per-epoch log: .csv, else JSON lines")
@click.option("-h", "--help", "show_help", is_flag=True, help="show this message and the recipe of --method, then exit")
@click.pass_context
def command(ctx: click.Context, **opts: Any) -> None:
    """Train a model (standard or adversarial) by its method's recipe and save a checkpoint.

    Each method has a default recipe (optimizer, peak learning rate, schedule, eps warm-up, inner
    attack, epochs); options marked [recipe] override a part of it. Validation metrics are measured
    on the data set's test split. After adversarial training the saved model is evaluated with the
    `standard` suite on --verify-points test points. A collapsed run exits with status 1.
    """
    plan = _plan(opts)
    if opts["show_help"]:
        click.echo(ctx.get_help())
        click.echo("")
        click.echo(_recipe_text(opts["method"], plan, opts["val_points"]))
        return
    _train(opts, plan)


def _plan(opts: dict[str, Any]) -> Plan:
    """The recipe of ``--method`` with the flags given on top, and the method and validation attack
    built from it: what the run uses and what ``--help`` shows."""
    from advrobust import training

    recipe = recipe_for(opts["method"]).replace(**{k: opts[k] for k in RECIPE_OPTIONS})
    accepted = set(method_options(opts["method"]))
    kwargs = {k: v for k, v in recipe.method_options().items() if k in accepted}
    for option in (*METHOD_SETTINGS, *THREAT_OPTIONS):
        keyword = THREAT_OPTIONS.get(option, option)
        if opts[option] is None:
            continue
        if keyword not in accepted:
            takes = sorted(accepted & {*METHOD_SETTINGS, *THREAT_OPTIONS.values()})
            raise click.UsageError(
                f"--{option.replace('_', '-')} does not apply to --method {opts['method']} "
                f"(it takes: {', '.join(takes) or 'no options'})"
            )
        kwargs[keyword] = opts[option]
    method = training.create_method(opts["method"], **kwargs)
    val_attack, val_eps = _val_attack(opts, method.describe())
    return Plan(recipe, method, val_attack, val_eps)


def _recipe_text(name: str, plan: Plan, val_points: int) -> str:
    rows = plan.rows(val_points)
    width = max(len(flag) for flag, _ in rows) + 2
    lines = [f"Recipe of --method {name} (the options above change any part of it):"]
    lines += [f"  {flag:<{width}}{value}" for flag, value in rows]
    lines.append(f"  source: {plan.recipe.source}")
    if name in MEASURED:
        lines.append(f"  measured: {MEASURED[name]}")
    return "\n".join(lines)


def _train(opts: dict[str, Any], plan: Plan) -> None:
    from advrobust import training
    from advrobust.data import load
    from advrobust.distributed import leave, rank
    from advrobust.models import create

    main = rank() == 0
    progress = RichProgress() if main else SILENT
    train = load(opts["data_name"], root=opts["root"], split="train")
    val = load(opts["data_name"], root=opts["root"], split="test")
    if opts["limit"] is not None:
        if opts["limit"] < 1:
            raise InputError(f"--limit must be at least 1, got {opts['limit']}")
        train = train.subset(min(opts["limit"], len(train)), seed=opts["seed"])
    arch_kwargs = {"width": opts["width"]} if opts["width"] is not None else {}
    model = create(opts["arch"], train.num_classes, train.input_shape, seed=opts["seed"], **arch_kwargs)
    early = None
    if opts["patience"] is not None:
        metric = "val_acc" if plan.val_attack is None else "val_robust_acc"
        early = training.EarlyStopping(metric, patience=opts["patience"])
    method = plan.method
    out = opts["out"] or Path(f"{opts['arch']}-{train.name}-{method.name}.safetensors")
    checkpoint_dir = opts["checkpoint_dir"] or out.with_suffix(".state")
    config = training.FitConfig.from_recipe(
        plan.recipe, seed=opts["seed"], device=opts["device"], amp=opts["amp"], checkpoint_dir=checkpoint_dir,
        resume=opts["resume"], val_attack=plan.val_attack, val_points=opts["val_points"], early_stopping=early,
        progress=progress, log_path=opts["log_path"],
    )
    if main:
        console.print(f"recipe: {_one_line(plan, opts['val_points'])} (advrobust train --method {method.name} --help)",
                      soft_wrap=True)
    history = training.fit(model, train, val, config, method=method)
    leave()  # every rank is done training; only rank 0 measures, prints and writes from here
    if not main:
        return
    console.print(_history_table(history))
    if history.failed:
        raise TrainingFailed(
            f"training failed: {history.stop_reason}. Nothing saved to {out}; the last state is in "
            f"{checkpoint_dir} (change the settings and pass --no-resume to start over)"
        )
    meta = _metadata(opts, train, arch_kwargs, history, model, val)
    _save(out, model, meta)
    if history.stop_reason:
        console.print(f"stopped early: {history.stop_reason}")
    console.print(f"clean accuracy {meta['clean_accuracy']:.2%} on {len(val)} test points")
    console.print(f"saved {out}", soft_wrap=True)
    described = method.describe()
    if opts["verify"] and "eps" in described:
        meta["verification"] = _verify(model, val, described, opts, out.stem, train.name)
        _report_verification(meta)
        _save(out, model, meta)
    console.print(f"next: advrobust evaluate --model {out}", soft_wrap=True)


def _one_line(plan: Plan, val_points: int) -> str:
    shown = dict(plan.rows(val_points))
    text = (f"{shown['optimizer']} lr {shown['lr']} {shown['schedule']}, {shown['epochs']} epochs of "
            f"batch {shown['batch-size']}")
    if shown["shift"] != "0":
        text += f", shifted by up to {shown['shift']} px"
    if "eps" in shown:
        text += (f"; eps {shown['eps']} ({shown['norm']}) warm-up {shown['warmup']}, inner {shown['inner-attack']}"
                 + (f" {shown['steps']}×{shown['step-size']}" if "steps" in shown else f" step {shown['step-size']}"))
    return text


def _metadata(
    opts: dict[str, Any], train: Any, arch_kwargs: dict[str, Any], history: Any, model: Any, val: Any
) -> dict[str, Any]:
    from advrobust import training

    config = history.config
    meta: dict[str, Any] = {
        "arch": opts["arch"],
        "arch_kwargs": arch_kwargs,
        "num_classes": train.num_classes,
        "input_shape": list(train.input_shape),
        "data": train.name,
        "classes": list(train.classes),
        "clean_accuracy": training.accuracy(model.cpu(), val),
        "training": {
            **config["method"], **{k: config[k] for k in ("epochs", "batch_size", "optimizer", "lr", "momentum",
                                                            "weight_decay", "schedule", "shift", "seed")},
            "limit": opts["limit"], "epochs_run": len(history), "best_epoch": history.best_epoch,
            "status": history.status, "stop_reason": history.stop_reason,
        },
    }
    if config.get("val_attack") is not None and history.final_epoch is not None:
        final = history.records[history.final_epoch - 1]
        attack = config["val_attack"]
        meta["robust_accuracy"] = {"attack": attack["name"], "steps": attack.get("steps"), "eps": attack["eps"],
                                   "norm": attack["norm"], "points": config["val_points"],
                                   "accuracy": final.val_robust_acc, "epoch": final.epoch}
    return meta


def _save(out: Path, model: Any, meta: dict[str, Any]) -> None:
    from advrobust.models import save_checkpoint

    save_checkpoint(out, model, meta)


def _verify(
    model: Any, test: Any, described: dict[str, Any], opts: dict[str, Any], model_name: str, data_name: str
) -> dict[str, Any]:
    """The `standard` suite (:mod:`advrobust.evaluation.suites`) on a stratified subset of the test
    split (the points ``advrobust evaluate --n N --seed SEED`` takes), recorded in the results store."""
    import advrobust as ar
    from advrobust.evaluation.store import ResultStore
    from advrobust.threat import threat_from_name

    n = opts["verify_points"]
    if n < 1:
        raise InputError(f"--verify-points must be at least 1, got {n}")
    points = test.subset(n, seed=opts["seed"]) if n < len(test) else test
    threat = threat_from_name(described["norm"], described["eps"])
    store = None if opts["no_store"] else ResultStore(opts["db"])
    result = ar.evaluate(model.cpu().eval(), points, threat=threat, suite="standard", store=store,
                         progress=RichProgress(), model_name=model_name, data_name=data_name, seed=opts["seed"])
    eps = result.epsilons[0]
    return {
        "suite": "standard", "norm": threat.name, "eps": eps, "points": len(points.y), "seed": opts["seed"],
        "clean_accuracy": result.clean_accuracy, "robust_accuracy": result.robust_accuracy[eps],
        "robust_accuracy_ci": list(result.robust_accuracy_ci[eps]), "seconds": result.seconds,
        "store": str(store.path) if store is not None else None,
    }


def _report_verification(meta: dict[str, Any]) -> None:
    v = meta["verification"]
    low, high = v["robust_accuracy_ci"]
    line = (f"verified with the `standard` suite ({v['norm']} eps {v['eps']:g}, {v['points']} test points): "
            f"clean {v['clean_accuracy']:.1%}, robust {v['robust_accuracy']:.1%} (95% CI {low:.1%}–{high:.1%})")
    own = meta.get("robust_accuracy")
    if own and own["accuracy"] is not None:
        attack = own["attack"] + (f"-{own['steps']}" if own.get("steps") else "")
        line += f"; the training's own {attack} validation ({own['points']} points): {own['accuracy']:.1%}"
    console.print(line, soft_wrap=True)
    if own and own["accuracy"] is not None and own["accuracy"] - v["robust_accuracy"] > GAP_WARNING:
        console.print(
            f"warning: the training's validation figure is {own['accuracy'] - v['robust_accuracy']:.1%} above the "
            "`standard` suite's: gradient masking or catastrophic overfitting likely (advrobust audit checks)",
            soft_wrap=True,
        )
    if v["store"]:
        console.print(f"recorded in {v['store']}", soft_wrap=True)


def _val_attack(opts: dict[str, Any], described: dict[str, Any]) -> tuple[Any, float | None]:
    name = str(opts["val_attack"]).strip().lower()
    if name == "auto" and opts["val_eps"] is None:
        return ("auto", described["eps"]) if "eps" in described else (None, None)
    name = "pgd" if name == "auto" else name
    if name == "none":
        return None, None
    from advrobust.attacks import create as create_attack

    eps = opts["val_eps"] if opts["val_eps"] is not None else described.get("eps", opts["eps"])
    if eps is None:
        raise click.UsageError("--val-attack needs a budget: give --val-eps (or --eps)")
    options = {"steps": AUTO_VAL_STEPS} if name == "pgd" else {}
    return create_attack(name, norm=opts["norm"], eps=eps, **options), float(eps)


def _history_table(history: Any) -> Table:
    table = Table(title="training")
    for name in ("epoch", "loss", "train acc", "val acc", "robust acc", "lr", "seconds", "note"):
        table.add_column(name, justify="left" if name == "note" else "right")
    for r in history.records:
        mark = " *" if r.epoch == history.final_epoch and not history.failed else ""
        table.add_row(
            f"{r.epoch}{mark}", f"{r.train_loss:.4f}", f"{r.train_acc:.2%}", _pct(r.val_acc), _pct(r.val_robust_acc),
            f"{r.lr:.3g}", f"{r.seconds:.1f}", r.note or "",
        )
    table.caption = "training FAILED: see below" if history.failed else "* the epoch whose weights are saved"
    return table


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"
