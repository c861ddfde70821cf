"""The single place where decoded frames become the model's input tensor.

The runtime (Recognizer) and the training evaluation transform both call
:func:`frames_to_tensor`, so the student is served exactly the tensor it was
evaluated on. The short-side resize is done in uint8 (:func:`resize_frames`): the
decoder applies it to each frame right after decoding, and :func:`crop_frames`
applies the same function to frames that arrive at another size, so both routes
give identical tensors and no full-resolution float tensor is ever made. The rest
(crop, down-sampling, normalization) runs on any torch device. For a GPU backend,
:func:`clips_to_batch` stacks the (already resized) uint8 clips on the CPU, pins them and
uploads them in one copy, then crops, down-samples and normalizes on the GPU; frames
decoded on the GPU (``video/gpu_decode.py``) never leave it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from reskd_infer.spec import ModelSpec


def resize_short_side(x: torch.Tensor, short: int, antialias: bool = True) -> torch.Tensor:
    """Bilinearly resize (..., H, W) float frames so that min(H, W) == short, keeping aspect."""
    h, w = x.shape[-2:]
    if min(h, w) == short:
        return x
    return F.interpolate(x, size=_resized_size(h, w, short), mode="bilinear", align_corners=False,
                         antialias=antialias)


def _resized_size(h: int, w: int, short: int) -> tuple[int, int]:
    if h <= w:
        return short, max(1, round(w * short / h))
    return max(1, round(h * short / w)), short


def resize_frames(frames: np.ndarray, short: int, antialias: bool = True) -> np.ndarray:
    """Resize uint8 RGB frames (..., H, W, 3) so that min(H, W) == short, keeping aspect: bilinear
    (antialiased when shrinking if ``antialias``), computed in uint8 by torch's CPU kernel.

    Within one grey level of the float resize; one frame at a time or many at once give
    identical pixels (the decoder resizes frame by frame, :func:`crop_frames` by clip).
    """
    h, w = frames.shape[-3:-1]
    if min(h, w) == short:
        return frames
    lead = frames.shape[:-3]
    x = torch.from_numpy(np.ascontiguousarray(frames)).reshape(-1, h, w, 3).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=_resized_size(h, w, short), mode="bilinear", align_corners=False,
                      antialias=antialias)
    return y.permute(0, 2, 3, 1).contiguous().numpy().reshape(*lead, *y.shape[-2:], 3)


def resize_frames_on_device(frames: torch.Tensor, short: int, antialias: bool = True) -> torch.Tensor:
    """uint8 (N, 3, H, W) on any device -> uint8 (N, 3, h, w) with min(h, w) == short (bilinear,
    antialiased when shrinking), rounded back to uint8 like the CPU kernel (within one level of it)."""
    h, w = frames.shape[-2:]
    if min(h, w) == short:
        return frames
    size = (short, max(1, round(w * short / h))) if h <= w else (max(1, round(h * short / w)), short)
    y = F.interpolate(frames.float(), size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return y.round_().clamp_(0, 255).to(torch.uint8)


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


def _resized_uint8(frames: torch.Tensor | np.ndarray, spec: ModelSpec) -> torch.Tensor:
    """uint8 RGB (T, H, W, 3) -> uint8 (T, 3, H', W') with the short side at ``spec.resize_short``: the CPU
    uint8 kernel (a no-op for decoder output), or for frames already on a GPU the device resize."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be shaped (T, H, W, 3), got {tuple(frames.shape)}")
    if isinstance(frames, torch.Tensor) and frames.device.type != "cpu":  # GPU-decoded: no host copy
        return resize_frames_on_device(frames.permute(0, 3, 1, 2), spec.resize_short, spec.resize_antialias)
    if isinstance(frames, torch.Tensor):
        frames = frames.numpy()
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
    return torch.from_numpy(resize_frames(frames, spec.resize_short, spec.resize_antialias)).permute(0, 3, 1, 2)


def view_crops(frames: torch.Tensor | np.ndarray, spec: ModelSpec,
               device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 RGB frames (T, H, W, 3) -> the ``spec.num_crops`` test crops (V, 3, T, crop_size, crop_size),
    still 0..255: short side resized (uint8) to ``spec.resize_short``, then :func:`crop_boxes`, then float."""
    x = _resized_uint8(frames, spec)
    size = spec.crop_size
    crops = torch.stack([x[..., top : top + size, left : left + size]
                         for top, left in crop_boxes(*x.shape[-2:], size, spec.num_crops)])
    if device is not None:
        crops = crops.to(device, non_blocking=True)
    return crops.transpose(1, 2).float().contiguous()


def crop_frames(frames: torch.Tensor | np.ndarray, spec: ModelSpec, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 RGB frames (T, H, W, 3) -> float centre crop (3, T, crop_size, crop_size), still 0..255.

    Short side resized to ``spec.resize_short`` in uint8 (a no-op for frames the decoder
    already resized), centre-cropped to ``spec.crop_size`` while still uint8, then made float.
    Frames with different sizes are not allowed here (decode one video at a time).
    """
    x = _resized_uint8(frames, spec)
    top, left = crop_boxes(*x.shape[-2:], spec.crop_size)[0]
    x = x[..., top : top + spec.crop_size, left : left + spec.crop_size]
    if device is not None:
        x = x.to(device, non_blocking=True)
    return x.transpose(0, 1).float().contiguous()  # (3, T, S, S)


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

    For a CUDA ``device`` the uint8 clips, resized on the CPU as everywhere (a no-op for decoder
    output), go up in one pinned copy per run of same-sized clips (clips decoded on the GPU are
    already there); the per-clip arithmetic is the same on every device.
    """
    target = torch.device(device) if device is not None else None
    if target is not None and target.type == "cuda":
        if not (isinstance(clips, torch.Tensor) and clips.is_cuda):
            resized = [resize_frames(np.asarray(c), spec.resize_short, spec.resize_antialias) for c in clips]
            clips = upload_clips(resized, target)
        target = None
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
