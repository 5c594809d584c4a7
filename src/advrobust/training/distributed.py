"""Data-parallel training under ``torchrun``: process group, device, data shards, metric sums.

``torchrun --nproc_per_node N -m advrobust train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :func:`setup` then joins the process group (gloo on CPU, nccl on CUDA; see
:mod:`advrobust.distributed`, which leaves it at exit) unless the caller did. Every rank
draws the same permutation of the data, cuts it into the same global batches as one process would,
and takes the rows ``rank, rank + N, ...`` of each: ``batch_size`` means the global batch at any N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from advrobust.distributed import join, world_size


@dataclass(frozen=True)
class Context:
    """This process's place in the run: ``rank`` of ``world_size`` processes and its ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's rows of ``index`` (``rank::world_size``)."""
        return index[self.rank :: self.world_size]

    def sum(self, *values: float) -> list[float]:
        """The sums of ``values`` over all ranks (the values themselves in a single process)."""
        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()


def setup(device: str | torch.device | None) -> Context:
    """Join the process group if launched by torchrun with ``WORLD_SIZE > 1``; pick the device
    (``device`` if given, else CUDA — ``cuda:LOCAL_RANK`` under torchrun — when available, else CPU)."""
    n = world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = (f"cuda:{local}" if n > 1 else "cuda") if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not join(backend="nccl" if dev.type == "cuda" else "gloo"):
        return Context(0, 1, dev)
    return Context(dist.get_rank(), dist.get_world_size(), dev)
