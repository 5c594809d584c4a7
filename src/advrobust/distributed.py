"""Running under ``torchrun``: the process group, this process's rank, and collecting results.

``torchrun --nproc_per_node N -m advrobust evaluate|train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``. :func:`join` joins the group they describe (once per process; later calls reuse it:
joining again after leaving can hang on the rendezvous) and arranges for :func:`leave` at exit.
:func:`leave` waits at a barrier for every rank, then destroys the group: a gloo group still open at
interpreter shutdown aborts the process ("terminate called without an active exception", exit
status -6) once its peer has gone, and a rank that destroys the group while a peer is still in a
collective breaks that collective. A program may call :func:`leave` itself when its ranks are done.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    """The number of processes torchrun started (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank under torchrun (0 otherwise): only rank 0 writes files and prints."""
    return int(os.environ.get("RANK", "0"))


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialized process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def join(backend: str | None = None) -> bool:
    """Join the process group torchrun describes when ``WORLD_SIZE > 1`` (``backend``: default nccl
    where CUDA is available, else gloo); returns whether a group is in use. A group joined here is
    left at exit (:func:`leave`); one the caller opened is left alone."""
    if world_size() <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"))
        atexit.register(leave)
    return True


def leave() -> None:
    """Leave the process group once every rank is here (a barrier, then destroy); nothing without one."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` in a single process)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out
