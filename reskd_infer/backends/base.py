"""The backend interface and the registry that picks one by artifact type.

Like Polygraphy's runners, every backend has the same life cycle: construct
(load the artifact), ``infer`` on a ready batch, ``release``. The Recognizer never
branches on engine type: it asks :func:`create_backend` for one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import BackendUnavailableError
from ..spec import ModelSpec

ARTIFACT_CHECKPOINT = "checkpoint"
ARTIFACT_ONNX = "onnx"
ARTIFACT_TENSORRT = "tensorrt"

_SUFFIXES = {
    ".ckpt": ARTIFACT_CHECKPOINT,
    ".safetensors": ARTIFACT_CHECKPOINT,
    ".pt": ARTIFACT_CHECKPOINT,
    ".pth": ARTIFACT_CHECKPOINT,
    ".onnx": ARTIFACT_ONNX,
    ".plan": ARTIFACT_TENSORRT,
    ".engine": ARTIFACT_TENSORRT,
}


def artifact_type(path: str | Path) -> str:
    """The artifact type of a file, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise BackendUnavailableError(
            f"{path}: unknown artifact type {suffix!r}; expected one of {', '.join(sorted(_SUFFIXES))} or an export folder"
        )
    return _SUFFIXES[suffix]


class Backend(ABC):
    """One inference engine bound to one artifact.

    ``infer`` takes a float32 batch shaped (N, C, T, H, W), already preprocessed
    (a torch tensor on :attr:`input_device`, or a NumPy array), and returns the
    logits as a float32 NumPy array (N, num_classes).
    """

    name: ClassVar[str]
    artifact: ClassVar[str]
    priority: ClassVar[int] = 0  # higher wins when several backends can run an artifact
    # Precisions the constructor's ``precision`` argument accepts; () = none: the artifact's own.
    precisions: ClassVar[tuple[str, ...]] = ()
    # An optional accelerator for an artifact another backend also runs: under backend="auto"
    # the Recognizer skips it silently when its package is missing instead of warning.
    optional: ClassVar[bool] = False

    def __init__(self, path: str | Path, spec: ModelSpec, device: str = "auto"):
        self.path = Path(path)
        self.spec = spec
        self.device = device

    @classmethod
    def available(cls, device: str = "auto") -> str | None:
        """None if this backend can run here, otherwise the reason it cannot."""
        return None

    @property
    def input_device(self) -> torch.device:
        """Where ``infer`` wants its input tensor (preprocessing runs there)."""
        return torch.device("cpu")

    @abstractmethod
    def infer(self, batch: torch.Tensor | np.ndarray) -> np.ndarray: ...

    def release(self) -> None:
        """Free the engine's memory; the backend is unusable afterwards."""
        return None  # backends holding GPU memory or sessions override this

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, device={self.device!r})"


@dataclass(frozen=True)
class BackendEntry:
    name: str
    artifact: str
    priority: int
    factory: Callable[[], type[Backend]]  # imported lazily: onnxruntime/tensorrt are optional


_BACKENDS: dict[str, BackendEntry] = {}


def register_backend(name: str, artifact: str, priority: int, factory: Callable[[], type[Backend]]) -> None:
    _BACKENDS[name] = BackendEntry(name, artifact, priority, factory)


def backends_for(artifact: str) -> list[BackendEntry]:
    """Registered backends that run ``artifact``, best first."""
    return sorted((e for e in _BACKENDS.values() if e.artifact == artifact), key=lambda e: -e.priority)


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def get_backend_class(name: str) -> type[Backend]:
    if name not in _BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r}; available: {', '.join(backend_names())}")
    return _BACKENDS[name].factory()
