"""GPU decoding on NVDEC through torchcodec's CUDA backend: frames stay on the GPU from decode to engine.

NEVER RUN: this machine has no GPU. The code follows torchcodec's documented API
(``torchcodec.decoders.VideoDecoder(source, device="cuda", dimension_order=..., seek_mode="exact")``,
``get_frames_at(indices).data``, and from torchcodec 0.8 the ``set_cuda_backend("beta")`` context
manager that selects the NVDEC interface). docs/video.md says what to validate first.

Why torchcodec and not PyNvVideoCodec: it is a PyTorch-native wheel that returns CUDA tensors
with the same frame numbering as a full decode (``seek_mode="exact"`` scans the file), uses the
FFmpeg already on the system for demuxing (so containers behave as on the CPU path), and the CPU
measurements here (issue 8) showed it ties with PyAV, so one library serves both devices.
PyNvVideoCodec needs its own demuxer and frame-index bookkeeping.

GPU-decoded pixels are not bit-exact with CPU decoding (NVDEC and the NPP colour conversion differ
from libswscale by a few levels; torchcodec issues #412 and #425): the decoder name goes into the
results so a model validated on CPU-decoded frames is re-validated on GPU-decoded ones.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from reskd_infer.errors import BackendUnavailableError, UnreadableVideoError
from reskd_infer.spec import ModelSpec
from reskd_infer.video.decode import open_video, scan_packets
from reskd_infer.video.preprocess import resize_frames_on_device
from reskd_infer.video.sampling import sample_indices

GPU_DECODER_NAME = "torchcodec-nvdec"


def nvdec_unavailable(device: str | torch.device = "cuda") -> str | None:
    """None when NVDEC decoding through torchcodec can run on ``device``, else the reason it cannot."""
    if torch.device(device).type != "cuda":
        return f"device {device!r} is not a CUDA device"
    if not torch.cuda.is_available():
        return "CUDA is not available here (no GPU or a CPU-only torch)"
    try:
        import torchcodec.decoders  # noqa: F401
    except ImportError as exc:
        return f"torchcodec is not installed ({exc}); pip install 'reskd-infer[gpu]'"
    return None


def _cuda_backend():
    """torchcodec >= 0.8 selects its NVDEC interface with ``set_cuda_backend("beta")``; older: default."""
    from torchcodec import decoders

    setter = getattr(decoders, "set_cuda_backend", None)
    return setter("beta") if setter is not None else contextlib.nullcontext()


def read_clips_nvdec(path: str | Path, spec: ModelSpec, device: str | torch.device = "cuda",
                     rng: np.random.Generator | None = None) -> torch.Tensor:
    """The frames ``spec`` samples, decoded on NVDEC and resized on the GPU:
    uint8 (num_clips, T, H, W, 3) on ``device``, the layout :func:`read_clips` returns on the CPU."""
    problem = nvdec_unavailable(device)
    if problem:
        raise BackendUnavailableError(f"GPU decoding unavailable: {problem}")
    from torchcodec.decoders import VideoDecoder

    # The frame count and keyframes come from the same packet pre-scan as the CPU path, so both
    # devices sample the same frame indices (and decode-aware sampling picks the same keyframes).
    with open_video(path) as (container, stream):
        index = scan_packets(container, stream)
    if index.num_frames == 0:
        raise UnreadableVideoError(path, "no video frames (empty video stream)")
    indices = sample_indices(index.num_frames, spec, rng, index.keyframes if index.exact else None)
    wanted = sorted(set(indices.ravel().tolist()))
    try:
        with _cuda_backend():
            decoder = VideoDecoder(str(path), device=str(device), dimension_order="NCHW", seek_mode="exact")
            frames = decoder.get_frames_at(wanted).data  # uint8 (N, 3, H, W) on the GPU
    except (RuntimeError, ValueError) as exc:
        raise UnreadableVideoError(path, f"NVDEC decoding failed: {exc}") from None
    frames = resize_frames_on_device(frames, spec.resize_short, spec.resize_antialias)
    position = {index: row for row, index in enumerate(wanted)}
    picked = frames[torch.as_tensor([position[i] for i in indices.ravel().tolist()], device=frames.device)]
    return picked.permute(0, 2, 3, 1).reshape(*indices.shape, *picked.shape[-2:], 3)
