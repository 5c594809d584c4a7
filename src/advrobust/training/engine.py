"""The training loop: ``fit(model, train, val, method=...)`` for standard and adversarial training.

Madry et al. 2018, eq. 2.1: ``min_θ E[max_{r∈Δ} L(θ, x + r, y)]``; the method
(:mod:`advrobust.training.methods`) supplies the per-batch loss (the inner maximization included),
this module the outer minimization and everything around it:

* the default recipe of each method (:mod:`advrobust.training.recipes`) and the run's settings as
  one value (:class:`~advrobust.training.config.FitConfig`);
* robust validation on by default for adversarial methods (PGD-10 on 200 validation points);
* a failed run recognized and stopped, never returned as a success (:mod:`advrobust.training.collapse`);
* determinism: the data order of epoch ``e`` is a permutation drawn from a generator seeded with
  ``(seed, e)``, and the global RNG (dropout, random starts) is reseeded from ``(seed, e, rank)`` at
  the start of each epoch, so a run resumed at any epoch boundary reproduces the uninterrupted run
  without an RNG snapshot; the caller's RNG state is left as it was;
* a checkpoint after every epoch (``checkpoint_dir/state.pt``: model, optimizer, scheduler, AMP
  scaler, history, best weights), written atomically and read back with
  ``torch.load(weights_only=True)`` (tensors and plain containers only, never code);
* per-step learning-rate schedules (:mod:`advrobust.training.schedules`);
* random translations of each batch when the recipe's ``shift`` is set (:mod:`advrobust.training.augment`),
  before the method's inner attack, so the attack perturbs the image the model is trained on;
* early stopping on a validation metric, keeping the best weights (Rice et al. 2020, "Overfitting
  in adversarially robust deep learning": the best checkpoint by robust validation accuracy);
* mixed precision (``amp=True``): float16 autocast with a ``GradScaler`` on CUDA, bfloat16 autocast
  on CPU;
* data parallelism under ``torchrun`` (:mod:`advrobust.training.distributed`).
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from advrobust.attacks.base import Attack
from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.gradient import PGD
from advrobust.data.fingerprint import data_fingerprint
from advrobust.errors import InputError
from advrobust.paths import atomic_path
from advrobust.progress import Progress
from advrobust.training import distributed
from advrobust.training.augment import random_shift
from advrobust.training.collapse import detect
from advrobust.training.config import AUTO_VAL_STEPS, FitConfig
from advrobust.training.history import EpochRecord, TrainingHistory
from advrobust.training.methods import Collapsed, Stop, TrainingMethod, create_method, describe_attack
from advrobust.training.recipes import recipe_for
from advrobust.training.schedules import make_scheduler

STATE_FILE = "state.pt"
STATE_FORMAT = "advrobust.training-state/1"
EVAL_BATCH = 500  # rows per forward pass when measuring validation accuracy


class Dataset(Protocol):
    """What ``fit`` needs of a data set (:func:`advrobust.data.load` returns one): ``x`` float
    ``N×C×H×W`` in [0, 1], ``y`` int64 class indices."""

    x: Tensor
    y: Tensor


@dataclass(frozen=True)
class EarlyStopping:
    """Keep the weights of the best epoch on ``metric`` (an :class:`EpochRecord` field, higher is
    better) and, with ``patience``, stop after that many epochs without an improvement larger than
    ``min_delta``. Rice et al. 2020 select the best checkpoint by robust validation accuracy
    (``val_robust_acc``, the default)."""

    metric: str = "val_robust_acc"
    patience: int | None = None
    min_delta: float = 0.0


def fit(
    model: nn.Module,
    train: Dataset,
    val: Dataset | None = None,
    config: FitConfig | None = None,
    *,
    method: str | TrainingMethod = "standard",
    **options: Any,
) -> TrainingHistory:
    """Train ``model`` in place on ``train``; return the per-epoch :class:`TrainingHistory`.

    ``method``: a registered name (:func:`~advrobust.training.methods.method_names`), built with its
    default recipe's settings (:func:`~advrobust.training.recipes.recipe_for`: eps warm-up, inner
    steps, TRADES' β), or a :class:`~advrobust.training.methods.TrainingMethod` used as configured.
    ``config``: the run's settings (:class:`~advrobust.training.config.FitConfig`); by default the
    outer optimization of the method's recipe (e.g. for ``pgd-at``: Adam, cyclic learning rate
    peaking at 5e-3, 40 epochs of batches of 128). ``options``: any field of ``FitConfig`` on top,
    e.g. ``fit(model, train, val, method="pgd-at", epochs=10, checkpoint_dir="runs/pgd")``.

    After training the model holds the best weights on the monitored metric when ``early_stopping``
    is set, or when a method stopped training and robust validation accuracy is monitored; otherwise
    the weights the last epoch (or the stopping method) left. Only robust accuracy can judge a stop
    for catastrophic overfitting (Wong et al. 2020): clean or training accuracy peak at the collapse.

    A run that fails (:mod:`advrobust.training.collapse`: a diverging loss, accuracy at chance past
    the warm-up, a collapse of robust validation accuracy; or a method's own verdict) stops there and
    returns with ``history.status == "failed"`` and the reason and likely fix in ``history.stop_reason``.
    """
    recipe = recipe_for(method if isinstance(method, str) else method.name)
    if isinstance(method, str):
        method = create_method(method, **recipe.method_options())
    config = (config or FitConfig.from_recipe(recipe)).replace(**options)
    val_attack = _val_attack(config, method, val)
    _check_args(train, val, config, val_attack)
    identity = {
        "method": method.describe(),
        **config.optimization(),
        "seed": config.seed,
        "train_size": len(train.y),
        "train_data": data_fingerprint(train.x, train.y),
    }  # the settings that define a run: a checkpoint is resumed only under the same ones
    ctx = distributed.setup(config.device)
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        return _Run(model, train, val, method, ctx, identity).train(config, val_attack)


def _val_attack(config: FitConfig, method: TrainingMethod, val: Dataset | None) -> Attack | None:
    """The robust-validation attack: the one given, or for ``"auto"`` PGD at the method's budget
    (adversarial methods, with a validation set), else none."""
    if config.val_attack != "auto":
        return config.val_attack  # type: ignore[return-value]
    threat = getattr(method, "threat", None)
    if val is None or threat is None:
        return None
    return PGD(threat, steps=AUTO_VAL_STEPS, random_start=True)


def _check_args(train: Dataset, val: Dataset | None, config: FitConfig, val_attack: Attack | None) -> None:
    early_stopping = config.early_stopping
    if len(train.y) == 0 or len(train.x) != len(train.y):
        raise InputError(f"the training set needs as many labels as inputs, and some: {len(train.x)} vs {len(train.y)}")
    if val is None and (val_attack is not None or (early_stopping and early_stopping.metric.startswith("val"))):
        raise InputError("val_attack and early stopping on a validation metric need a validation set (val=...)")
    if early_stopping and early_stopping.metric == "val_robust_acc" and val_attack is None:
        raise InputError("early stopping on val_robust_acc needs a val_attack (e.g. PGD); or monitor val_acc")
    if early_stopping and early_stopping.metric not in EpochRecord.__dataclass_fields__:
        raise InputError(f"unknown metric {early_stopping.metric!r}: use val_robust_acc, val_acc or train_acc")


class _Run:
    """One call of :func:`fit`: the model, optimizer, scheduler and history it carries across epochs."""

    def __init__(
        self, model: nn.Module, train: Dataset, val: Dataset | None, method: TrainingMethod,
        ctx: distributed.Context, identity: dict[str, Any],
    ) -> None:
        self.model, self.train_set, self.val, self.method = model, train, val, method
        self.ctx, self.identity = ctx, identity
        model.to(ctx.device)
        self.net: nn.Module = model
        if ctx.world_size > 1:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        n, b = identity["train_size"], identity["batch_size"]
        # drop a last batch too small to give every rank a row (always kept in a single process)
        self.steps = n // b + (1 if n % b >= ctx.world_size else 0)
        if self.steps == 0:
            raise InputError(f"{n} training points cannot fill one batch across {ctx.world_size} processes")
        if identity["optimizer"] == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(
                model.parameters(), lr=identity["lr"], momentum=identity["momentum"],
                weight_decay=identity["weight_decay"],
            )
        else:
            self.opt = torch.optim.Adam(model.parameters(), lr=identity["lr"], weight_decay=identity["weight_decay"])
        self.sched = make_scheduler(identity["schedule"], self.opt, identity["epochs"] * self.steps)
        self.history = TrainingHistory()
        self.best_state: dict[str, Tensor] | None = None
        self.num_classes = int(train.y.max()) + 1 if val is None else max(int(train.y.max()), int(val.y.max())) + 1

    # --- the loop ------------------------------------------------------------------------------
    def train(self, config: FitConfig, val_attack: Attack | None) -> TrainingHistory:
        early_stopping, progress, epochs = config.early_stopping, config.progress, config.epochs
        state_path = Path(config.checkpoint_dir) / STATE_FILE if config.checkpoint_dir is not None else None
        scaler = torch.amp.GradScaler("cuda") if config.amp and self.ctx.device.type == "cuda" else None
        resuming = state_path is not None and config.resume and state_path.exists()
        start = self._restore(state_path, scaler) if resuming else 0  # type: ignore[arg-type]
        self.history.monitor = early_stopping.metric if early_stopping else (
            "val_robust_acc" if val_attack is not None else "val_acc" if self.val is not None else "train_acc"
        )
        summary = describe_attack(val_attack) if val_attack is not None else None
        self.history.config = {**self.identity, "val_attack": summary, "val_points": config.val_points}
        robust_idx = self._robust_subset(config.val_points) if val_attack is not None else None
        for epoch in range(start, epochs):
            if self.history.stop_reason:
                break
            begin = time.perf_counter()
            loss, acc, lr = self._train_epoch(epoch, epochs, progress, config.amp, scaler)
            val_acc = self._accuracy() if self.val is not None else None
            robust = self._robust(val_attack, robust_idx, progress) if val_attack is not None else None
            record = EpochRecord(epoch + 1, loss, acc, val_acc, robust, lr, time.perf_counter() - begin)
            self.history.records.append(record)
            self._after_epoch(record, early_stopping, config)
            if self.ctx.is_main:
                if state_path is not None:
                    self._save(state_path, epoch + 1, scaler)
                if config.log_path is not None:
                    self.history.write(config.log_path)
        h = self.history
        if h.status == "running":
            h.status = "stopped" if h.stop_reason else "completed"
        stopped_with_robust_monitor = h.stop_reason and h.monitor == "val_robust_acc"
        h.final_epoch = len(h.records)
        if self.best_state is not None and (early_stopping is not None or stopped_with_robust_monitor):
            self.model.load_state_dict(self.best_state)
            h.final_epoch = h.best_epoch
        return h

    def _train_epoch(
        self, epoch: int, epochs: int, progress: Progress, amp: bool, scaler: torch.amp.GradScaler | None
    ) -> tuple[float, float, float]:
        seed = self.identity["seed"]
        torch.manual_seed(_mix(seed, epoch, self.ctx.rank))
        order = torch.randperm(self.identity["train_size"], generator=torch.Generator().manual_seed(_mix(seed, epoch)))
        b = self.identity["batch_size"]
        self.net.train()
        total_loss = correct = count = 0.0
        lr = self.opt.param_groups[0]["lr"]
        wants_index = getattr(self.method, "wants_index", False)  # per-example state: give it the batch's rows
        with progress.task(f"epoch {epoch + 1}/{epochs}", total=self.steps) as task:
            for step in range(self.steps):
                idx = self.ctx.shard(order[step * b : (step + 1) * b])
                x = self.train_set.x[idx].to(self.ctx.device, non_blocking=True)
                y = self.train_set.y[idx].to(self.ctx.device, non_blocking=True)
                if self.identity["shift"]:  # offsets from the global generator, seeded per epoch above
                    x = random_shift(x, self.identity["shift"])
                lr = self.opt.param_groups[0]["lr"]
                rows = {"index": idx} if wants_index else {}
                with _autocast(self.ctx.device, amp):
                    loss, logits = self.method.loss(self.net, x, y, (epoch + step / self.steps) / epochs, **rows)
                self.opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(self.opt)
                    scaler.update()
                else:
                    loss.backward()
                    self.opt.step()
                self.sched.step()
                total_loss += float(loss.detach()) * len(y)
                correct += float((logits.detach().argmax(1) == y).sum())
                count += len(y)
                task.advance(1, loss=total_loss / count, acc=correct / count)
        total_loss, correct, count = self.ctx.sum(total_loss, correct, count)
        return total_loss / count, correct / count, lr

    # --- validation ----------------------------------------------------------------------------
    def _accuracy(self) -> float:
        """Clean accuracy on the whole validation set, shared out over the ranks."""
        assert self.val is not None
        idx = self.ctx.shard(torch.arange(len(self.val.y)))
        hits, n = self.ctx.sum(_count_correct(self.model, self.val, idx, self.ctx.device), float(len(idx)))
        return hits / n

    def _robust_subset(self, val_points: int) -> Tensor:
        """A fixed subset of the validation set (same points every epoch), drawn with ``seed``."""
        assert self.val is not None
        gen = torch.Generator().manual_seed(self.identity["seed"])
        return torch.randperm(len(self.val.y), generator=gen)[: max(1, val_points)].sort().values

    def _robust(self, attack: Attack, subset: Tensor | None, progress: Progress) -> float:
        """Robust accuracy under ``attack``: correct on the clean input and not broken by the attack."""
        assert self.val is not None and subset is not None
        idx = self.ctx.shard(subset)
        robust = 0.0
        chunks = idx.split(EVAL_BATCH)
        with progress.task(f"val robust ({attack.name or type(attack).__name__})", total=len(chunks)) as task:
            for chunk in chunks:
                x, y = self.val.x[chunk].to(self.ctx.device), self.val.y[chunk].to(self.ctx.device)
                with torch.no_grad(), evaluation_mode(self.model):
                    clean = self.model(x).argmax(1) == y
                result = attack(self.model, x, y)
                robust += float((clean & ~result.success).sum())
                task.advance(1)
        robust, n = self.ctx.sum(robust, float(len(idx)))
        return robust / n

    # --- best weights, stopping ----------------------------------------------------------------
    def _after_epoch(self, record: EpochRecord, early_stopping: EarlyStopping | None, config: FitConfig) -> None:
        h = self.history
        value = record.metric(h.monitor)
        delta = early_stopping.min_delta if early_stopping else 0.0
        if value is not None and (h.best_metric is None or value > h.best_metric + delta):
            h.best_metric, h.best_epoch = value, record.epoch
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        hook = getattr(self.method, "on_epoch_end", None)
        note = hook(h) if hook is not None else None
        if note:
            record.note = str(note)
            if isinstance(note, Stop):
                h.stop_reason = str(note)
                h.status = "failed" if isinstance(note, Collapsed) else h.status
        failure = None if config.collapse is None or h.stop_reason else detect(
            h.records, epochs=config.epochs, num_classes=self.num_classes,
            warmup=float(getattr(self.method, "warmup", 0.0)), lr=config.lr,
            adversarial=getattr(self.method, "threat", None) is not None, rule=config.collapse,
        )
        if failure is not None:
            h.stop_reason, h.status = str(failure), "failed"
            record.note = "; ".join(filter(None, [record.note, "failed"]))
        patience = early_stopping.patience if early_stopping else None
        stale = record.epoch - (h.best_epoch or record.epoch)
        if h.stop_reason is None and patience is not None and h.best_epoch is not None and stale >= patience:
            h.stop_reason = (
                f"early stopping: {h.monitor} did not improve for {patience} epochs "
                f"(best {h.best_metric:.4f} at epoch {h.best_epoch})"
            )

    # --- checkpoint and resume -----------------------------------------------------------------
    def _save(self, path: Path, epoch: int, scaler: torch.amp.GradScaler | None) -> None:
        state = {
            "format": STATE_FORMAT,
            "config": self.identity,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "history": self.history.to_dict(),
            "best_model": self.best_state,
            "method": self.method.state_dict() if hasattr(self.method, "state_dict") else None,
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def _restore(self, path: Path, scaler: torch.amp.GradScaler | None) -> int:
        state = load_state(path)
        if state["config"] != self.identity:
            changed = sorted(k for k in self.identity if state["config"].get(k) != self.identity[k])
            raise InputError(
                f"{path} holds a run with other settings ({', '.join(changed)} differ): resume with the "
                "same settings, use another checkpoint dir, or pass resume=False (--no-resume) to start over"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise InputError(f"{path} holds weights of another model: {str(exc).splitlines()[0]}") from None
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        self.history = TrainingHistory.from_dict(state["history"])
        self.best_state = state["best_model"]
        if state.get("method") is not None and hasattr(self.method, "load_state_dict"):
            self.method.load_state_dict(state["method"])
        return int(state["epoch"])


def accuracy(model: nn.Module, data: Dataset, device: str | torch.device | None = None) -> float:
    """Clean accuracy of ``model`` on ``data`` (eval mode, no gradients, batches of ``EVAL_BATCH``)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    return _count_correct(model, data, torch.arange(len(data.y)), dev) / max(1, len(data.y))


def _count_correct(model: nn.Module, data: Dataset, index: Tensor, device: torch.device) -> float:
    hits = 0.0
    with torch.no_grad(), evaluation_mode(model):
        for chunk in index.split(EVAL_BATCH):
            x, y = data.x[chunk].to(device), data.y[chunk].to(device)
            hits += float((model(x).argmax(1) == y).sum())
    return hits


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a resumable training state safely (``torch.load(weights_only=True)``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated or unsafe: all unusable
        raise InputError(
            f"cannot read the training state {path} ({str(exc).strip().splitlines()[0]}): "
            "delete it or pass resume=False (--no-resume) to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InputError(f"{path} is not an advrobust training state: delete it or use another checkpoint dir")
    return state


def _mix(*numbers: int) -> int:
    """A 63-bit seed from a few integers (a splitmix-style hash, so nearby inputs give unrelated seeds)."""
    h = 0x9E3779B97F4A7C15
    for n in numbers:
        h = ((h ^ (n & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def _autocast(device: torch.device, amp: bool) -> AbstractContextManager[Any]:
    if not amp:
        return nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)




