"""The PyTorch backend: runs a checkpoint eagerly on the CPU, or on CUDA under autocast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..spec import ModelSpec
from .base import ARTIFACT_CHECKPOINT, Backend


def resolve_torch_device(device: str) -> torch.device:
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError(f"device {device!r} requested but CUDA is not available here")
    return torch.device(device)


class TorchBackend(Backend):
    """Eager PyTorch; on CUDA, FP16 autocast (``precision="bf16"`` for bfloat16)."""

    name = "torch"
    artifact = ARTIFACT_CHECKPOINT

    def __init__(self, path: str | Path, spec: ModelSpec | None = None, device: str = "auto", precision: str = "auto"):
        model, file_spec = load_checkpoint(path)
        super().__init__(path, spec or file_spec, device)
        self._device = resolve_torch_device(device)
        self.model = model.to(self._device).eval()
        self._autocast_dtype = None
        if self._device.type == "cuda" and precision != "fp32":
            self._autocast_dtype = torch.bfloat16 if precision == "bf16" else torch.float16

    @property
    def input_device(self) -> torch.device:
        return self._device

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        x = torch.as_tensor(batch).to(self._device, non_blocking=True)
        if self._autocast_dtype is not None:
            with torch.autocast("cuda", dtype=self._autocast_dtype):
                logits = self.model(x)
        else:
            logits = self.model(x)
        return logits.float().cpu().numpy()

    def release(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
