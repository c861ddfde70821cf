"""Which frames of a video a model sees: deterministic in evaluation, random in training.

Padding policy for clips shorter than needed (documented in docs/video.md):
* segments (TSN): with fewer frames than segments, segment i takes frame
  floor(i * n / num_segments), so frames repeat in order;
* dense (3D): indices past the last frame wrap around to the start (loop),
  as mmaction2's ``SampleFrames`` does.
"""

from __future__ import annotations

import numpy as np

from reskd_infer.spec import SAMPLING_DENSE, ModelSpec


def segment_indices(
    num_total: int, num_segments: int, num_clips: int = 1, rng: np.random.Generator | None = None
) -> np.ndarray:
    """TSN sampling: one frame from each of ``num_segments`` equal segments.

    Evaluation (``rng=None``) takes each segment's middle frame; with several
    clips the offset inside the segment moves evenly (clip k of K at (k + 0.5) / K).
    Training (``rng`` given) takes a random frame per segment. Returns
    ``(num_clips, num_segments)`` int64 indices.
    """
    if num_total < 1:
        raise ValueError("a video needs at least one frame")
    if num_total < num_segments:
        base = np.floor(np.arange(num_segments) * num_total / num_segments).astype(np.int64)
        return np.tile(base, (num_clips, 1))
    seg_len = num_total / num_segments
    starts = np.arange(num_segments) * seg_len
    if rng is not None:
        offsets = rng.random((num_clips, num_segments)) * seg_len
    else:
        offsets = np.tile(((np.arange(num_clips) + 0.5) / num_clips)[:, None] * seg_len, (1, num_segments))
    idx = np.floor(starts[None, :] + offsets).astype(np.int64)
    return np.clip(idx, 0, num_total - 1)


def dense_indices(
    num_total: int, clip_len: int, interval: int, num_clips: int = 1, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Dense sampling: ``clip_len`` frames every ``interval`` frames per clip.

    Evaluation spreads the ``num_clips`` clip starts evenly (one clip: centred);
    training picks a random start. Indices past the end loop to the start.
    Returns ``(num_clips, clip_len)`` int64 indices.
    """
    if num_total < 1:
        raise ValueError("a video needs at least one frame")
    span = clip_len * interval
    room = max(num_total - span, 0)
    if rng is not None:
        starts = rng.integers(0, room + 1, size=num_clips)
    elif num_clips == 1:
        starts = np.array([room // 2])
    else:
        starts = np.floor(np.arange(num_clips) * (room / (num_clips - 1))).astype(np.int64) if room else np.zeros(num_clips, np.int64)
    idx = starts[:, None] + np.arange(clip_len)[None, :] * interval
    return (idx % num_total).astype(np.int64)


def keyframe_segment_indices(num_total: int, keyframes: np.ndarray, num_segments: int, num_clips: int = 1,
                             rng: np.random.Generator | None = None) -> np.ndarray:
    """Decode-aware TSN sampling: in each segment, the keyframe nearest the frame
    :func:`segment_indices` would take (in evaluation the segment's centre, in training a
    random frame), or that frame itself when the segment holds no keyframe.

    A keyframe decodes alone (no earlier frame is needed), so a clip of keyframes costs one
    frame's decode per segment. Returns ``(num_clips, num_segments)`` int64 indices.
    """
    exact = segment_indices(num_total, num_segments, num_clips, rng)
    keys = np.asarray(keyframes, dtype=np.int64)
    if num_total < num_segments or len(keys) == 0:
        return exact
    bounds = np.floor(np.arange(num_segments + 1) * num_total / num_segments).astype(np.int64)
    out = exact.copy()
    for s in range(num_segments):
        inside = keys[(keys >= bounds[s]) & (keys < bounds[s + 1])]
        if len(inside):
            nearest = np.abs(inside[None, :] - exact[:, s : s + 1]).argmin(axis=1)
            out[:, s] = inside[nearest]
    return out


def sample_indices(num_total: int, spec: ModelSpec, rng: np.random.Generator | None = None,
                   keyframes: np.ndarray | None = None) -> np.ndarray:
    """The frame indices ``spec`` prescribes for a video of ``num_total`` frames: (num_clips, num_frames).

    ``keyframes`` (display indices from the decoder's packet pre-scan) are used only when
    ``spec.keyframe_sampling`` is on; without them (in-memory frames) sampling is exact.
    """
    if spec.sampling == SAMPLING_DENSE:
        return dense_indices(num_total, spec.num_frames, spec.frame_interval, spec.num_clips, rng)
    if spec.keyframe_sampling and keyframes is not None:
        return keyframe_segment_indices(num_total, keyframes, spec.num_frames, spec.num_clips, rng)
    return segment_indices(num_total, spec.num_frames, spec.num_clips, rng)
