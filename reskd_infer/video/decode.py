"""Decode exactly the frames a model needs from a video file, with PyAV.

* A packet pre-scan (demuxing only, no decoding) gives every frame's presentation
  timestamp and the keyframes. Frames are numbered in display order, so the frame
  count is the true one even when the container stores none (Matroska, variable
  frame rate) or lies, and sampling points at the frames a full decode would give.
* Keyframe-aware seeking, for every video: the decoder jumps to the keyframe before
  the next wanted frame only when that keyframe lies beyond the current position;
  otherwise it keeps decoding. Decoded frames are identified by their timestamp,
  so the frames returned are exactly those of a full sequential decode (the tests
  prove it on every encoding they write, the real clips and a 10-minute film).
  Anything unexpected (missing timestamps, a seek landing past its target) falls
  back to a plain sequential decode that counts frames.
* Each wanted frame is converted to RGB and, when a target short side is given,
  resized in uint8 right away (:func:`~reskd_infer.video.preprocess.resize_frames`),
  so no full-resolution frame is kept and no full-resolution float tensor exists.
* Slice threading, not frame threading: frame threading can deadlock when decoding
  stops before the end of the file.
* Rotation metadata (display matrix) is applied; any pixel format (10-bit, gray,
  alpha, palette) is converted to RGB uint8 by libswscale.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from reskd_infer.errors import NoVideoStreamError, ReskdError, UnreadableVideoError, VideoError
from reskd_infer.spec import ModelSpec
from reskd_infer.video.preprocess import resize_frames
from reskd_infer.video.remote import is_url, open_url
from reskd_infer.video.sampling import sample_indices

T = TypeVar("T")

DECODER_NAME = f"pyav-{av.__version__}/ffmpeg-cpu"  # recorded in provenance: decoders differ in colour
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".flv", ".wmv", ".3gp", ".ogv", ".mxf", ".y4m", ".gif",
})

FrameConverter = Callable[[av.VideoFrame], np.ndarray]


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


@dataclass(frozen=True)
class FrameIndex:
    """A packet pre-scan: frames in display order and where decoding may start.

    ``pts[i]`` is frame i's presentation timestamp (sorted); ``keyframes`` holds the
    display indices of keyframes and ``seek_ts`` the timestamp to seek to for each: its pts
    (seeking to its dts instead lands a whole GOP early in MP4s with B-frames, measured).
    ``exact`` is False when timestamps are missing or repeated: then frames can only
    be counted by decoding.
    """

    pts: np.ndarray
    keyframes: np.ndarray
    seek_ts: np.ndarray
    exact: bool
    time_base: float
    start_time: float

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    def keyframe_at_or_before(self, index: int) -> int:
        """Position in ``keyframes`` of the last keyframe at or before frame ``index`` (-1: none)."""
        return int(np.searchsorted(self.keyframes, index, side="right")) - 1

    def seconds(self, index: int | np.ndarray) -> float | np.ndarray:
        """Presentation time of frame(s) ``index`` in seconds from the stream start."""
        return (self.pts[index] - self.start_time) * self.time_base


def _open(path: str | Path) -> av.container.InputContainer:
    if is_url(path):
        return open_url(str(path))
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


def _video_stream(container: av.container.InputContainer, path: str | Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise NoVideoStreamError(path, f"has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"
    stream.thread_count = 0
    return stream


@contextmanager
def open_video(path: str | Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """``(container, first video stream)`` set up for decoding (slice threads); closed on exit."""
    with _open(path) as container:
        yield container, _video_stream(container, path)


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
    with open_video(path) as (container, stream):
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


def scan_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> FrameIndex:
    """Demux (not decode) every packet of ``stream``; the container must then be rewound."""
    pts: list[int] = []
    keys: list[tuple[int, int]] = []  # (pts, seek timestamp)
    missing = False
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:
            continue  # flush packets; samples an edit list cuts away produce no frame
        if packet.pts is None:
            missing = True
            pts.append(len(pts))
            continue
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append((packet.pts, packet.pts))  # (display position, seek target)
    order = np.sort(np.asarray(pts, dtype=np.int64))
    exact = not missing and len(np.unique(order)) == len(order)
    keys.sort()
    key_index = np.searchsorted(order, [k for k, _ in keys]) if keys else np.zeros(0, np.int64)
    time_base = float(stream.time_base) if stream.time_base else 0.0
    start = float(order[0]) if len(order) else 0.0
    return FrameIndex(order, np.asarray(key_index, np.int64), np.asarray([s for _, s in keys], np.int64),
                      exact and time_base > 0, time_base, start)


_CONVERTERS = threading.local()


def _rgb_converter() -> VideoReformatter:
    """This process's and this thread's own frame converter.

    Why not ``frame.to_ndarray``: PyAV 18.1.1 caches one converter per thread, and its swscale context scales on
    a pool of slice threads. A DataLoader worker forked after its parent converted a frame inherits that context
    without the threads, and its first conversion waits for them for ever (a CI hang; the test is
    ``test_a_worker_forked_after_the_parent_decoded_does_not_hang``). A converter made in this process and used
    with ``threads=1`` has neither problem; each decoding worker is one thread anyway.
    """
    owner = getattr(_CONVERTERS, "owner", None)
    if owner is None or owner[0] != os.getpid():  # new thread, or inherited through fork
        owner = (os.getpid(), VideoReformatter())
        _CONVERTERS.owner = owner
    return owner[1]


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as an (H, W, 3) RGB uint8 array, converted on the calling thread."""
    converter = _rgb_converter()
    try:
        rgb = converter.reformat(frame, format="rgb24", threads=1)
    except TypeError:  # a PyAV without the threads option (its swscale has no slice threads either)
        rgb = converter.reformat(frame, format="rgb24")
    plane = rgb.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(rgb.height, plane.line_size)
    return np.ascontiguousarray(rows[:, : rgb.width * 3]).reshape(rgb.height, rgb.width, 3)


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    rgb = frame_to_rgb(frame)
    turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns to display upright
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def frame_converter(short_side: int | None = None, antialias: bool = True) -> FrameConverter:
    """Decoded frame -> upright RGB uint8, resized to ``short_side`` (uint8, right after decoding) if given."""
    if short_side is None:
        return _to_rgb
    return lambda frame: resize_frames(_to_rgb(frame), short_side, antialias)


def _frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: str | Path):
    """Decoded frames in order; a corrupt packet is skipped, not fatal."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue
        except av.error.FFmpegError as exc:
            raise UnreadableVideoError(path, f"decoding failed: {exc}") from None


def _decode_sequential(container, stream, path, wanted: set[int],
                       convert: FrameConverter) -> tuple[dict[int, np.ndarray], int]:
    """Decode from the current position (the start), counting frames; returns (frames by index, frames seen)."""
    got: dict[int, np.ndarray] = {}
    last = max(wanted)
    count = 0
    for frame in _frames(container, stream, path):
        if count in wanted:
            got[count] = convert(frame)
        count += 1
        if count > last:
            break
    return got, count


class _StreamMismatch(Exception):
    """The stream did not behave as the packet pre-scan said (internal: triggers the sequential fallback)."""


def _iter_indexed(container, stream, path, index: FrameIndex, wanted: list[int],
                  convert: FrameConverter) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for the sorted ``wanted`` frames, seeking to a keyframe only when one lies
    between the current position and the next wanted frame. Raises :class:`_StreamMismatch` when a
    timestamp is unknown or a target is never produced."""
    position_of = {int(p): i for i, p in enumerate(index.pts)}
    frames = _frames(container, stream, path)  # positioned at the start by the caller
    position = -1  # display index of the last frame decoded
    ctx = stream.codec_context
    skipping = False  # non-keyframes were skipped since the last seek: later frames lack their references
    keys = [index.keyframe_at_or_before(t) for t in wanted]
    for n, (target, key) in enumerate(zip(wanted, keys, strict=True)):
        # A keyframe alone in its GOP among the targets decodes without the frames around it.
        on_key = key >= 0 and index.keyframes[key] == target and (n + 1 == len(wanted) or keys[n + 1] != key)
        if key >= 0 and (index.keyframes[key] > position + 1 or (skipping and not on_key)):
            container.seek(int(index.seek_ts[key]), stream=stream, backward=True, any_frame=False)
            frames = _frames(container, stream, path)
            skipping = False
        # A keyframe decodes alone: up to it, the decoder may skip every frame that is not a keyframe.
        skipping = skipping or on_key
        ctx.skip_frame = "NONKEY" if on_key else "DEFAULT"
        for frame in frames:
            position = position_of.get(frame.pts, -2) if frame.pts is not None else -2
            if position == -2 or position > target:
                raise _StreamMismatch(target)
            if position == target:
                yield target, convert(frame)
                break
        else:
            raise _StreamMismatch(target)  # the stream ended before the target


def _decode_indexed(container, stream, path, index: FrameIndex, wanted: list[int],
                    convert: FrameConverter) -> dict[int, np.ndarray] | None:
    """:func:`_iter_indexed` collected; None when the stream does not behave as the pre-scan said."""
    try:
        return dict(_iter_indexed(container, stream, path, index, wanted, convert))
    except _StreamMismatch:
        return None


def iter_frames(path: str | Path, index: FrameIndex, wanted: list[int],
                convert: FrameConverter) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for the sorted ``wanted`` display indices in one forward pass (keyframe-aware
    seeks), holding no frame longer than it takes to yield it. If the stream disagrees with the pre-scan,
    the rest is decoded sequentially, counting frames."""
    done = -1
    if index.exact and index.num_frames:
        try:
            with open_video(path) as (container, stream):
                for i, frame in _iter_indexed(container, stream, path, index, wanted, convert):
                    done = i
                    yield i, frame
            return
        except _StreamMismatch:
            pass
    rest = set(i for i in wanted if i > done)
    if not rest:
        return
    last = max(rest)
    with open_video(path) as (container, stream):
        for count, frame in enumerate(_frames(container, stream, path)):
            if count in rest:
                yield count, convert(frame)
            if count >= last:
                return


def _unseekable(index: FrameIndex) -> FrameIndex:
    return FrameIndex(index.pts, index.keyframes, index.seek_ts, False, index.time_base, index.start_time)


def _decode_wanted(path, index: FrameIndex, wanted: list[int], convert: FrameConverter,
                   container=None, stream=None) -> tuple[dict[int, np.ndarray], int]:
    """The wanted frames by index and the number of frames known to exist: the pre-scan's, or a count by
    decoding from the start (a fresh container) when the pre-scan or the seeks cannot be trusted."""
    if index.exact and index.num_frames and container is not None:
        try:
            container.seek(int(index.seek_ts[0]) if len(index.seek_ts) else 0, stream=stream, backward=True)
        except av.error.FFmpegError:  # not seekable (a live URL): decode once from a fresh start instead
            index = _unseekable(index)
        got = _decode_indexed(container, stream, path, index, wanted, convert) if index.exact else None
        if got is not None:
            return got, index.num_frames
    with open_video(path) as (fresh, fresh_stream):
        return _decode_sequential(fresh, fresh_stream, path, set(wanted), convert)


def read_frames(path: str | Path, indices: Sequence[int], short_side: int | None = None,
                antialias: bool = True) -> np.ndarray:
    """Decode the frames at ``indices`` (display order; any order, repeats allowed):
    (len, H, W, 3) uint8 RGB, resized in uint8 to ``short_side`` when given."""
    if len(indices) == 0:
        raise ValueError("no frame indices given")
    wanted = sorted(set(int(i) for i in indices))
    convert = frame_converter(short_side, antialias)
    with open_video(path) as (container, stream):
        index = scan_packets(container, stream)
        got, count = _decode_wanted(path, index, wanted, convert, container, stream)
    missing = [i for i in wanted if i not in got]
    if missing:
        raise UnreadableVideoError(path, f"has {count} decodable frames; frame {missing[0]} does not exist")
    return _stack(path, got, np.asarray(indices))


def _stack(path, got: dict[int, np.ndarray], indices: np.ndarray) -> np.ndarray:
    shapes = {f.shape for f in got.values()}
    if len(shapes) > 1:
        raise UnreadableVideoError(path, f"frame size changes inside the video ({sorted(shapes)})")
    flat = np.stack([got[int(i)] for i in indices.ravel()])
    return flat.reshape(*indices.shape, *flat.shape[1:])


def read_clips(path: str | Path, spec: ModelSpec, rng: np.random.Generator | None = None,
               timings: dict[str, float] | None = None) -> np.ndarray:
    """The frames ``spec`` samples from a video file, short side already resized to ``spec.resize_short``:
    (num_clips, num_frames, H, W, 3) uint8 RGB. ``timings`` (if given) receives the milliseconds spent
    demuxing (open and packet pre-scan) and decoding (decode, convert, resize)."""
    convert = frame_converter(spec.resize_short, spec.resize_antialias)
    start = time.perf_counter()
    with open_video(path) as (container, stream):
        index = scan_packets(container, stream)
        scanned = time.perf_counter()
        indices = sample_indices(max(index.num_frames, 1), spec, rng, index.keyframes if index.exact else None)
        got, count = _decode_wanted(path, index, sorted(set(indices.ravel().tolist())), convert, container, stream)
    if len(got) < len(set(indices.ravel().tolist())):
        if count == 0:
            raise UnreadableVideoError(path, "no frame could be decoded (empty or corrupt video stream)")
        # Fewer decodable frames than packets (corrupt data): sample again on the true count.
        indices = sample_indices(count, spec, rng)
        got, _ = _decode_wanted(path, index, sorted(set(indices.ravel().tolist())), convert)
    if timings is not None:
        timings["demux"] = (scanned - start) * 1000.0
        timings["decode"] = (time.perf_counter() - scanned) * 1000.0
    return _stack(path, got, indices)


def frames_from_array(frames: np.ndarray | Sequence[np.ndarray], spec: ModelSpec,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """Sample decoded frames (T, H, W, 3) uint8 as if they were a video file's frames (and resize them
    as the decoder does)."""
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
    wanted = np.unique(indices)
    resized = dict(zip(wanted.tolist(), resize_frames(frames[wanted], spec.resize_short, spec.resize_antialias),
                       strict=True))
    return np.stack([np.stack([resized[int(i)] for i in clip]) for clip in indices])
