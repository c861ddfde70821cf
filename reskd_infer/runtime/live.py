"""Live sources: a URL, capture device or pipe read continuously and predicted per sliding window.

Frames are decoded as they arrive; every ``stride_s`` seconds of stream time the last
``window_s`` seconds of frames are sampled and classified exactly as a file of those
frames would be (``Recognizer.predict`` on the frames), and the window is yielded at
once, so a caller prints it while the stream goes on. The stream ends when the source
ends, when ``max_windows`` windows were yielded, or when the caller stops iterating
(Ctrl-C in ``reskd-predict``). Memory holds one window of frames, each already reduced to the
spec's short side.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from reskd_infer.errors import UnreadableVideoError
from reskd_infer.runtime.results import StreamWindow
from reskd_infer.runtime.sources import is_capture_device
from reskd_infer.video.decode import FrameConverter, frame_converter

DEFAULT_TIMEOUT_S = 10.0  # open and read timeout: a dead stream ends with an error instead of a hang


def open_live(source: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> av.container.InputContainer:
    """Open a URL, a V4L2 device or ``-`` (standard input) with FFmpeg; :class:`UnreadableVideoError` if it cannot."""
    try:
        if source == "-":
            return av.open(sys.stdin.buffer, mode="r")
        if is_capture_device(source):
            return av.open(source, mode="r", format="v4l2")
        return av.open(source, mode="r", timeout=(timeout_s, timeout_s), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise UnreadableVideoError(source, f"cannot open stream ({exc.strerror or type(exc).__name__})") from None
    except OSError as exc:
        raise UnreadableVideoError(source, f"cannot open stream: {exc}") from None


def _timed_frames(container: av.container.InputContainer, source: str,
                  convert: FrameConverter) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds since the first frame, converted frame) as frames arrive; corrupt packets are skipped."""
    if not container.streams.video:
        raise UnreadableVideoError(source, "stream has no video")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    first, count = None, 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
            frames = packet.decode()
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue
        except (av.error.FFmpegError, OSError) as exc:
            raise UnreadableVideoError(source, f"stream broke off after {count} frames ({exc})") from None
        for frame in frames:
            t = frame.time if frame.time is not None else count / rate
            first = t if first is None else first
            count += 1
            yield t - first, convert(frame)


def predict_stream(recognizer: Any, source: str, window_s: float = 2.0, stride_s: float = 1.0, topk: int = 5,
                   max_windows: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[StreamWindow]:
    """Windows of a live source as they become ready (see the module doc)."""
    if window_s <= 0 or stride_s <= 0:
        raise ValueError("window_s and stride_s must be positive")
    emitted, start = 0, 0.0
    frames: deque[tuple[float, np.ndarray]] = deque()

    def window(end: float) -> StreamWindow | None:
        picked = [f for t, f in frames if start <= t < end]
        if not picked:  # a gap in the stream
            return None
        return StreamWindow(source, start, end, recognizer.predict(np.stack(picked), topk=topk), len(picked))

    # Upright RGB, resized to the spec's short side in uint8 as soon as it is decoded (as the file
    # decoder does): a window holds small frames, and the tensor is the one a file would give.
    convert = frame_converter(recognizer.spec.resize_short, recognizer.spec.resize_antialias)
    with open_live(source, timeout_s) as container:
        for t, frame in _timed_frames(container, source, convert):
            while t >= start + window_s:  # the window [start, start + window_s) is complete
                ready = window(start + window_s)
                if ready is not None:
                    yield ready
                    emitted += 1
                    if max_windows is not None and emitted >= max_windows:
                        return
                start += stride_s
                while frames and frames[0][0] < start:
                    frames.popleft()
            frames.append((t, frame))
    last = frames[-1][0] if frames else -1.0
    if frames and (emitted == 0 or last >= start + window_s - stride_s):  # frames no window has covered yet
        ready = window(last + 1e-3)
        if ready is not None:
            yield ready
