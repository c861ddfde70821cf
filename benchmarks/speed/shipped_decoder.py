"""The decoder and preprocessing reskd-infer shipped before issue 8 (commit 10e0082), frozen as the
baseline ``benchmarks.speed.e2e`` measures the new ones against. Not used by the SDK.

Sequential decode up to the last sampled frame (seeking only in videos longer than 1500 frames),
full-resolution RGB frames, float short-side resize of the whole clip.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from reskd_infer.errors import UnreadableVideoError
from reskd_infer.video.decode import _estimate_frames, _frames, _open, _to_rgb, _video_stream
from reskd_infer.video.preprocess import center_crop, normalize, to_model_resolution
from reskd_infer.video.sampling import sample_indices

SEEK_MIN_FRAMES = 1500
SEEK_GAP = 250


def _decode_sequential(container, stream, path, wanted: set[int]) -> tuple[dict[int, np.ndarray], int, bool]:
    """Decode from the start; returns (frames by index, frames seen, reached end of file)."""
    got: dict[int, np.ndarray] = {}
    last = max(wanted)
    count = 0
    for frame in _frames(container, stream, path):
        if count in wanted:
            got[count] = _to_rgb(frame)
        count += 1
        if count > last:
            return got, count, False
    return got, count, True


def _decode_seeking(container, stream, path, wanted: list[int], fps: float) -> dict[int, np.ndarray] | None:
    """Seek to each distant frame by timestamp; None if timestamps are unusable (then decode sequentially)."""
    tb = stream.time_base
    start = stream.start_time or 0
    got: dict[int, np.ndarray] = {}
    position = -1  # index of the last decoded frame
    frames = None
    for target in wanted:
        if frames is None or target - position > SEEK_GAP:
            container.seek(start + int(target / fps / tb), stream=stream, backward=True, any_frame=False)
            frames = _frames(container, stream, path)
        for frame in frames:
            if frame.pts is None:
                return None
            position = round(float((frame.pts - start) * tb) * fps)
            if position >= target:
                got[target] = _to_rgb(frame)
                break
        else:
            return got if got else None
    return got


def read_clips(path, spec, rng=None) -> np.ndarray:
    """The frames ``spec`` samples from a video file: (num_clips, num_frames, H, W, 3) uint8 RGB."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        estimate, _ = _estimate_frames(container, stream)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        indices = sample_indices(max(estimate, 1), spec, rng)
        wanted = sorted(set(indices.ravel().tolist()))
        got = None
        if estimate > SEEK_MIN_FRAMES and fps > 0 and stream.time_base is not None:
            got = _decode_seeking(container, stream, path, wanted, fps)
            if got is not None and len(got) < len(wanted):
                got = None  # the header overstated the length: fall back to counting
            if got is None:
                container.seek(0)
        if got is None:
            got, count, at_end = _decode_sequential(container, stream, path, set(wanted))
            if len(got) < len(wanted):
                if count == 0:
                    raise UnreadableVideoError(path, "no frame could be decoded (empty or corrupt video stream)")
                # Fewer frames than the header claimed: sample again on the true count.
                indices = sample_indices(count, spec, rng)
                container.seek(0)
                got, _, _ = _decode_sequential(container, stream, path, set(indices.ravel().tolist()))
    shapes = {f.shape for f in got.values()}
    if len(shapes) > 1:
        raise UnreadableVideoError(path, f"frame size changes inside the video ({sorted(shapes)})")
    return np.stack([np.stack([got[i] for i in clip]) for clip in indices])


def shipped_batch(path, spec) -> torch.Tensor:
    """The shipped ``clips_to_batch(load_clips(path))``: (num_clips, 3, T, S, S)."""
    out = []
    for clip in read_clips(path, spec):
        x = torch.as_tensor(clip).permute(0, 3, 1, 2).float()
        h, w = x.shape[-2:]
        short = spec.resize_short
        size = (short, max(1, round(w * short / h))) if h <= w else (max(1, round(h * short / w)), short)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=spec.resize_antialias)
        crop = center_crop(x, spec.crop_size).transpose(0, 1).contiguous().unsqueeze(0)
        out.append(normalize(to_model_resolution(crop, spec.input_size), spec)[0])
    return torch.stack(out)
