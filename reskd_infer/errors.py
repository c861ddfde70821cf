"""The exceptions reskd-infer raises on bad input, and the exit codes of its commands.

Every error derives from :class:`ReskdError`, so ``except ReskdError`` catches
everything the SDK reports on purpose. Messages are one line that names the file
and the problem.

Exit codes (every console script):

====  =====================================================================================
0     success
1     the work ran but failed: a video could not be classified (``reskd-predict``), an export
      failed verification (``reskd-export``), a training run diverged (``reskd-train``,
      :class:`TrainingDivergedError`)
2     bad arguments or bad input: an unknown flag or architecture, a missing or corrupt
      file (checkpoint, ONNX, plan, manifest, list, config), no usable backend, models compared
      (``reskd-card``, ``reskd-predict --cascade``, ``reskd-eval --reference``) whose class names differ
3     ``reskd-export --trt`` without TensorRT or an NVIDIA GPU (the ONNX files were written), or
      ``reskd-export --int8`` refused: the INT8 model missed the agreement gate after every fallback, or
      the architecture's INT8 was measured not faster than FP32 on CPUs like this one
      (:class:`Int8RefusedError`; the FP32/FP16 artifacts were written and verified)
====  =====================================================================================

With ``--json`` an error is printed as ``{"error": {"type": "CheckpointError", "message": "..."}}``
(plus the command's other keys); ``type`` is the exception class, one of the classes below.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TRT_MISSING = 0, 1, 2, 3
EXIT_REFUSED = 3  # an export step refused (INT8 below its agreement gate); the rest of the folder is intact


class ReskdError(Exception):
    """Base class of every error reskd-infer raises on purpose."""


class SpecError(ReskdError, ValueError):
    """A ModelSpec is invalid (unknown architecture, bad sizes, malformed JSON...)."""


class VideoError(ReskdError):
    """Base class of errors about an input video."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across DataLoader workers and processes
        return type(self), (self.path, self.problem)


class UnreadableVideoError(VideoError):
    """The file is missing, is not a media container, or no frame could be decoded."""


class NoVideoStreamError(VideoError):
    """The container opened but holds no video stream (audio-only file, for instance)."""


class ArtifactError(ReskdError):
    """A model file (checkpoint, ONNX, TensorRT plan) or an export folder is missing, corrupt or inconsistent."""


class CheckpointError(ArtifactError):
    """A checkpoint is missing, corrupt, not a reskd-infer checkpoint, or carries code."""


class BackendUnavailableError(ReskdError):
    """The requested backend cannot run here (package not installed, no GPU...)."""


class EngineIncompatibleError(BackendUnavailableError):
    """A TensorRT plan was built by another TensorRT version or for another GPU architecture."""


class ExportError(ReskdError):
    """Exporting failed, or the exported model disagrees with the original beyond tolerance."""


class Int8RefusedError(ExportError):
    """``reskd-export --int8``: the quantized model's top-1 agreement with FP32 on the verification clips stayed
    below the gate after every fallback (the message gives the figure and the worst clips), or the architecture
    is one whose INT8 was measured not to pay on CPUs without VNNI (the message gives the measured speed-up and
    its results file; nothing was quantized); exit 3.
    :attr:`result` describes what was written (the FP32/FP16 artifacts, verified, and their manifest)."""

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result = result


class TrainingDivergedError(ReskdError):
    """``reskd-train``: the task loss, once learnt, climbed back to chance and stayed there (or became NaN): the
    learning rate is too high for the objective. The message gives the step, the losses and the rate; the epoch
    that diverged was not saved. Exit code 1; ``--no-divergence-guard`` trains on regardless."""


class DatasetError(ReskdError):
    """An annotation list or a sample in it is invalid (the message names file and line)."""


class ClassMismatchError(DatasetError):
    """Two models that are compared or chained (``reskd-card``, a cascade, ``reskd-eval --reference``) have
    different class names; the message names both models and the first difference. Exit code 2."""


def check_same_classes(name_a: object, classes_a: Sequence[str], name_b: object, classes_b: Sequence[str]) -> None:
    """Raise :class:`ClassMismatchError` unless both models have the same class names in the same order."""
    a, b = tuple(classes_a), tuple(classes_b)
    if a == b:
        return
    if len(a) != len(b):
        detail = f"{len(a)} vs {len(b)} classes"
    else:
        i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        detail = f"class {i} is {a[i]!r} vs {b[i]!r}"
    raise ClassMismatchError(f"{name_a} and {name_b} have different classes ({detail}): their answers cannot be "
                             "compared class by class")


class SourceError(ReskdError):
    """A video source expression matches nothing: a missing list file, an empty folder or glob, a bad shard."""


class OutputError(ReskdError):
    """A predictions file cannot be resumed or merged (corrupt line, duplicate or missing videos or shards)."""


class UsageError(ReskdError):
    """A command-line value is invalid (an unknown architecture, a flag out of range...)."""


def error_dict(exc: BaseException) -> dict[str, str]:
    """The JSON form of an error: ``{"type": class name, "message": one line}``."""
    return {"type": type(exc).__name__, "message": one_line(exc)}


def one_line(exc: BaseException) -> str:
    """The error's message on one line (later lines joined with '; ')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def report_error(exc: BaseException, as_json: bool = False, **doc: Any) -> None:
    """Print an error the way every console script does: one ``error:`` line on stderr, and with
    ``as_json`` a JSON document on stdout (``doc``'s keys plus ``"error": error_dict(exc)``)."""

    if as_json:
        print(json.dumps({**doc, "error": error_dict(exc)}, indent=2))
    print(f"error: {one_line(exc)}", file=sys.stderr)


def plain_warnings() -> None:
    """Console scripts: print warnings as one ``warning: ...`` line (no Python source line)."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        print(f"warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
