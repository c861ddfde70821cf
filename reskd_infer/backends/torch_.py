"""The PyTorch backend: runs a checkpoint eagerly on the CPU, or on CUDA under autocast.

On CUDA: ``cudnn.benchmark`` is on (input shapes repeat, so cuDNN's autotuning pays
once per shape), models with 3D convolutions run in ``channels_last_3d`` (NDHWC,
what cuDNN's fast 3D kernels use), and a host batch is pinned before its
non-blocking upload (``non_blocking=True`` on pageable memory is a plain copy).
The CPU path is left as it is: it is the reference every export is verified against.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from reskd_infer.backends.base import Backend
from reskd_infer.errors import BackendUnavailableError
from reskd_infer.formats import ARTIFACT_CHECKPOINT
from reskd_infer.io.checkpoint import load_checkpoint
from reskd_infer.spec import ModelSpec


def resolve_torch_device(device: str) -> torch.device:
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():

        raise BackendUnavailableError(f"device {device!r} requested but CUDA is not available here")
    return torch.device(device)


def has_conv3d(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv3d) for m in model.modules())


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; a CPU tensor bound for CUDA is pinned first so the copy is truly asynchronous."""
    if x.device == device:
        return x
    if device.type == "cuda" and x.device.type == "cpu" and not x.is_pinned():
        x = x.pin_memory()
    return x.to(device, non_blocking=device.type == "cuda")


class TorchBackend(Backend):
    """Eager PyTorch; on CUDA, FP16 autocast (``precision="bf16"`` for bfloat16, ``"fp32"`` for none)."""

    name = "torch"
    artifact = ARTIFACT_CHECKPOINT
    precisions = ("auto", "fp32", "fp16", "bf16")  # autocast on CUDA only; the CPU runs FP32

    def __init__(self, path: str | Path, spec: ModelSpec | None = None, device: str = "auto", precision: str = "auto"):
        model, file_spec = load_checkpoint(path)
        super().__init__(path, spec or file_spec, device)
        self._device = resolve_torch_device(device)
        self._memory_format = torch.contiguous_format
        self._autocast_dtype = None
        if self._device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # process-wide: fixed clip shapes make autotuning pay off
            if has_conv3d(model):
                self._memory_format = torch.channels_last_3d
            if precision != "fp32":
                self._autocast_dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        elif precision in ("fp16", "bf16"):

            warnings.warn(f"{path}: the PyTorch backend runs FP32 on the CPU; precision={precision!r} not used",
                          RuntimeWarning, stacklevel=3)
        model = model.to(self._device)
        if self._memory_format is not torch.contiguous_format:
            model = model.to(memory_format=self._memory_format)
        self.model = model.eval()

    @property
    def input_device(self) -> torch.device:
        return self._device

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        x = to_device(torch.as_tensor(batch), self._device)
        if self._memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self._memory_format)
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
