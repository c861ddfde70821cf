"""The single place where decoded frames become the model's input tensor.

The runtime (Recognizer) and the training evaluation transform both call
:func:`frames_to_tensor`, so the student is served exactly the tensor it was
evaluated on. It runs on any torch device. For a GPU backend,
:func:`clips_to_batch` stacks the uint8 clips on the CPU, pins them and uploads
them in one copy, then resizes, crops and normalizes on the GPU; decoding and the
conversion to RGB (``video/decode.py``) still run on the CPU at full resolution.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..spec import ModelSpec


def resize_short_side(x: torch.Tensor, short: int, antialias: bool = True) -> torch.Tensor:
    """Bilinearly resize (..., H, W) float frames so that min(H, W) == short, keeping aspect."""
    h, w = x.shape[-2:]
    if min(h, w) == short:
        return x
    if h <= w:
        new_h, new_w = short, max(1, round(w * short / h))
    else:
        new_h, new_w = max(1, round(h * short / w)), short
    return F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=antialias)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop (..., H, W) to (size, size); the image must be at least that big."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def to_model_resolution(x: torch.Tensor, input_size: int) -> torch.Tensor:
    """Down-sample a (N, C, T, H, W) or (N, C, H, W) crop to ``input_size``.

    Plain bilinear interpolation without antialiasing, as ResKD feeds the student
    the teacher's crop; a no-op when the sizes already agree.
    """
    if x.shape[-1] == input_size and x.shape[-2] == input_size:
        return x
    if x.dim() == 5:
        n, c, t, h, w = x.shape
        y = x.transpose(1, 2).reshape(n * t, c, h, w)
        y = F.interpolate(y, size=(input_size, input_size), mode="bilinear", align_corners=False)
        return y.reshape(n, t, c, input_size, input_size).transpose(1, 2)
    return F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)


@lru_cache(maxsize=32)
def _mean_std(mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device,
              dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """mean/std shaped for (N, C, ...) on ``device``, made once per device (two tiny uploads per clip otherwise)."""
    shape = (1, 3) + (1,) * (dims - 2)
    return (torch.tensor(mean, dtype=dtype, device=device).reshape(shape),
            torch.tensor(std, dtype=dtype, device=device).reshape(shape))


def normalize(x: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """(x - mean) / std on channel dim 1 of (N, C, ...) RGB 0..255 floats."""
    mean, std = _mean_std(tuple(spec.mean), tuple(spec.std), x.dtype, x.device, x.dim())
    return (x - mean) / std


def crop_boxes(height: int, width: int, size: int, num_crops: int = 1) -> list[tuple[int, int]]:
    """(top, left) of each test view of a (height, width) image: the centre crop, or with three crops
    the two ends of the long side and its centre (first, centre, last), each centred across."""
    top, left = (height - size) // 2, (width - size) // 2
    if num_crops == 1:
        return [(top, left)]
    if width >= height:
        return [(top, 0), (top, left), (top, width - size)]
    return [(0, left), (top, left), (height - size, left)]


def _resized_frames(frames: torch.Tensor | np.ndarray, spec: ModelSpec,
                    device: torch.device | str | None) -> torch.Tensor:
    """uint8 RGB (T, H, W, 3) -> float (T, 3, H', W') with the short side at ``spec.resize_short``."""
    x = torch.as_tensor(frames)
    if device is not None:
        x = x.to(device, non_blocking=True)
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be shaped (T, H, W, 3), got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    return resize_short_side(x, spec.resize_short, spec.resize_antialias)


def view_crops(frames: torch.Tensor | np.ndarray, spec: ModelSpec,
               device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 RGB frames (T, H, W, 3) -> the ``spec.num_crops`` test crops (V, 3, T, crop_size, crop_size),
    still 0..255: short side resized to ``spec.resize_short``, then :func:`crop_boxes`."""
    x = _resized_frames(frames, spec, device)
    size = spec.crop_size
    crops = [x[..., top : top + size, left : left + size] for top, left in crop_boxes(*x.shape[-2:], size, spec.num_crops)]
    return torch.stack(crops).transpose(1, 2).contiguous()


def crop_frames(frames: torch.Tensor | np.ndarray, spec: ModelSpec, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 RGB frames (T, H, W, 3) -> float centre crop (3, T, crop_size, crop_size), still 0..255.

    Short side resized to ``spec.resize_short`` then centre-cropped to ``spec.crop_size``.
    Frames with different sizes are not allowed here (decode one video at a time).
    """
    x = _resized_frames(frames, spec, device)
    top, left = crop_boxes(*x.shape[-2:], spec.crop_size)[0]
    x = x[..., top : top + spec.crop_size, left : left + spec.crop_size]
    return x.transpose(0, 1).contiguous()  # (3, T, S, S)


def frames_to_tensor(
    frames: torch.Tensor | np.ndarray, spec: ModelSpec, device: torch.device | str | None = None
) -> torch.Tensor:
    """uint8 RGB frames (T, H, W, 3) of one clip -> the model input (3, T, input_size, input_size).

    Evaluation preprocessing: short-side resize, centre crop, down-sample to the
    model's resolution (ResKD students see the teacher's crop), normalize.
    """
    crop = crop_frames(frames, spec, device).unsqueeze(0)
    return normalize(to_model_resolution(crop, spec.input_size), spec)[0]


def frames_to_views(
    frames: torch.Tensor | np.ndarray, spec: ModelSpec, device: torch.device | str | None = None
) -> torch.Tensor:
    """One clip's frames -> its ``spec.num_crops`` test views (V, 3, T, input_size, input_size);
    with one crop this is ``frames_to_tensor(...)[None]``, bit for bit."""
    return normalize(to_model_resolution(view_crops(frames, spec, device), spec.input_size), spec)


def clips_to_batch(
    clips: list[np.ndarray] | np.ndarray, spec: ModelSpec, device: torch.device | str | None = None
) -> torch.Tensor:
    """Several clips' frames -> a batch (num_clips x num_crops, 3, T, input_size, input_size), clip by clip
    (each clip's crops together). The class probabilities of a video are the mean over all its views.

    For a CUDA ``device`` the uint8 clips go up in one pinned copy per run of
    same-sized clips; the per-clip arithmetic is the same on every device.
    """
    target = torch.device(device) if device is not None else None
    if target is not None and target.type == "cuda":
        clips, target = upload_clips(clips, target), None
    if spec.num_crops == 1:
        return torch.stack([frames_to_tensor(c, spec, target) for c in clips])
    return torch.cat([frames_to_views(c, spec, target) for c in clips])


def upload_clips(clips: list[np.ndarray] | np.ndarray, device: torch.device) -> list[torch.Tensor]:
    """uint8 clips -> the same clips on ``device``: stacked on the CPU, pinned, one non-blocking copy per group
    of consecutive clips that share a frame size (videos of different sizes cannot be stacked)."""
    out: list[torch.Tensor] = []
    group: list[torch.Tensor] = []

    def flush() -> None:
        if group:
            host = torch.stack(group).pin_memory()
            out.extend(host.to(device, non_blocking=True).unbind(0))
            group.clear()

    for clip in clips:
        tensor = torch.as_tensor(clip)
        if group and tensor.shape != group[0].shape:
            flush()
        group.append(tensor)
    flush()
    return out
