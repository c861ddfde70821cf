"""Build a zoo model from a ModelSpec, optionally loading local pretrained weights."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from reskd_infer.errors import CheckpointError
from reskd_infer.models.base import VideoModel
from reskd_infer.models.registry import get_arch_info

# torchvision module names -> ours (first match wins; the identity is tried first).
_RENAMES: list[tuple[str, str]] = [
    (r"^conv1\.", "trunk.0."),
    (r"^bn1\.", "trunk.1."),
    (r"^layer([1-4])\.", "trunk.{}."),
    (r"^fc\.", "head.fc."),
    (r"^head\.(weight|bias)$", "head.fc.{}"),
]
_LAYER_OFFSET = 3  # trunk = conv1, bn1, relu, maxpool, layer1..layer4


def build_model(spec: object, weights: str | Path | None = None) -> VideoModel:
    """Build the architecture ``spec.arch`` for ``spec``'s classes and frames.

    Weights are random unless ``weights`` names a local file in torchvision's
    format (``.pth``/``.pt`` state dict or ``.safetensors``); the classifier is
    skipped when its shape does not match the class count. Nothing is fetched
    from a hub.
    """
    info = get_arch_info(spec.arch)  # type: ignore[attr-defined]
    model = info.builder(num_classes=spec.num_classes, num_frames=spec.num_frames)  # type: ignore[attr-defined]
    if weights is not None:
        load_pretrained_weights(model, weights)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain tensor dict without executing code (safetensors or weights-only torch.load)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is unusable
        raise CheckpointError(f"{path}: cannot read weights safely ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
    return state


def _candidate_names(key: str) -> list[str]:
    names = [key]
    for pattern, target in _RENAMES:
        match = re.match(pattern, key)
        if match:
            groups = match.groups()
            if pattern.startswith("^layer"):
                target = target.format(int(groups[0]) + _LAYER_OFFSET)
            elif groups:
                target = target.format(*groups)
            renamed = re.sub(pattern, target, key)
            names.append(renamed)
            names.append(renamed.replace(".conv1.", ".conv1.conv."))  # TSM wraps conv1 with a shift
    return names


def load_pretrained_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load torchvision-format weights into ``model``; returns the parameter names left untouched."""
    source = read_state_dict(path)
    target = model.state_dict()
    matched: dict[str, torch.Tensor] = {}
    skipped_shape = []
    for key, value in source.items():
        for name in _candidate_names(key):
            if name in target:
                if target[name].shape == value.shape:
                    matched[name] = value
                else:
                    skipped_shape.append(name)
                break
    if len(matched) < len(target) // 2:
        raise CheckpointError(
            f"{path}: only {len(matched)} of {len(target)} tensors match {type(model).__name__}; "
            "is this the right architecture's weights?"
        )
    model.load_state_dict(matched, strict=False)
    untouched = sorted(set(target) - set(matched))
    if skipped_shape:
        warnings.warn(f"{path}: kept random init for {skipped_shape} (shape differs, e.g. class count)", stacklevel=2)
    return untouched
