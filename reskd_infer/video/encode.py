"""Encoding frames as video files: real H.264 MP4s written reproducibly (used by the demo's clips,
``reskd-doctor`` and the tests)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 8
CRF = 18  # x264 quality: visually clean, small files


def rgb_to_yuv420p(img: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> planar yuv420p (H * 3 / 2, W), BT.601 limited range, chroma averaged over 2x2.

    Done here rather than by swscale, whose SIMD paths gave run-to-run differences (and so different
    H.264 streams) for the same frames.
    """
    x = img.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def sub(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).ravel()

    planes = np.concatenate([y.ravel(), sub(cb), sub(cr)]).reshape(h * 3 // 2, w)
    return np.clip(planes.round(), 0, 255).astype(np.uint8)


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = FPS, crf: int = CRF) -> Path:
    """Encode uint8 RGB frames (T, H, W, 3), H and W even, as H.264 yuv420p MP4 (single-threaded: reproducible)."""
    path = Path(path)
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {w}x{h}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "threads": "1"})
        stream.codec_context.thread_count = 1
        stream.height, stream.width = h, w
        stream.pix_fmt = "yuv420p"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(img), format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
