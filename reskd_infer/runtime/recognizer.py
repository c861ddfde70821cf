"""The public runtime: ``Recognizer(artifact).predict(video)``.

It reads the ModelSpec the artifact carries, picks a backend from the registry
by artifact type, decodes and samples the video as the spec says, preprocesses
with the same function training evaluation used, and returns class probabilities.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reskd_infer.backends import Backend, backend_names, backends_for
from reskd_infer.errors import ArtifactError, BackendUnavailableError, SpecError, one_line
from reskd_infer.formats import INT8, PRECISIONS, is_remote, kind_precision
from reskd_infer.io.artifacts import (
    artifact_precision,
    candidate_artifacts,
    check_folder_artifact,
    check_spec_matches_manifest,
    read_card,
    read_manifest,
)
from reskd_infer.runtime.batching import ClipStream
from reskd_infer.runtime.results import Prediction, Timeline, VideoResult, WindowPrediction
from reskd_infer.spec import ModelSpec
from reskd_infer.video import clips_to_batch, load_clips
from reskd_infer.video.windows import Window, iter_window_clips

VideoInput = str | Path | np.ndarray | Sequence[np.ndarray]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


class Recognizer:
    """Classify videos with a reskd-infer artifact.

    Args:
        path: a checkpoint (.ckpt), an ONNX model (.onnx), a TensorRT plan (.plan),
            an export folder written by ``reskd-export``, or ``grpc://host:port/model``
            for a model served by Triton (decoding and preprocessing stay local).
        device: "auto" (CUDA when present, else CPU), "cpu" or "cuda[:N]".
        backend: "auto" (the fastest that works here: TensorRT on a GPU, OpenVINO then ONNX
            Runtime for ONNX on the CPU) or a backend name ("torch", "onnxruntime", "openvino",
            "tensorrt").
        fallback: when the preferred artifact cannot run here (a plan built for
            another GPU or TensorRT version, a missing package), warn and use the
            next artifact (the ONNX or checkpoint the plan's sidecar names, or the
            export folder's other files). ``False`` raises instead, also when a file an
            export folder lists is missing, corrupt or disagrees with its manifest.
        max_batch: at most this many clips per inference call.
        num_clips: test clips per video (default: the spec's ``num_clips``); class probabilities
            are averaged over every view, as the video community reports multi-view accuracy.
        three_crop: three crops per clip (both ends and the centre of the long side) instead of the
            centre crop; with ``num_clips`` 10 this is the usual "10 clips x 3 crops" protocol.
        precision: "auto" (the artifact's own: an export folder's INT8 artifacts first when
            ``reskd-export --int8`` wrote them, else FP32 on the CPU), "fp32" (FP32 artifacts only),
            "int8" (INT8 artifacts only: an error without them), or "bf16": OpenVINO BF16 on CPUs
            with AVX512-BF16/AMX, served only when the export verified it on real clips (manifest),
            otherwise FP32 with a warning (docs/engines.md).

    Thread safety: ``predict``, ``probabilities``, ``preprocess`` and ``predict_batch`` may be called
    from several threads at once on one Recognizer (PyTorch, ONNX Runtime and OpenVINO backends: tested to
    return exactly what sequential calls return; OpenVINO keeps one infer request and TensorRT one
    execution context per thread). Creating
    and closing a Recognizer are not: do not ``close()`` while another thread predicts.
    """

    def __init__(self, path: str | Path, device: str = "auto", backend: str = "auto", fallback: bool = True,
                 max_batch: int = 16, num_clips: int | None = None, three_crop: bool = False,
                 precision: str = "auto"):
        if "://" in str(path) and not is_remote(path):  # before Path(), which folds "rtsp://h/x" to "rtsp:/h/x"
            raise ArtifactError(f"{path}: this URL is not a model; give a model file, an export folder or a "
                                "Triton model as grpc://host:port/model")
        self.path = path if is_remote(path) else Path(path)  # grpc://host:port/model: a Triton server
        self.device = device
        self.max_batch = max_batch
        if precision not in PRECISIONS:
            raise BackendUnavailableError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.backend: Backend = self._load_backend(backend, fallback)
        views = {"num_crops": 3} if three_crop else {}
        if num_clips is not None:
            views["num_clips"] = num_clips
        try:  # the artifact's spec, with the test views asked for (validated like any spec)
            self.spec: ModelSpec = self.backend.spec.replace(**views) if views else self.backend.spec
        except SpecError:
            self.close()
            raise

    def _load_backend(self, requested: str, fallback: bool) -> Backend:
        if requested != "auto" and requested not in backend_names():
            raise BackendUnavailableError(f"unknown backend {requested!r}; available: {', '.join(backend_names())}")
        manifest = read_manifest(self.path) if isinstance(self.path, Path) and self.path.is_dir() else None
        attempts = [(artifact, kind, entry) for artifact, kind in self._candidates()
                    for entry in backends_for(kind) if requested in ("auto", entry.name)]
        if requested == "auto":  # an optional accelerator that cannot run here is skipped without a warning
            attempts = [(a, k, e) for a, k, e in attempts if not (e.optional and e.available(self.device))]
        if not attempts:
            raise BackendUnavailableError(f"{self.path}: no backend named {requested!r} runs its artifacts")
        reasons: list[str] = []
        while attempts:
            artifact_path, kind, entry = attempts.pop(0)
            try:
                return self._open_artifact(artifact_path, kind, entry, manifest)
            except (BackendUnavailableError, ArtifactError) as exc:
                if isinstance(exc, ArtifactError):  # a damaged file stays damaged whichever backend reads it
                    attempts = [(a, k, e) for a, k, e in attempts if a != artifact_path]
                if not fallback or (not reasons and not attempts):  # nothing else to try: the error itself
                    raise
                reasons.append(f"{entry.name}: {one_line(exc)}")
                if attempts:
                    # stacklevel 1: the warning is about the artifact, not about a line of the caller's code.
                    warnings.warn(f"{one_line(exc)}; falling back to {attempts[0][0].name}", RuntimeWarning,
                                  stacklevel=1)
        fix = "; re-export the folder with reskd-export" if manifest is not None else ""
        raise BackendUnavailableError(f"{self.path}: no usable artifact ({'; '.join(reasons)}){fix}")

    def _candidates(self) -> list[tuple[Path, str]]:
        """The artifacts to try, best first, keeping those of the precision asked for: "int8" only the INT8
        ones, "fp32"/"bf16"/"fp16" none of them, "auto" all (an export folder's INT8 artifacts come first)."""
        found = candidate_artifacts(self.path)
        if self.precision == "auto":
            return found
        if isinstance(self.path, Path) and not self.path.is_dir():  # one file: its own metadata says
            if (artifact_precision(self.path) == INT8) != (self.precision == INT8):
                raise BackendUnavailableError(
                    f"{self.path}: precision={self.precision!r} asked for, but this is "
                    f"{'an INT8' if self.precision != INT8 else 'not an INT8'} artifact")
            return found
        kept = [(a, k) for a, k in found if (kind_precision(k) == INT8) == (self.precision == INT8)]
        if not kept:
            raise BackendUnavailableError(f"{self.path}: no {self.precision.upper()} artifact in this export folder"
                                          + ("; export it with reskd-export --int8" if self.precision == INT8 else ""))
        return kept

    def _open_artifact(self, artifact_path: Path, kind: str, cls: type[Backend], manifest: dict | None) -> Backend:
        """Check one artifact (folder entries against their manifest), then load it with ``entry``'s backend."""
        if manifest is not None:
            check_folder_artifact(self.path, artifact_path, manifest, kind)
        spec = cls.read_spec(artifact_path)  # first: a damaged artifact is reported as such, wherever it could run
        if manifest is not None:
            check_spec_matches_manifest(self.path, artifact_path, spec)
        problem = cls.available(self.device)
        if problem:
            raise BackendUnavailableError(f"{artifact_path}: {cls.name} backend unavailable: {problem}")
        return cls(artifact_path, spec, device=self.device, **self._precision_option(cls))

    def _precision_option(self, cls: type[Backend]) -> dict[str, str]:
        if self.precision in ("auto", INT8):  # INT8 is the artifact's own precision, never a backend option
            return {}
        if self.precision in cls.precisions:
            return {"precision": self.precision}
        if self.precision != "fp32":
            warnings.warn(f"{self.path}: the {cls.name} backend runs its artifact's own precision; "
                          f"precision={self.precision!r} not used", RuntimeWarning, stacklevel=4)
        return {}

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def card(self) -> dict[str, Any] | None:
        """The deployment card ``reskd-card`` wrote into this export folder (``card.json``: what each model
        measured on the user's clips costs and how close it is to the reference), or None when there is none
        (or the model is not an export folder). See docs/card.md."""
        if isinstance(self.path, Path) and self.path.is_dir():
            return read_card(self.path)
        return None

    # ---- inference ------------------------------------------------------------------------------
    def preprocess(self, video: VideoInput, rng: np.random.Generator | None = None) -> torch.Tensor:
        """The batch (num_clips, 3, T, S, S) the model sees for ``video`` (on the backend's device)."""
        device = self.backend.input_device
        return clips_to_batch(load_clips(video, self.spec, rng, device=str(device)), self.spec, device)

    def _infer(self, batch: torch.Tensor) -> np.ndarray:
        parts = [self.backend.infer(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return np.concatenate(parts, axis=0)

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        return _sigmoid(logits) if self.spec.multi_label else _softmax(logits)

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        return self._probabilities(logits).mean(axis=0)  # average class probabilities over clips

    @property
    def views_per_video(self) -> int:
        """Clips x crops: the rows ``preprocess`` gives per video."""
        return self.spec.num_clips * self.spec.num_crops

    def probabilities_of_batch(self, batch: torch.Tensor) -> np.ndarray:
        """Class probabilities (N, num_classes) of N videos' preprocessed views stacked as
        (N * views_per_video, 3, T, S, S), video by video (what reskd-eval feeds)."""
        v = self.views_per_video
        logits = self._infer(batch.to(self.backend.input_device))
        return np.stack([self._scores(logits[i : i + v]) for i in range(0, len(logits), v)])

    def probabilities(self, video: VideoInput) -> np.ndarray:
        """Class probabilities (num_classes,) for one video, averaged over its clips."""
        return self._scores(self._infer(self.preprocess(video)))

    def _top(self, scores: np.ndarray, topk: int) -> list[Prediction]:
        k = max(1, min(topk, len(scores)))
        order = np.argsort(-scores, kind="stable")[:k]
        return [Prediction(self.spec.class_names[i], int(i), float(scores[i])) for i in order]

    def predict(self, video: VideoInput, topk: int = 5) -> list[Prediction]:
        """The ``topk`` most probable classes of ``video`` (a file path, or uint8 RGB frames
        shaped (T, H, W, 3) or a list of (H, W, 3) arrays), best first."""
        return self._top(self.probabilities(video), topk)

    # ---- streaming (many videos) ----------------------------------------------------------------
    def predict_iter(self, videos: Iterable[VideoInput], batch_size: int = 8, workers: int = 2, topk: int = 5,
                     worker_kind: str = "thread", max_in_flight: int | None = None) -> Iterator[VideoResult]:
        """Classify many videos as a stream: one :class:`~reskd_infer.runtime.results.VideoResult` per input video,
        **in input order**, each yielded as soon as its clips have been inferred.

        Contract:
            * ``videos`` is any iterable (paths or frame arrays) and is read lazily: at most
              ``max_in_flight`` videos (default ``workers + ceil(batch_size / spec.num_clips)``) are
              taken from it and not yet yielded, so memory is bounded (about two batches of decoded
              clips) however long the input is.
            * ``workers`` decode workers (``worker_kind`` "thread" (default) or "process") decode and
              preprocess ahead while the calling thread runs the engine; clips of consecutive videos
              are batched together, ``batch_size`` clips per engine call (the last call may be smaller).
            * Each result has ``video`` (the input item as given), ``predictions`` (top ``topk``, best
              first, exactly what :meth:`predict` returns for that video), ``error`` (None, or the
              :class:`~reskd_infer.errors.ReskdError` naming the file and the problem; then
              ``predictions`` is empty) and ``timings`` (milliseconds per stage, see
              :data:`~reskd_infer.runtime.results.STAGES`).
            * A video that cannot be read yields an error result; the stream goes on. Errors of the
              engine itself (not of one video) are raised.
            * Stopping the iteration early (``break``) cancels nothing harmful: pending decodes finish
              and are dropped.
        """
        stream = ClipStream(self.spec, self._infer_ready, None, batch_size=batch_size, workers=workers,
                            worker_kind=worker_kind, max_in_flight=max_in_flight,
                            device=str(self.backend.input_device),
                            complete=lambda result, logits, _: self._complete(result, logits, topk))
        return stream.run(videos)

    def _complete(self, result: VideoResult, logits: np.ndarray, topk: int) -> None:
        """A streamed video's answer: its class probabilities (kept on the result) and their top ``topk``."""
        result.probabilities = self._scores(logits)
        result.predictions = self._top(result.probabilities, topk)

    def _infer_ready(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        batch = torch.from_numpy(batch) if isinstance(batch, np.ndarray) else batch
        return self._infer(batch.to(self.backend.input_device))

    def predict_batch(self, videos: Iterable[VideoInput], topk: int = 5, workers: int = 2,
                      batch_size: int | None = None) -> list[list[Prediction]]:
        """Predict several videos through :meth:`predict_iter`; the first unreadable video's error is raised."""
        results = list(self.predict_iter(videos, batch_size=batch_size or self.max_batch, workers=workers, topk=topk))
        for result in results:
            if result.error is not None:
                raise result.error
        return [r.predictions for r in results]

    # ---- long videos ------------------------------------------------------------------------------
    def predict_windows(self, video: str | Path, window_s: float = 10.0, stride_s: float | None = None,
                        topk: int = 5, batch_size: int | None = None) -> Timeline:
        """Classify a long video window by window: a :class:`Timeline` of ``(start_s, end_s, predictions)``
        and ``overall``, the class probabilities averaged over every window's clips (one label for the
        whole video, as ``num_clips`` averaging does for a short one).

        Windows of ``window_s`` seconds start every ``stride_s`` (default: ``window_s``, no overlap);
        one more is aligned to the end when needed, so the windows cover the whole video. In each
        window the spec samples its clips as it would in a video holding only that window. The video
        is decoded once, forward, and only the frames of windows still open are kept.
        """
        batch_size = batch_size or self.max_batch
        done: list[tuple[WindowPrediction, np.ndarray]] = []
        pending: list[tuple[Window, torch.Tensor]] = []
        for window, clips in iter_window_clips(video, self.spec, window_s, stride_s or window_s):
            pending.append((window, clips_to_batch(clips, self.spec)))
            if sum(len(b) for _, b in pending) >= batch_size:
                done += self._predict_window_batch(pending, topk)
                pending = []
        if pending:
            done += self._predict_window_batch(pending, topk)
        overall = self._top(np.concatenate([probs for _, probs in done]).mean(axis=0), topk)
        return Timeline(str(video), [window for window, _ in done], overall)

    def _predict_window_batch(self, pending: list[tuple[Window, torch.Tensor]],
                              topk: int) -> list[tuple[WindowPrediction, np.ndarray]]:
        """The clips of several windows in one engine call: each window's prediction and its clips' probabilities."""
        logits = self._infer(torch.cat([b for _, b in pending]).to(self.backend.input_device))
        out, start = [], 0
        for window, b in pending:
            probs = self._probabilities(logits[start : start + len(b)])
            out.append((WindowPrediction(window.start_s, window.end_s, self._top(probs.mean(axis=0), topk)), probs))
            start += len(b)
        return out

    # ---- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the backend (GPU memory, sessions)."""
        if getattr(self, "backend", None) is not None:
            self.backend.release()
            self.backend = None  # type: ignore[assignment]

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Recognizer({str(self.path)!r}, backend={self.backend_name!r}, arch={self.spec.arch!r})"
