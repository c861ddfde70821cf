"""Annotated video: the input with its predicted label drawn on every frame (and, for a
timeline, the label of the window each frame falls in), encoded as H.264 MP4.

Drawing uses OpenCV (``opencv-python-headless``), encoding PyAV's libx264. Needs the
``annotate`` extra: ``pip install 'reskd-infer[annotate]'``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from reskd_infer.errors import BackendUnavailableError, ReskdError, UnreadableVideoError

BOX_COLOR = (0, 0, 0)
TEXT_COLOR = (255, 255, 255)
MARGIN = 4


def _cv2():
    try:
        import cv2
    except ImportError:
        raise BackendUnavailableError("--save-video needs OpenCV: pip install 'reskd-infer[annotate]'") from None
    return cv2


def label_text(predictions: Sequence[Any]) -> str:
    """``"run 0.91"`` for the best prediction (records' dicts or Prediction objects)."""
    if not predictions:
        return "?"
    best = predictions[0]
    label, score = (best["label"], best["score"]) if isinstance(best, dict) else (best.label, best.score)
    return f"{label} {score:.2f}"


def draw_label(frame: np.ndarray, text: str) -> tuple[int, int, int, int]:
    """Draw ``text`` white on a black box at the top left of an RGB frame, in place;
    returns the box (x0, y0, x1, y1)."""
    cv2 = _cv2()
    height = frame.shape[0]
    scale = max(0.4, height / 400)
    thickness = max(1, round(scale * 1.5))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    box = (0, 0, min(frame.shape[1], w + 2 * MARGIN), min(height, h + base + 2 * MARGIN))
    cv2.rectangle(frame, box[:2], (box[2] - 1, box[3] - 1), BOX_COLOR, thickness=-1)
    cv2.putText(frame, text, (MARGIN, MARGIN + h), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOR, thickness,
                cv2.LINE_AA)
    return box


def _text_at(t: float, record: dict[str, Any]) -> str:
    """The label for stream time ``t``: the latest window that covers it, else the video's label."""
    for window in reversed(record.get("windows") or []):
        if window["start"] <= t < window["end"]:
            return f"{label_text(window['predictions'])} [{window['start']:.1f}-{window['end']:.1f}s]"
    return label_text(record.get("predictions") or [])


def annotate_video(video: str | Path, record: dict[str, Any], output: str | Path, crf: int = 23) -> Path:
    """Write ``video`` with ``record``'s label (and window timeline) drawn on it to ``output`` (H.264 MP4).

    ``record`` is a predictions record (:func:`reskd_infer.runtime.writers.result_record`). The
    file is written beside ``output`` first and renamed when complete.
    """
    _cv2()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part.mp4")
    try:
        src = av.open(str(video))
    except (av.error.FFmpegError, OSError) as exc:
        raise UnreadableVideoError(video, f"cannot open for annotation ({exc})") from None
    with src, av.open(str(tmp), "w") as dst:
        if not src.streams.video:
            raise UnreadableVideoError(video, "has no video stream")
        stream_in = src.streams.video[0]
        rate = stream_in.average_rate or stream_in.guessed_rate or Fraction(25)
        stream_out = dst.add_stream("libx264", rate=rate)
        stream_out.pix_fmt = "yuv420p"
        stream_out.options = {"crf": str(crf), "preset": "veryfast"}
        first = None
        for index, frame in enumerate(src.decode(stream_in)):
            rgb = frame.to_ndarray(format="rgb24")
            rgb = np.ascontiguousarray(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2])  # x264 needs even sizes
            if first is None:
                stream_out.height, stream_out.width = rgb.shape[:2]
                first = frame.time if frame.time is not None else 0.0
            t = (frame.time - first) if frame.time is not None else index / float(rate)
            draw_label(rgb, _text_at(t, record))
            for packet in stream_out.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                dst.mux(packet)
        for packet in stream_out.encode():
            dst.mux(packet)
    if first is None:
        tmp.unlink(missing_ok=True)
        raise UnreadableVideoError(video, "no frame could be decoded for annotation")
    os.replace(tmp, output)
    return output


class VideoAnnotator:
    """Write an annotated copy of each predicted video into a folder (``reskd-predict --save-video DIR``).

    Files are named after the input (``clip.mp4`` -> ``DIR/clip.mp4``; a second input with
    the same name gets ``clip_2.mp4``). Failed videos are skipped.
    """

    def __init__(self, folder: str | Path):
        _cv2()
        self.folder = Path(folder)
        self.taken: set[str] = set()

    def _name(self, video: str) -> str:
        stem = Path(video).stem or "video"
        name, n = f"{stem}.mp4", 1
        while name in self.taken:
            n += 1
            name = f"{stem}_{n}.mp4"
        self.taken.add(name)
        return name

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("error") is not None:
            return
        try:
            path = annotate_video(record["video"], record, self.folder / self._name(record["video"]))
        except ReskdError as exc:  # the prediction stands; only its picture is missing
            warnings.warn(f"not annotated: {exc}", RuntimeWarning, stacklevel=2)
            return
        record["annotated"] = str(path)
