"""Write real encoded test videos with PyAV (shared by the test modules)."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np

CODECS = [  # (file name, encoder, pixel format, (height, width)): every encoding the tests write
    ("h264.mp4", "libx264", "yuv420p", (240, 320)),
    ("vp9_odd.webm", "libvpx-vp9", "yuv420p", (239, 321)),
    ("mjpeg.avi", "mjpeg", "yuvj420p", (239, 321)),
    ("gray.mkv", "ffv1", "gray", (239, 321)),
    ("ten_bit.mkv", "libx264", "yuv420p10le", (120, 160)),
    ("h264_444.mp4", "libx264", "yuv444p", (121, 161)),
    ("alpha.mov", "qtrle", "argb", (61, 83)),
]

LEVEL_STEP = 8  # frame i is painted with grey level LEVEL_STEP * (i + 1), so decoded frames are identifiable


def level_frames(n: int, height: int, width: int) -> np.ndarray:
    """n flat frames whose grey level encodes their index (exact enough through lossy codecs)."""
    levels = (np.arange(n) % (256 // LEVEL_STEP - 1) + 1) * LEVEL_STEP
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).astype(np.uint8).copy()


def frame_index(frame: np.ndarray) -> int:
    """Recover the index a level frame was painted with."""
    return int(round(float(frame.mean()) / LEVEL_STEP)) - 1


def textured_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """n frames of a moving smooth pattern (not flat, so resizing and cropping matter)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.random(3) * 6.28
    out = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        for c in range(3):
            out[t, :, :, c] = 127 + 120 * np.sin(xx / (7 + 3 * c) + yy / 11 + phase[c] + t * 0.3)
    return out


def write_video(path: str | Path, frames: np.ndarray, codec: str = "libx264", pix_fmt: str = "yuv420p",
                rate: int = 8, gop: int | None = None) -> Path:
    """Encode uint8 RGB frames (T, H, W, 3) into ``path`` with PyAV."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if gop:
            stream.codec_context.gop_size = gop
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if pix_fmt not in ("yuv420p", "rgb24"):
                frame = frame.reformat(format=pix_fmt)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def remux_to_ts(source: str | Path, path: str | Path) -> Path:
    """Copy a file's video packets into MPEG-TS, the container live HTTP and UDP streams use."""
    path = Path(path)
    with av.open(str(source)) as src, av.open(str(path), "w", format="mpegts") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        for packet in src.demux(stream_in):
            if packet.dts is not None:
                packet.stream = stream_out
                dst.mux(packet)
    return path


def set_mp4_rotation(path: str | Path, matrix: tuple[int, ...]) -> None:
    """Rewrite the display matrix of an MP4's video track header (tkhd), as phones do for portrait video."""
    data = bytearray(Path(path).read_bytes())
    at = data.find(b"tkhd")
    offset = at + 4 + 40  # version/flags, times, track id, duration, layer, volume: 40 bytes in version 0
    assert data[at + 4] == 0, "expected a version-0 tkhd box"
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    Path(path).write_bytes(bytes(data))


ROTATE_CLOCKWISE_90 = (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
ROTATE_180 = (-0x10000, 0, 0, 0, -0x10000, 0, 0, 0, 0x40000000)


def write_audio_only(path: str | Path, seconds: float = 0.2) -> Path:
    """A file with an audio stream and no video stream."""
    path = Path(path)
    rate = 8000
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        samples = (np.sin(np.arange(int(rate * seconds)) / 5) * 1000).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_vfr_video(path: str | Path, frames: np.ndarray, times_ms: list[int], codec: str = "libx264") -> Path:
    """Encode frames at irregular presentation times (variable frame rate), in milliseconds; Matroska
    stores no frame count, so readers must count."""
    from fractions import Fraction

    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=30)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for img, ms in zip(frames, times_ms, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def full_decode(path, upto=None, keep=None):
    """Every frame in decode output order (only ``keep`` indices converted, upright RGB), as a reader
    without seeking or pre-scan would get them: the reference the fast decoder is compared with."""
    from reskd_infer.video.decode import _to_rgb

    out = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if keep is None or i in keep:
                out[i] = _to_rgb(frame)
            if upto is not None and i + 1 >= upto:
                break
    return out
