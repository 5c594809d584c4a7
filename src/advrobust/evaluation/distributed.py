"""Sharding an evaluation across processes (``torchrun --nproc_per_node N -m advrobust evaluate``).

Every process runs the same sequence of stages (attack × eps); within a stage the chunks of points
are dealt out round-robin (chunk ``c`` to rank ``c mod world``), and after the stage every rank
receives every chunk's result (``all_gather_object``) and applies them in chunk order. Chunks are
the same as in a single process, so the merged result equals the single-process one exactly.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialized process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); gloo on CPU, nccl on GPU.

    Returns whether a group is in use. A group joined here is left when the process exits: a gloo
    group still open at interpreter shutdown aborts the process ("terminate called without an active
    exception", exit status -6) once its peer has gone.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(_leave)
    return True


def _leave() -> None:
    """Leave the process group (at exit; every collective of the evaluation has completed by then)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` in a single process)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out
