"""``advrobust train``: train a model (standard or adversarial) and save a checkpoint with metadata.

    advrobust train                                            # mnist-cnn on mnist-5k, standard
    advrobust train --method pgd-at --eps 0.3 --val-attack pgd --out robust.safetensors
    torchrun --nproc_per_node 2 -m advrobust train ...         # data parallel; same hyper-parameters

The resumable state goes to ``--checkpoint-dir`` (default: beside ``--out``); running the same
command again after an interruption continues from the last complete epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from advrobust.cli.console import RichProgress, console
from advrobust.errors import InputError
from advrobust.progress import SILENT
from advrobust.training.methods import method_names, method_options

# CLI option -> keyword of the method's constructor (given only when set; refused if not accepted)
METHOD_OPTIONS = {"eps": "eps", "norm": "norm", "steps": "steps", "step_size": "step_size",
                  "beta": "beta", "warmup": "warmup", "inner_attack": "attack"}
# Hyper-parameter defaults of the CLI: the default model's recipe (advrobust.training.pretrained)
DEFAULTS = {"epochs": 10, "batch_size": 64, "lr": 0.05}


@click.command(name="train")
@click.option("--data", "data_name", default="mnist-5k", show_default=True, help="data set name (advrobust data list)")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="where the data set's files are")
@click.option("--arch", default="mnist-cnn", show_default=True, help="architecture (advrobust models list)")
@click.option("--width", type=int, default=None, help="channel width of the architecture (its default if not set)")
@click.option("--method", default="standard", show_default=True, type=click.Choice(method_names()),
              help="training method")
@click.option("--eps", type=float, default=None, help="training budget of an adversarial method")
@click.option("--norm", type=click.Choice(["linf", "l2", "l1"]), default=None, help="norm of the training threat")
@click.option("--steps", type=int, default=None, help="inner attack steps (pgd-at, trades)")
@click.option("--step-size", "--alpha", "step_size", type=float, default=None, help="inner attack step size α")
@click.option("--beta", type=float, default=None, help="TRADES trade-off β")
@click.option("--warmup", type=float, default=None, help="fraction of training over which eps ramps up from 0")
@click.option("--inner-attack", default=None, help="attack for the inner maximization (pgd-at), e.g. apgd-ce")
@click.option("--epochs", type=int, default=DEFAULTS["epochs"], show_default=True)
@click.option("--batch-size", type=int, default=DEFAULTS["batch_size"], show_default=True,
              help="global batch size (the same at any number of processes)")
@click.option("--lr", type=float, default=DEFAULTS["lr"], show_default=True, help="peak learning rate")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option("--schedule", type=click.Choice(["cosine", "onecycle", "cyclic", "constant"]), default="cosine",
              show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="train on a stratified subset of N points")
@click.option("--val-attack", default=None, help="attack for robust validation accuracy each epoch, e.g. pgd")
@click.option("--val-eps", type=float, default=None, help="budget of --val-attack (default: --eps)")
@click.option("--val-points", type=int, default=500, show_default=True, help="validation points attacked per epoch")
@click.option("--patience", type=int, default=None,
              help="early stopping: stop after N epochs without a better validation metric; keep the best weights")
@click.option("--amp/--no-amp", default=False, show_default=True, help="mixed precision (fp16 on CUDA, bf16 on CPU)")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="checkpoint to write [default: ARCH-DATA-METHOD.safetensors]")
@click.option("--checkpoint-dir", type=click.Path(path_type=Path), default=None,
              help="resumable state, saved every epoch [default: OUT with .state]")
@click.option("--resume/--no-resume", default=True, show_default=True, help="continue an interrupted run")
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=None,
              help="per-epoch log: .csv, else JSON lines")
def command(**opts: Any) -> None:
    """Train a model (standard or adversarial) and save a checkpoint.

    Validation metrics are measured on the data set's test split.
    """
    from advrobust import training
    from advrobust.data import load
    from advrobust.distributed import leave, rank
    from advrobust.models import create, save_checkpoint

    method = training.create_method(opts["method"], **_method_kwargs(opts))
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
    val_attack, val_eps = _val_attack(opts, method.describe())
    early = None
    if opts["patience"] is not None:
        early = training.EarlyStopping("val_robust_acc" if val_attack else "val_acc", patience=opts["patience"])
    out = opts["out"] or Path(f"{opts['arch']}-{train.name}-{method.name}.safetensors")
    checkpoint_dir = opts["checkpoint_dir"] or out.with_suffix(".state")
    history = training.fit(
        model, train, val, method=method, epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"],
        optimizer=opts["optimizer"], weight_decay=opts["weight_decay"], schedule=opts["schedule"], seed=opts["seed"],
        device=opts["device"], amp=opts["amp"], checkpoint_dir=checkpoint_dir, resume=opts["resume"],
        val_attack=val_attack, val_points=opts["val_points"], early_stopping=early, progress=progress,
        log_path=opts["log_path"],
    )
    leave()  # every rank is done training; only rank 0 measures, prints and writes from here
    if not main:
        return
    console.print(_history_table(history))
    meta = {
        "arch": opts["arch"],
        "arch_kwargs": arch_kwargs,
        "num_classes": train.num_classes,
        "input_shape": list(train.input_shape),
        "data": train.name,
        "classes": list(train.classes),
        "clean_accuracy": training.accuracy(model.cpu(), val),
        "training": {
            **method.describe(), **{k: opts[k] for k in ("epochs", "batch_size", "lr", "optimizer", "schedule",
                                                          "weight_decay", "seed", "limit")},
            "epochs_run": len(history), "best_epoch": history.best_epoch, "stop_reason": history.stop_reason,
        },
    }
    if val_attack is not None and history.final_epoch is not None:
        final = history.records[history.final_epoch - 1]
        meta["robust_accuracy"] = {"attack": opts["val_attack"], "eps": val_eps, "points": opts["val_points"],
                                   "accuracy": final.val_robust_acc, "epoch": final.epoch}
    save_checkpoint(out, model, meta)
    if history.stop_reason:
        console.print(f"stopped early: {history.stop_reason}")
    console.print(f"clean accuracy {meta['clean_accuracy']:.2%} on {len(val)} test points")
    console.print(f"saved {out}", soft_wrap=True)
    console.print(f"next: advrobust evaluate --model {out}", soft_wrap=True)


def _method_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """The method options the user gave, refusing those the method does not take."""
    accepted = set(method_options(opts["method"]))
    kwargs: dict[str, Any] = {}
    for option, keyword in METHOD_OPTIONS.items():
        if opts[option] is None:
            continue
        if keyword not in accepted:
            flag = "--" + option.replace("_", "-")
            raise click.UsageError(
                f"{flag} does not apply to --method {opts['method']} "
                f"(it takes: {', '.join(sorted(accepted & set(METHOD_OPTIONS.values()))) or 'no options'})"
            )
        kwargs[keyword] = opts[option]
    return kwargs


def _val_attack(opts: dict[str, Any], described: dict[str, Any]) -> tuple[Any, float | None]:
    if opts["val_attack"] is None:
        return None, None
    from advrobust.attacks import create as create_attack

    eps = opts["val_eps"] if opts["val_eps"] is not None else described.get("eps", opts["eps"])
    if eps is None:
        raise click.UsageError("--val-attack needs a budget: give --val-eps (or --eps)")
    return create_attack(opts["val_attack"], norm=opts["norm"], eps=eps), float(eps)


def _history_table(history: Any) -> Table:
    table = Table(title="training")
    for name in ("epoch", "loss", "train acc", "val acc", "robust acc", "lr", "seconds", "note"):
        table.add_column(name, justify="left" if name == "note" else "right")
    for r in history.records:
        mark = " *" if r.epoch == history.final_epoch else ""
        table.add_row(
            f"{r.epoch}{mark}", f"{r.train_loss:.4f}", f"{r.train_acc:.2%}", _pct(r.val_acc), _pct(r.val_robust_acc),
            f"{r.lr:.3g}", f"{r.seconds:.1f}", r.note or "",
        )
    table.caption = "* the epoch whose weights are saved"
    return table


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"
