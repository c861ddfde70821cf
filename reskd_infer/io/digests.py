"""SHA-256 digests: of files (export manifests, sidecars) and of weights (checkpoints, the trainer's
replica checks). Equal weight digests mean bit-identical tensors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(state: dict[str, torch.Tensor], spec_json: str = "") -> str:
    """SHA-256 of the spec JSON and the tensors' names, dtypes, shapes and bytes: written with a checkpoint,
    checked on load, so a damaged file is refused instead of serving wrong weights."""
    digest = hashlib.sha256(spec_json.encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
