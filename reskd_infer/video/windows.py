"""Long videos as a timeline: clips sampled inside sliding time windows, decoded in one forward pass.

Windows start every ``stride_s`` seconds and last ``window_s``; one more window is aligned to the
end when the last regular one stops short of it, so every frame lies in at least one window. Inside
a window the spec samples its clips exactly as it would in a video holding only that window's frames.
Frames are decoded once, in order (keyframe-aware seeks skip what no window needs), and a window's
clips are handed out as soon as its last frame is decoded; frames no open window needs are dropped,
so memory holds at most the windows that overlap the decoding position.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reskd_infer.errors import UnreadableVideoError
from reskd_infer.spec import ModelSpec
from reskd_infer.video.decode import FrameIndex, frame_converter, iter_frames, open_video, scan_packets
from reskd_infer.video.sampling import sample_indices


@dataclass(frozen=True)
class Window:
    """One window: its time span (seconds from the first frame) and the frames its clips use."""

    start_s: float
    end_s: float
    indices: np.ndarray  # (num_clips, num_frames) display indices into the video


def window_starts(duration_s: float, window_s: float, stride_s: float) -> list[float]:
    """Start times covering ``[0, duration_s]``: every ``stride_s``, plus one aligned to the end if needed."""
    if window_s <= 0 or stride_s <= 0:
        raise ValueError("window_s and stride_s must be positive")
    if duration_s <= window_s:
        return [0.0]
    last = duration_s - window_s
    starts = list(np.arange(0.0, last + 1e-9, stride_s))
    if starts[-1] < last - 1e-9:
        starts.append(last)
    return [float(s) for s in starts]


def plan_windows(index: FrameIndex, spec: ModelSpec, window_s: float, stride_s: float) -> list[Window]:
    """The windows of a video and the frames each samples (as the spec would in the window alone)."""
    times = np.asarray(index.seconds(np.arange(index.num_frames)), dtype=np.float64)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    duration = float(times[-1]) + step
    windows = []
    for start in window_starts(duration, window_s, stride_s):
        end = min(start + window_s, duration)
        first, stop = np.searchsorted(times, [start - 1e-9, end - 1e-9])
        first, stop = int(first), max(int(stop), int(first) + 1)  # never empty
        stop = min(stop, index.num_frames)
        first = min(first, stop - 1)
        keys = index.keyframes[(index.keyframes >= first) & (index.keyframes < stop)] - first
        local = sample_indices(stop - first, spec, None, keys)
        windows.append(Window(start, end, local + first))
    return windows


def iter_window_clips(path: str | Path, spec: ModelSpec, window_s: float,
                      stride_s: float) -> Iterator[tuple[Window, np.ndarray]]:
    """Yield ``(window, clips uint8 (num_clips, T, H, W, 3))`` in time order from one forward decode."""
    with open_video(path) as (container, stream):
        index = scan_packets(container, stream)
    if index.num_frames == 0:
        raise UnreadableVideoError(path, "no video frames (empty video stream)")
    windows = plan_windows(index, spec, window_s, stride_s)
    last_use: dict[int, int] = {}  # frame -> last window that needs it
    for w, window in enumerate(windows):
        for i in window.indices.ravel().tolist():
            last_use[i] = w
    wanted = sorted(last_use)
    frames: dict[int, np.ndarray] = {}
    next_window = 0
    convert = frame_converter(spec.resize_short, spec.resize_antialias)
    for i, frame in iter_frames(path, index, wanted, convert):
        frames[i] = frame
        while next_window < len(windows) and int(windows[next_window].indices.max()) <= i:
            window = windows[next_window]
            yield window, np.stack([np.stack([frames[j] for j in clip]) for clip in window.indices])
            next_window += 1
            for j in [j for j in frames if last_use[j] < next_window]:
                del frames[j]  # no later window uses it
    if next_window < len(windows):
        raise UnreadableVideoError(path, f"decoding ended before frame {int(windows[next_window].indices.max())}")
