"""Every result the runtime returns, each with its one JSON form (``to_dict``).

* :class:`Prediction`: one class of a prediction (``Recognizer.predict`` returns a list of them).
* :class:`VideoResult`: one video of a stream (``Recognizer.predict_iter``); its ``to_dict`` is the
  record ``reskd-predict`` writes (JSON Lines, CSV), prints with ``--json`` and Ray Data turns into
  columns. With ``windows`` set it is a video predicted window by window.
* :class:`WindowPrediction` and :class:`Timeline`: ``Recognizer.predict_windows``' answer.
* :class:`StreamWindow`: one sliding window of a live source (``predict_stream``).
* :class:`RunSummary`: what one corpus run did.

Windows appear in two JSON forms, both kept as they were published: a :class:`Timeline`'s windows
carry ``start_s``/``end_s`` as computed, while the predictions file and the live stream write
``start``/``end`` rounded to the millisecond (:func:`window_span`, the one place that shape is built).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reskd_infer.errors import ReskdError, error_dict

STAGES = ("demux", "decode", "preprocess", "infer", "wait")  # the keys of VideoResult.timings


@dataclass(frozen=True)
class Prediction:
    """One class of a prediction: its name, index, and probability."""

    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, object]:
        """``{"label", "index", "score"}``."""
        return {"label": self.label, "index": self.index, "score": self.score}


def predictions_to_list(predictions: Sequence[Prediction]) -> list[dict[str, object]]:
    """The JSON form of a top-k list, best first."""
    return [p.to_dict() for p in predictions]


def window_span(start: float, end: float, predictions: Sequence[Prediction]) -> dict[str, object]:
    """A window as the predictions file and the live stream write it: seconds rounded to the millisecond."""
    return {"start": round(float(start), 3), "end": round(float(end), 3),
            "predictions": predictions_to_list(predictions)}


@dataclass(frozen=True)
class WindowPrediction:
    """The predictions of one time window of a long video (seconds from its first frame)."""

    start_s: float
    end_s: float
    predictions: list[Prediction]

    def to_dict(self) -> dict[str, object]:
        """``{"start_s", "end_s", "predictions"}`` (the form of :meth:`Timeline.to_dict`)."""
        return {"start_s": self.start_s, "end_s": self.end_s, "predictions": predictions_to_list(self.predictions)}


@dataclass(frozen=True)
class Timeline:
    """:meth:`Recognizer.predict_windows`' answer: per-window predictions in time order, and ``overall``
    (class probabilities averaged over all windows' clips)."""

    video: str
    windows: list[WindowPrediction]
    overall: list[Prediction]

    def to_dict(self) -> dict[str, object]:
        """``{"video", "overall", "windows"}``."""
        return {"video": self.video, "overall": predictions_to_list(self.overall),
                "windows": [w.to_dict() for w in self.windows]}


def video_name(video: Any) -> str:
    """How a result names its input: a path as a string, frames as their shape."""
    return str(video) if isinstance(video, (str, Path)) else f"<frames {np.shape(video)}>"


@dataclass
class VideoResult:
    """The outcome for one input video of :meth:`Recognizer.predict_iter` (or of a timeline run).

    Attributes:
        video: the input item exactly as given (a path, or frames).
        predictions: the top-k :class:`Prediction` list, best first; empty on error. For a video
            predicted window by window, the overall label (probabilities averaged over its windows).
        error: None, or the :class:`~reskd_infer.errors.ReskdError` that stopped this video
            (its message names the file and the problem).
        timings: milliseconds per stage: ``demux`` (open, packet pre-scan), ``decode`` (decode,
            RGB conversion, uint8 resize), ``preprocess`` (crop, normalize), ``infer`` (this video's
            share of its batches' engine time), ``wait`` (time the engine thread waited for this
            video's clips). Stages that did not run are 0. A timeline run records ``total`` only.
        windows: None, or the video's timeline (:class:`WindowPrediction` per window) when it was
            predicted window by window.
        probabilities: None, or the class probabilities (num_classes,) the predictions were taken from
            (averaged over the video's views); kept in memory only, never written.
        answered_by: None, or in a cascade which model answered: ``"small"`` or ``"large"``.
    """

    video: Any
    predictions: list[Prediction] = field(default_factory=list)
    error: ReskdError | None = None
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    windows: list[WindowPrediction] | None = None
    probabilities: np.ndarray | None = field(default=None, repr=False)
    answered_by: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        """The predictions-file record: ``video``, ``predictions``, ``error`` (None or ``{"type", "message"}``),
        ``timings`` (ms, rounded to the microsecond), ``windows`` when there is a timeline, and ``answered_by``
        when a cascade answered."""
        record: dict[str, object] = {
            "video": video_name(self.video),
            "predictions": predictions_to_list(self.predictions),
            "error": None if self.error is None else error_dict(self.error),
            "timings": {k: round(float(v), 3) for k, v in self.timings.items()},
        }
        if self.windows is not None:
            record["windows"] = [window_span(w.start_s, w.end_s, w.predictions) for w in self.windows]
        if self.answered_by is not None:
            record["answered_by"] = self.answered_by
        return record


@dataclass(frozen=True)
class StreamWindow:
    """One window of a live source: stream seconds [start, end) and its predictions."""

    video: str
    start: float
    end: float
    predictions: list[Prediction]
    num_frames: int

    def to_dict(self) -> dict[str, Any]:
        """``{"video", "start", "end", "predictions", "frames"}``."""
        return {"video": self.video, **window_span(self.start, self.end, self.predictions), "frames": self.num_frames}


@dataclass
class RunSummary:
    """What one corpus run did: counts and sustained rates."""

    total: int = 0  # videos this run was given (after sharding)
    skipped: int = 0  # already in the output file (resume)
    done: int = 0  # predicted now
    failed: int = 0  # of those, errors
    clips: int = 0
    seconds: float = 0.0

    @property
    def videos_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Counts, seconds and rates (rounded to three decimals)."""
        return {"total": self.total, "skipped": self.skipped, "done": self.done, "failed": self.failed,
                "clips": self.clips, "seconds": round(self.seconds, 3),
                "videos_per_s": round(self.videos_per_s, 3), "clips_per_s": round(self.clips_per_s, 3)}
