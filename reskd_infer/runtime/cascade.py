"""A cascade of two models: the small one answers every clip, the large one only the clips the small one is
unsure of (its top-1 margin, top-1 minus top-2 probability, below a threshold).

``Cascade(small, large, threshold=0.1).predict_iter(videos)`` streams one :class:`VideoResult` per video, in
input order, with bounded read-ahead (the :meth:`Recognizer.predict_iter` contract: the small model's clips are
batched across videos by the same :class:`~reskd_infer.runtime.batching.ClipStream`), each saying which model
answered (``answered_by``: ``"small"`` or ``"large"``). Threshold 0 is the small model alone, threshold 1 the
large model alone, result for result.

Decoding (``decode``):

* ``"once"``: the frames are decoded once, as the model with the larger short side samples them, the small
  model's batch is made from them and they are kept with the video until the small model has answered; an
  escalated clip's large batch is made from the same frames (no second decode). It needs both models to
  sample the same frames (frames, sampling, interval, clips); with the same short side and crop (a ResKD
  student sees its teacher's crop) both models get exactly the tensors they get alone.
* ``"twice"``: the small model decodes with its own spec; an escalated video is decoded again by the large
  model (the decoder's keyframe-aware seek makes that a short decode).
* ``"auto"`` (the default): ``"once"`` when it is exact (same frames, same short side and crop), else
  ``"twice"``. Measured in benchmarks/results/cascade/ (docs/card.md): decoding once never costs more.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reskd_infer.errors import ReskdError, SpecError, UsageError, check_same_classes
from reskd_infer.metrics import agreement_metrics
from reskd_infer.runtime.batching import ClipStream, prepare_video
from reskd_infer.runtime.recognizer import Recognizer, VideoInput
from reskd_infer.runtime.results import VideoResult
from reskd_infer.spec import ModelSpec
from reskd_infer.video import clips_to_batch

DECODE_MODES = ("auto", "once", "twice")
SMALL, LARGE = "small", "large"
_SAMPLING_FIELDS = ("num_frames", "sampling", "frame_interval", "num_clips", "keyframe_sampling")
_CROP_FIELDS = ("resize_short", "crop_size", "num_crops", "resize_antialias")


def top1_margin(probabilities: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 class probability, per row of (N, K) (or of one (K,) vector): 0 is a tie, 1 certainty."""
    p = np.sort(np.asarray(probabilities, dtype=np.float64), axis=-1)
    return p[..., -1] - p[..., -2] if p.shape[-1] > 1 else np.ones(p.shape[:-1])


def escalates(margins: np.ndarray | float, threshold: float) -> np.ndarray:
    """Which clips go to the large model: margin below ``threshold``; threshold 1 sends every clip (also those
    whose probabilities saturated to exactly 1 and 0), threshold 0 none."""
    margins = np.asarray(margins, dtype=np.float64)
    return np.ones(margins.shape, bool) if threshold >= 1.0 else margins < threshold


def cascade_answers(small: np.ndarray, large: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The cascade's class probabilities (N, K) at ``threshold`` from both models' (N, K), and the escalated mask."""
    mask = escalates(top1_margin(small), threshold)
    return np.where(mask[:, None], large, small), mask


def cascade_point(small: np.ndarray, large: np.ndarray, threshold: float,
                  labels: Sequence[int] | None = None) -> dict[str, float | None]:
    """The cascade at ``threshold`` on N clips: ``escalated`` (share), ``agreement`` (top-1 agreement with the
    large model, :func:`reskd_infer.metrics.agreement_metrics`) and ``top1`` (None without labels)."""
    answers, mask = cascade_answers(np.asarray(small), np.asarray(large), threshold)
    top1 = None if labels is None else float(np.mean(answers.argmax(-1) == np.asarray(labels)))
    return {"threshold": float(threshold), "escalated": float(mask.mean()),
            "agreement": agreement_metrics(large, answers)["top1_agreement"], "top1": top1}


def choose_threshold(small: np.ndarray, large: np.ndarray, target_agreement: float) -> dict[str, float]:
    """The threshold with the smallest escalation share at which the cascade agrees with the large model on at
    least ``target_agreement`` of these clips (both models' class probabilities, (N, K)).

    Escalating the k clips of lowest margin makes them agree by construction; the least such k is found, grown
    over ties of the margin, and the threshold set half-way to the next margin. Returns the threshold and the
    share escalated and the agreement reached on these clips."""
    if not 0.0 <= target_agreement <= 1.0:
        raise UsageError(f"target agreement {target_agreement}: expected a fraction in [0, 1]")
    small, large = np.asarray(small), np.asarray(large)
    n = len(small)
    if n == 0:
        raise UsageError("no calibration clip could be read: cannot choose a threshold")
    margins = top1_margin(small)
    order = np.argsort(margins, kind="stable")
    agree = (small.argmax(-1) == large.argmax(-1))[order]
    # agreement after escalating the first k (sorted by margin): (k + agreeing clips among the rest) / n
    rest = np.concatenate([np.cumsum(agree[::-1])[::-1], [0]])
    reached = (np.arange(n + 1) + rest) / n >= target_agreement - 1e-12
    k = int(np.argmax(reached))
    ordered = margins[order]
    while 0 < k < n and ordered[k] == ordered[k - 1]:  # a threshold cannot split clips of equal margin
        k += 1
    threshold = 0.0 if k == 0 else 1.0 if k == n else float((ordered[k - 1] + ordered[k]) / 2)
    point = cascade_point(small, large, threshold)
    return {"threshold": threshold, "escalated": point["escalated"], "agreement": point["agreement"], "clips": n}


def samples_same_frames(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether two specs sample the same frames of a video (so one decode can serve both)."""
    return all(getattr(a, f) == getattr(b, f) for f in _SAMPLING_FIELDS)


def decode_once_is_exact(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether one decode gives both models exactly the tensors they get alone: same frames, short side, crop."""
    return samples_same_frames(a, b) and all(getattr(a, f) == getattr(b, f) for f in _CROP_FIELDS)


def _open(model: Recognizer | str | Path, options: dict[str, Any]) -> tuple[Recognizer, bool]:
    return (model, False) if isinstance(model, Recognizer) else (Recognizer(model, **options), True)


class Cascade:
    """Two models of the same classes: ``small`` answers every clip; a clip whose top-1 margin is below
    ``threshold`` is answered by ``large`` (see the module's docstring for ``decode``).

    Args:
        small, large: Recognizers, or anything ``Recognizer`` loads (then opened with ``recognizer_options``
            and closed with the cascade).
        threshold: margins below it escalate; 0 = the small model alone, 1 = the large model alone.
        decode: "auto", "once" or "twice".
    """

    def __init__(self, small: Recognizer | str | Path, large: Recognizer | str | Path, threshold: float = 0.1,
                 decode: str = "auto", **recognizer_options: Any):
        if decode not in DECODE_MODES:
            raise UsageError(f"decode {decode!r}: expected one of {', '.join(DECODE_MODES)}")
        if not 0.0 <= threshold <= 1.0:
            raise UsageError(f"threshold {threshold}: expected a margin in [0, 1]")
        self._owned: list[Recognizer] = []
        self.small = self._take(small, recognizer_options)
        try:
            self.large = self._take(large, recognizer_options)
            check_same_classes(getattr(self.small, "path", "small"), self.small.spec.class_names,
                               getattr(self.large, "path", "large"), self.large.spec.class_names)
            for rec in (self.small, self.large):
                if rec.spec.multi_label:
                    raise SpecError(f"{rec.path}: a cascade needs single-label models (its margin is top-1 minus "
                                    "top-2 of a softmax)")
            self.decode = self._decode_mode(decode)
        except BaseException:
            self.close()
            raise
        self.threshold = float(threshold)

    def _take(self, model: Recognizer | str | Path, options: dict[str, Any]) -> Recognizer:
        rec, owned = _open(model, options)
        if owned:
            self._owned.append(rec)
        return rec

    def _decode_mode(self, asked: str) -> str:
        small, large = self.small.spec, self.large.spec
        if asked == "auto":
            return "once" if decode_once_is_exact(small, large) else "twice"
        if asked == "once" and not samples_same_frames(small, large):
            diff = [f for f in _SAMPLING_FIELDS if getattr(small, f) != getattr(large, f)]
            raise UsageError(f"decode 'once' needs both models to sample the same frames; {self.small.path} and "
                             f"{self.large.path} differ in {', '.join(diff)}")
        return asked

    def close(self) -> None:
        """Close the models the cascade opened itself (Recognizers passed in stay open)."""
        while self._owned:
            self._owned.pop().close()

    def __enter__(self) -> Cascade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def spec(self) -> ModelSpec:
        """The small model's spec (what every video is read with; corpus runs count its clips)."""
        return self.small.spec

    # ---- streaming ---------------------------------------------------------------------------------
    def _stream(self, batch_size: int, workers: int, worker_kind: str, max_in_flight: int | None,
                complete: Any) -> ClipStream:
        small, large = self.small.spec, self.large.spec
        prepare = prepare_video
        if self.decode == "once":  # decode as the larger short side says; the small batch is made from it
            prepare = functools.partial(prepare_video, decode_spec=large if large.resize_short >= small.resize_short
                                        else small)
        return ClipStream(small, self.small._infer_ready, None, batch_size=batch_size, workers=workers,
                          worker_kind=worker_kind, max_in_flight=max_in_flight,
                          device=str(self.small.backend.input_device), prepare=prepare, complete=complete)

    def _large_scores(self, result: VideoResult, clips: Any) -> np.ndarray:
        """The large model's class probabilities of an escalated video: from the kept frames, or a second decode."""
        start = time.perf_counter()
        if clips is not None:
            batch = clips_to_batch(clips, self.large.spec, self.large.backend.input_device)
            result.timings["preprocess"] += (time.perf_counter() - start) * 1000.0
        else:
            batch = self.large.preprocess(result.video)
            result.timings["decode"] += (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        scores = self.large._scores(self.large._infer(batch))
        result.timings["infer"] += (time.perf_counter() - start) * 1000.0
        return scores

    def _complete(self, result: VideoResult, logits: np.ndarray, clips: Any, topk: int) -> None:
        scores = self.small._scores(logits)
        result.answered_by = SMALL
        if escalates(top1_margin(scores), self.threshold):
            try:
                scores = self._large_scores(result, clips)
            except ReskdError as exc:  # the second decode of this video failed: its error, the stream goes on
                result.error = exc
                return
            result.answered_by = LARGE
        result.probabilities = scores
        result.predictions = self.small._top(scores, topk)

    def predict_iter(self, videos: Iterable[VideoInput], batch_size: int = 8, workers: int = 2, topk: int = 5,
                     worker_kind: str = "thread", max_in_flight: int | None = None) -> Iterator[VideoResult]:
        """One result per video, in input order, each with ``answered_by``; errors and bounded memory as in
        :meth:`Recognizer.predict_iter` (the small model's stream: its workers, batches and read-ahead)."""
        complete = functools.partial(self._complete, topk=topk)
        return self._stream(batch_size, workers, worker_kind, max_in_flight, complete).run(videos)

    def predict(self, video: VideoInput, topk: int = 5) -> VideoResult:
        """One video's result (``answered_by`` says which model answered); an unreadable video raises."""
        result = next(iter(self.predict_iter([video], batch_size=self.small.max_batch, workers=1, topk=topk)))
        if result.error is not None:
            raise result.error
        return result

    # ---- calibration -------------------------------------------------------------------------------
    def paired_probabilities(self, videos: Iterable[VideoInput], batch_size: int = 8, workers: int = 2
                             ) -> tuple[list[Any], np.ndarray, np.ndarray, list[VideoResult]]:
        """Both models' class probabilities of every readable video, read as the cascade reads them (same
        decode): (videos kept, small (N, K), large (N, K), the error results of the videos that failed)."""
        kept: list[Any] = []
        small_rows: list[np.ndarray] = []
        large_rows: list[np.ndarray] = []
        failed: list[VideoResult] = []

        def both(result: VideoResult, logits: np.ndarray, clips: Any) -> None:
            try:
                large_rows.append(self._large_scores(result, clips))
            except ReskdError as exc:
                result.error = exc
                return
            small_rows.append(self.small._scores(logits))
            kept.append(result.video)

        for result in self._stream(batch_size, workers, "thread", None, both).run(videos):
            if result.error is not None:
                failed.append(result)
        k = self.small.spec.num_classes
        as_array = lambda rows: np.stack(rows) if rows else np.zeros((0, k))  # noqa: E731
        return kept, as_array(small_rows), as_array(large_rows), failed

    def calibrate(self, videos: Iterable[VideoInput], target_agreement: float, batch_size: int = 8,
                  workers: int = 2) -> dict[str, Any]:
        """Set ``threshold`` to the one with the smallest escalation share at which the cascade agrees with the
        large model on at least ``target_agreement`` of ``videos`` (:func:`choose_threshold`); returns it with
        the share escalated, the agreement reached, the clips used and the videos that could not be read."""
        _, small, large, failed = self.paired_probabilities(videos, batch_size, workers)
        chosen = choose_threshold(small, large, target_agreement)
        self.threshold = chosen["threshold"]
        return {**chosen, "target_agreement": target_agreement,
                "failed": [{"video": str(r.video), "error": str(r.error)} for r in failed]}
