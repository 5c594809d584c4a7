"""A model's identity for the results store: the SHA-256 of its weights."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex) over the state dict: for each entry in sorted name order, its name, dtype,
    shape and raw bytes. Equal weights give equal fingerprints whatever the device or module mode;
    any changed value, name or shape changes it."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
