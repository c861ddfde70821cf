"""The public runtime: ``Recognizer(artifact).predict(video)``.

It reads the ModelSpec the artifact carries, picks a backend from the registry
by artifact type, decodes and samples the video as the spec says, preprocesses
with the same function training evaluation used, and returns class probabilities.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .artifacts import (
    candidate_artifacts,
    check_folder_artifact,
    check_spec_matches_manifest,
    read_manifest,
    read_spec,
)
from .backends import Backend, backend_names, backends_for
from .backends.base import BackendEntry
from .backends.triton_ import is_triton_url
from .errors import ArtifactError, BackendUnavailableError, SpecError, one_line
from .precision import PRECISIONS
from .spec import ModelSpec
from .video import clips_to_batch, load_clips

VideoInput = str | Path | np.ndarray | Sequence[np.ndarray]


@dataclass(frozen=True)
class Prediction:
    """One class of a prediction: its name, index, and probability."""

    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "index": self.index, "score": self.score}


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
        precision: "auto" (each engine's default: FP32 on the CPU), "fp32", or "bf16": OpenVINO
            BF16 on CPUs with AVX512-BF16/AMX, served only when the export verified it on real
            clips (manifest), otherwise FP32 with a warning (docs/engines.md).

    Thread safety: ``predict``, ``probabilities``, ``preprocess`` and ``predict_batch`` may be called
    from several threads at once on one Recognizer (PyTorch, ONNX Runtime and OpenVINO backends: tested to
    return exactly what sequential calls return; OpenVINO keeps one infer request and TensorRT one
    execution context per thread). Creating
    and closing a Recognizer are not: do not ``close()`` while another thread predicts.
    """

    def __init__(self, path: str | Path, device: str = "auto", backend: str = "auto", fallback: bool = True,
                 max_batch: int = 16, num_clips: int | None = None, three_crop: bool = False,
                 precision: str = "auto"):
        if "://" in str(path) and not is_triton_url(path):  # before Path(), which folds "rtsp://h/x" to "rtsp:/h/x"
            raise ArtifactError(f"{path}: this URL is not a model; give a model file, an export folder or a "
                                "Triton model as grpc://host:port/model")
        self.path = path if is_triton_url(path) else Path(path)  # grpc://host:port/model: a Triton server
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
        attempts = [(artifact, entry) for artifact, kind in candidate_artifacts(self.path)
                    for entry in backends_for(kind) if requested in ("auto", entry.name)]
        if requested == "auto":  # an optional accelerator that cannot run here is skipped without a warning
            attempts = [(a, e) for a, e in attempts if not (e.factory().optional and e.factory().available(self.device))]
        if not attempts:
            raise BackendUnavailableError(f"{self.path}: no backend named {requested!r} runs its artifacts")
        reasons: list[str] = []
        while attempts:
            artifact_path, entry = attempts.pop(0)
            try:
                return self._open_artifact(artifact_path, entry, manifest)
            except (BackendUnavailableError, ArtifactError) as exc:
                if isinstance(exc, ArtifactError):  # a damaged file stays damaged whichever backend reads it
                    attempts = [(a, e) for a, e in attempts if a != artifact_path]
                if not fallback or (not reasons and not attempts):  # nothing else to try: the error itself
                    raise
                reasons.append(f"{entry.name}: {one_line(exc)}")
                if attempts:
                    # stacklevel 1: the warning is about the artifact, not about a line of the caller's code.
                    warnings.warn(f"{one_line(exc)}; falling back to {attempts[0][0].name}", RuntimeWarning,
                                  stacklevel=1)
        fix = "; re-export the folder with reskd-export" if manifest is not None else ""
        raise BackendUnavailableError(f"{self.path}: no usable artifact ({'; '.join(reasons)}){fix}")

    def _open_artifact(self, artifact_path: Path, entry: BackendEntry, manifest: dict | None) -> Backend:
        """Check one artifact (folder entries against their manifest), then load it with ``entry``'s backend."""
        if manifest is not None:
            check_folder_artifact(self.path, artifact_path, manifest)
        spec = read_spec(artifact_path)  # first: a damaged artifact is reported as such, wherever it could run
        if manifest is not None:
            check_spec_matches_manifest(self.path, artifact_path, spec)
        cls = entry.factory()
        problem = cls.available(self.device)
        if problem:
            raise BackendUnavailableError(f"{artifact_path}: {entry.name} backend unavailable: {problem}")
        return cls(artifact_path, spec, device=self.device, **self._precision_option(cls))

    def _precision_option(self, cls: type[Backend]) -> dict[str, str]:
        if self.precision == "auto":
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

    # ---- inference ------------------------------------------------------------------------------
    def preprocess(self, video: VideoInput, rng: np.random.Generator | None = None) -> torch.Tensor:
        """The batch (num_clips, 3, T, S, S) the model sees for ``video`` (on the backend's device)."""
        return clips_to_batch(load_clips(video, self.spec, rng), self.spec, self.backend.input_device)

    def _infer(self, batch: torch.Tensor) -> np.ndarray:
        parts = [self.backend.infer(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return np.concatenate(parts, axis=0)

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        probs = _sigmoid(logits) if self.spec.multi_label else _softmax(logits)
        return probs.mean(axis=0)  # average class probabilities over clips

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

    def predict_batch(self, videos: Iterable[VideoInput], topk: int = 5, workers: int = 2) -> list[list[Prediction]]:
        """Predict several videos: decoding overlaps in threads, clips are batched for the engine."""
        videos = list(videos)
        if not videos:
            return []
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            clips = list(pool.map(lambda v: load_clips(v, self.spec), videos))
        counts = [len(c) for c in clips]
        batch = clips_to_batch([clip for video in clips for clip in video], self.spec, self.backend.input_device)
        logits = self._infer(batch)
        out, start = [], 0
        for n in counts:
            out.append(self._top(self._scores(logits[start : start + n]), topk))
            start += n
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
