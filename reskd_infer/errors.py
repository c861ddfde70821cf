"""The exceptions reskd-infer raises on bad input.

Every error derives from :class:`ReskdError`, so ``except ReskdError`` catches
everything the SDK reports on purpose. Messages name the file and the problem.
"""

from __future__ import annotations

from pathlib import Path


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


class UnreadableVideoError(VideoError):
    """The file is missing, is not a media container, or no frame could be decoded."""


class NoVideoStreamError(VideoError):
    """The container opened but holds no video stream (audio-only file, for instance)."""


class CheckpointError(ReskdError):
    """A checkpoint is missing, corrupt, not a reskd-infer checkpoint, or carries code."""


class BackendUnavailableError(ReskdError):
    """The requested backend cannot run here (package not installed, no GPU...)."""


class EngineIncompatibleError(BackendUnavailableError):
    """A TensorRT plan was built by another TensorRT version or for another GPU architecture."""


class ExportError(ReskdError):
    """Exporting failed, or the exported model disagrees with the original beyond tolerance."""


class DatasetError(ReskdError):
    """An annotation list or a sample in it is invalid (the message names file and line)."""


class SourceError(ReskdError):
    """A video source expression matches nothing: a missing list file, an empty folder or glob, a bad shard."""


class OutputError(ReskdError):
    """A predictions file cannot be resumed or merged (corrupt line, duplicate or missing videos or shards)."""
