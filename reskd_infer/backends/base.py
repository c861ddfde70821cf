"""The backend interface and the registry that picks one by artifact type.

Like Polygraphy's runners, every backend has the same life cycle: construct
(load the artifact), ``infer`` on a ready batch, ``release``. The Recognizer never
branches on engine type: it takes the backends :func:`backends_for` lists for an artifact's kind, in the
order of the format table (:mod:`reskd_infer.formats`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from reskd_infer.errors import BackendUnavailableError
from reskd_infer.formats import backend_order
from reskd_infer.io.artifacts import read_spec
from reskd_infer.spec import ModelSpec


class Backend(ABC):
    """One inference engine bound to one artifact.

    ``infer`` takes a float32 batch shaped (N, C, T, H, W), already preprocessed
    (a torch tensor on :attr:`input_device`, or a NumPy array), and returns the
    logits as a float32 NumPy array (N, num_classes).
    """

    name: ClassVar[str]
    artifact: ClassVar[str]
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

    @classmethod
    def read_spec(cls, path: str | Path) -> ModelSpec:
        """The ModelSpec the artifact at ``path`` carries (backends serving remote models override this)."""
        return read_spec(path)

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


_BACKENDS: dict[str, type[Backend]] = {}


def register_backend(backend: type[Backend]) -> None:
    """Make ``backend`` available under its ``name``."""
    _BACKENDS[backend.name] = backend


def backends_for(kind: str) -> list[type[Backend]]:
    """Registered backends that run artifacts of ``kind``, best first (the order of reskd_infer.formats)."""
    return [_BACKENDS[name] for name in backend_order(kind) if name in _BACKENDS]


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def get_backend_class(name: str) -> type[Backend]:
    if name not in _BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r}; available: {', '.join(backend_names())}")
    return _BACKENDS[name]
