"""Decode exactly the frames a model needs from a video file, with PyAV.

* Sequential decoding stops as soon as the last needed frame is out; long videos
  seek to the keyframe before each distant target instead of decoding everything.
* Slice threading, not frame threading: PyAV's frame threading can deadlock when
  decoding stops before the end of the file.
* Rotation metadata (display matrix) is applied; any pixel format (10-bit, gray,
  alpha, palette) is converted to RGB uint8 by libswscale.
* Frame counts come from the container header when it has one, else from the
  duration; when the file ends earlier than claimed (lying headers) the true count
  is used and the frames are sampled again, so sampling never points past the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import av
import numpy as np

from ..errors import NoVideoStreamError, ReskdError, UnreadableVideoError, VideoError
from ..spec import ModelSpec
from .sampling import sample_indices

T = TypeVar("T")

DECODER_NAME = f"pyav-{av.__version__}/ffmpeg-cpu"  # recorded in provenance: decoders differ in colour
SEEK_MIN_FRAMES = 1500  # videos estimated longer than this may seek
SEEK_GAP = 250  # seek when the next needed frame is this many frames ahead


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (``num_frames`` may be an estimate)."""

    path: str
    width: int
    height: int
    num_frames: int
    fps: float
    codec: str
    pix_fmt: str
    frames_from_header: bool


def _open(path: str | Path) -> av.container.InputContainer:
    if is_url(path):
        return _open_url(str(path))
    path = Path(path)
    if not path.exists():
        raise UnreadableVideoError(path, "file not found")
    if path.is_dir():
        raise UnreadableVideoError(path, "is a directory, not a video file")
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise UnreadableVideoError(path, f"not a readable media file ({exc.strerror or type(exc).__name__})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableVideoError(path, f"cannot open: {exc}") from None


URL_TIMEOUT_S = 10.0  # open and read timeout for URLs: an unreachable server is an error, not a hang


def is_url(path: str | Path) -> bool:
    """True for ``scheme://...`` inputs, which FFmpeg opens itself (http, https, rtsp, ...)."""
    scheme, sep, _ = path.partition("://") if isinstance(path, str) else ("", "", "")
    return bool(sep) and scheme[:1].isalpha() and all(c.isalnum() or c in "+.-" for c in scheme)


def _open_url(url: str) -> av.container.InputContainer:
    try:
        return av.open(url, mode="r", metadata_errors="ignore", timeout=(URL_TIMEOUT_S, URL_TIMEOUT_S))
    except (av.error.FFmpegError, OSError) as exc:
        raise UnreadableVideoError(url, f"cannot open URL ({getattr(exc, 'strerror', None) or exc})") from None


def _video_stream(container: av.container.InputContainer, path: str | Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise NoVideoStreamError(path, f"has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"
    stream.thread_count = 0
    return stream


def _estimate_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[int, bool]:
    if stream.frames and stream.frames > 0:
        return int(stream.frames), True
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    seconds = 0.0
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / av.time_base
    return max(int(round(seconds * rate)), 0), False


def decode_guard(path: str | Path, read: Callable[[], T]) -> T:
    """Run ``read``; anything but a ReskdError escaping the decoder becomes an UnreadableVideoError naming
    the file. Damaged files make PyAV raise odd types (seek failing with EPERM, a stream without a codec
    context, fewer frames on a second pass); the fuzz tests (tests/fuzzing.py) found them."""
    try:
        return read()
    except ReskdError:
        raise
    except MemoryError:
        raise UnreadableVideoError(path, "too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file must not surface as a traceback
        raise UnreadableVideoError(path, f"corrupt video, decoding failed ({type(exc).__name__}: {exc})") from exc


def probe(path: str | Path) -> VideoInfo:
    """Read a video's header: size, frame count (or estimate), frame rate, codec."""
    return decode_guard(path, lambda: _probe(path))


def _probe(path: str | Path) -> VideoInfo:
    with _open(path) as container:
        stream = _video_stream(container, path)
        count, from_header = _estimate_frames(container, stream)
        ctx = stream.codec_context
        return VideoInfo(
            path=str(path),
            width=ctx.width,
            height=ctx.height,
            num_frames=count,
            fps=float(stream.average_rate or stream.guessed_rate or 0),
            codec=ctx.name,
            pix_fmt=ctx.format.name if ctx.format else "unknown",
            frames_from_header=from_header,
        )


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns to display upright
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def _frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: str | Path):
    """Decoded frames in order; a corrupt packet is skipped, not fatal."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue
        except av.error.FFmpegError as exc:
            raise UnreadableVideoError(path, f"decoding failed: {exc}") from None


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


def read_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed): (len, H, W, 3) uint8 RGB."""
    if len(indices) == 0:
        raise ValueError("no frame indices given")
    with _open(path) as container:
        stream = _video_stream(container, path)
        got, count, _ = _decode_sequential(container, stream, path, set(indices))
    missing = sorted(set(indices) - set(got))
    if missing:
        raise UnreadableVideoError(path, f"has {count} decodable frames; frame {missing[0]} does not exist")
    return np.stack([got[i] for i in indices])


def read_clips(path: str | Path, spec: ModelSpec, rng: np.random.Generator | None = None) -> np.ndarray:
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


def frames_from_array(frames: np.ndarray | Sequence[np.ndarray], spec: ModelSpec,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """Sample decoded frames (T, H, W, 3) uint8 as if they were a video file's frames."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise VideoError(None, "empty frame list")
        shapes = {np.shape(f) for f in frames}
        if len(shapes) != 1:
            raise VideoError(None, f"frames have different shapes: {sorted(shapes)}")
        frames = np.stack([np.asarray(f) for f in frames])
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise VideoError(None, f"frames must be uint8 RGB, got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise VideoError(None, f"frames must be shaped (T, H, W, 3) with T >= 1, got {frames.shape}")
    indices = sample_indices(frames.shape[0], spec, rng)
    return frames[indices]


def load_clips(video: str | Path | np.ndarray | Sequence[np.ndarray], spec: ModelSpec,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """A file path or in-memory frames -> the sampled clips (num_clips, T, H, W, 3) uint8."""
    if isinstance(video, (str, Path)):
        return decode_guard(video, lambda: read_clips(video, spec, rng))
    return frames_from_array(video, spec, rng)
