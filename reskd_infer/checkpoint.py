"""Checkpoints: weights and ModelSpec in one file, loaded without executing code.

The format is safetensors with the spec JSON in the header metadata. Loading
also accepts a ``torch.save`` dict ``{"spec": json, "state_dict": {...}}`` read
with ``weights_only=True``, so a file that carries pickled code is refused
before any of it runs.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, SpecError
from .spec import ModelSpec

CHECKPOINT_FORMAT = "reskd-infer/checkpoint/1"
_META_FORMAT, _META_SPEC = "format", "reskd_spec"


def _default_file_mode() -> int:
    # mkstemp creates 0600 files; give the final file what open() would (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(model: nn.Module, spec: ModelSpec, path: str | Path) -> Path:
    """Write ``model``'s weights and ``spec`` to ``path`` (safetensors), atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {_META_FORMAT: CHECKPOINT_FORMAT, _META_SPEC: spec.to_json()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and header_len < 100_000_000


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    """Read a checkpoint's state dict and spec without building the model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        if _is_safetensors(path):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                metadata = fh.metadata() or {}
                state = {k: fh.get_tensor(k) for k in fh.keys()}
            spec_json = metadata.get(_META_SPEC)
        else:
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001
                raise CheckpointError(
                    f"{path}: refused: not a weights-only checkpoint (it may carry code, which is never "
                    f"executed): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
            if not isinstance(payload, dict) or "state_dict" not in payload:
                raise CheckpointError(f"{path}: not a reskd-infer checkpoint (no 'state_dict' entry)")
            state, spec_json = payload["state_dict"], payload.get("spec")
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt files raise many types
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if spec_json is None:
        raise CheckpointError(f"{path}: has no model spec; was it written by reskd_infer.save_checkpoint?")
    try:
        spec = ModelSpec.from_json(spec_json) if isinstance(spec_json, str) else ModelSpec.from_dict(spec_json)
    except SpecError as exc:
        raise CheckpointError(f"{path}: invalid model spec: {exc}") from None
    return state, spec


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Build the model a checkpoint describes and load its weights (eval mode)."""
    from .models import build_model

    state, spec = read_checkpoint(path)
    model = build_model(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {spec.arch}: {str(exc).splitlines()[0]}") from None
    return model.to(map_location).eval(), spec


def spec_from_checkpoint(path: str | Path) -> ModelSpec:
    """Only the spec of a checkpoint (reads the safetensors header, not the tensors, when it can)."""
    path = Path(path)
    if path.is_file() and _is_safetensors(path):
        try:
            with open(path, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
            spec_json = header.get("__metadata__", {}).get(_META_SPEC)
            if spec_json:
                return ModelSpec.from_json(spec_json)
        except (OSError, ValueError, SpecError):
            pass
    return read_checkpoint(path)[1]
