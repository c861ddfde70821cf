"""Checkpoints: weights and ModelSpec in one file, loaded without executing code.

The format is safetensors with the spec JSON in the header metadata. Loading
also accepts a ``torch.save`` dict ``{"spec": json, "state_dict": {...}}`` read
with ``weights_only=True``, so a file that carries pickled code is refused
before any of it runs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from reskd_infer.errors import CheckpointError, SpecError, one_line
from reskd_infer.io.digests import weights_digest
from reskd_infer.io.files import atomic_write
from reskd_infer.models import build_model
from reskd_infer.spec import ModelSpec

CHECKPOINT_FORMAT = "reskd-infer/checkpoint/1"
_META_FORMAT, _META_SPEC, _META_DIGEST = "format", "reskd_spec", "weights_sha256"


def save_checkpoint(model: nn.Module, spec: ModelSpec, path: str | Path) -> Path:
    """Write ``model``'s weights and ``spec`` to ``path`` (safetensors), atomically."""

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    spec_json = spec.to_json()
    metadata = {_META_FORMAT: CHECKPOINT_FORMAT, _META_SPEC: spec_json, _META_DIGEST: weights_digest(state, spec_json)}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and header_len < 100_000_000


_ZIP_MAGIC, _PICKLE_PROTOCOLS = b"PK\x03\x04", (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_HOW_TO_CONVERT = ("to use plain weights, build the model and save a checkpoint: "
                   "save_checkpoint(build_model(spec, weights=PATH), spec, 'model.ckpt'), "
                   "or train from them with reskd-train --weights PATH")


def _not_a_checkpoint(path: Path, head: bytes) -> CheckpointError:
    """The error for a file that is neither safetensors nor a torch.save file, saying what it looks like."""
    looks = ""
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        looks = " (it looks like an ONNX model: pass it to Recognizer/reskd-predict/reskd-eval, which accept .onnx)"
    elif head.lstrip()[:1] in (b"{", b"["):
        looks = " (it is JSON)"
    elif head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        looks = " (it is a text file)"
    return CheckpointError(f"{path}: not a checkpoint: neither safetensors nor a torch.save file{looks}")


def _read_torch_save(path: Path, head: bytes) -> tuple[dict[str, torch.Tensor], object]:
    if not (head.startswith(_ZIP_MAGIC) or head[:2] in _PICKLE_PROTOCOLS):
        raise _not_a_checkpoint(path, head)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError...
        if "weights only load failed" in str(exc).lower() or "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"{path}: refused: it holds pickled Python objects (a whole model saved with torch.save(model)?), "
                "which only load by running code; nothing was executed. Save model.state_dict() instead; "
                + _HOW_TO_CONVERT) from None
        raise CheckpointError(f"{path}: corrupt or truncated torch.save file ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a reskd-infer checkpoint (a torch.save file holding a "
                              f"{type(payload).__name__}, not a dict)")
    if "state_dict" not in payload:
        if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise CheckpointError(f"{path}: a bare state dict of {len(payload)} tensors (torchvision-style "
                                  "weights), not a reskd-infer checkpoint with a model spec; " + _HOW_TO_CONVERT)
        raise CheckpointError(f"{path}: not a reskd-infer checkpoint (no 'state_dict' entry)")
    return payload["state_dict"], payload.get("spec")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], object]:

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises SafetensorError, OSError...
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: "
                              f"{one_line(exc)})") from None
    expected = metadata.get(_META_DIGEST)
    if expected and weights_digest(state, metadata.get(_META_SPEC, "")) != expected:
        raise CheckpointError(f"{path}: corrupt checkpoint: the weights do not match the digest written with "
                              "them (the file was damaged after it was saved)")
    return state, metadata.get(_META_SPEC)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    """Read a checkpoint's state dict and spec without building the model."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file (an export folder is served by "
                              "Recognizer/reskd-predict/reskd-eval, or use its model.ckpt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not head:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if _is_safetensors(path):
        state, spec_json = _read_safetensors(path)
    else:
        state, spec_json = _read_torch_save(path, head)
    if spec_json is None:
        raise CheckpointError(f"{path}: has no model spec; was it written by reskd_infer.save_checkpoint?")
    try:
        spec = ModelSpec.from_json(spec_json) if isinstance(spec_json, str) else ModelSpec.from_dict(spec_json)
    except SpecError as exc:
        raise CheckpointError(f"{path}: invalid model spec: {exc}") from None
    return state, spec


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Build the model a checkpoint describes and load its weights (eval mode)."""

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
