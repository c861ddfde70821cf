"""The clips INT8 export calibrates and verifies on: drawn with a fixed seed, disjoint, digested.

Calibration clips come from ``--calib LIST`` (default 128, drawn with a fixed seed). Verification clips
are the ones given (``--int8-verify LIST``), else a second seeded draw from the same list; either way a
clip that verifies is removed from the calibration pool first, so calibration never sees one.
Clips of the calibration list left over by both draws (up to 64, same seed) are the *tuning* clips NNCF's
accuracy-aware fallback ranks layers on (label-free agreement with FP32): neither calibrated on nor verified.
Every set is decoded and preprocessed by :func:`reskd_infer.video.video_to_batch`, the one function
the Recognizer serves with, as the student's spec says (frames, size, views, normalization).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reskd_infer.errors import ExportError, ReskdError, SourceError, one_line
from reskd_infer.io.digests import file_sha256
from reskd_infer.runtime.sources import read_source_list
from reskd_infer.spec import ModelSpec
from reskd_infer.video import video_to_batch

DEFAULT_CALIB_CLIPS = 128
DEFAULT_VERIFY_CLIPS = 64  # drawn from the calibration list when no verification list is given
DEFAULT_TUNING_CLIPS = 64  # held out of both, for the accuracy-aware fallback
DEFAULT_CALIB_SEED = 0


@dataclass
class ClipSets:
    """The calibration and verification clips of one INT8 export (disjoint)."""

    calibration: list[Path]
    verification: list[Path]
    calib_list: Path
    verify_list: Path | None
    seed: int
    tuning: list[Path] = field(default_factory=list)  # neither calibration nor verification

    def record(self) -> dict[str, Any]:
        """The manifest's record: each set's source list, size and digest (names and contents)."""
        return {
            "seed": self.seed,
            "calibration": {"list": str(self.calib_list), "clips": len(self.calibration),
                            "sha256": clips_digest(self.calibration)},
            "verification": {"list": str(self.verify_list) if self.verify_list else f"{self.calib_list} "
                             "(held out from calibration)", "clips": len(self.verification),
                             "sha256": clips_digest(self.verification)},
            "tuning": {"list": f"{self.calib_list} (held out of both)", "clips": len(self.tuning),
                       "sha256": clips_digest(self.tuning)},
            "disjoint": not ({_key(p) for p in self.calibration} & {_key(p) for p in self.verification}
                             or {_key(p) for p in self.tuning} & {_key(p) for p in self.calibration + self.verification}),
        }


def _key(path: Path) -> str:
    return str(Path(path).resolve())


def clips_digest(clips: Sequence[Path]) -> str:
    """SHA-256 over the clips in order: each clip's file name and the SHA-256 of its bytes."""
    digest = hashlib.sha256()
    for clip in clips:
        digest.update(f"{Path(clip).name}\t{file_sha256(clip)}\n".encode())
    return digest.hexdigest()


def _read_list(path: Path, what: str) -> list[Path]:
    try:
        return [Path(p) for p in read_source_list(path)]
    except SourceError as exc:
        raise ExportError(f"{what}: {one_line(exc)}") from None


def draw_clip_sets(calib_list: str | Path, count: int = DEFAULT_CALIB_CLIPS, seed: int = DEFAULT_CALIB_SEED,
                   verify_list: str | Path | None = None, verify_clips: Sequence[str | Path] = (),
                   verify_count: int = DEFAULT_VERIFY_CLIPS) -> ClipSets:
    """Draw the calibration clips from ``calib_list`` and pick the verification clips, never overlapping.

    Verification: ``verify_list`` and ``verify_clips`` when given, else ``verify_count`` clips of
    ``calib_list`` drawn after the calibration ones (same seed).

    Raises:
        ExportError: a list is missing or empty, or no clip is left for calibration or verification.
    """
    calib_list = Path(calib_list)
    pool = _read_list(calib_list, "--calib")
    verification = [Path(v) for v in verify_clips]
    if verify_list is not None:
        verification += _read_list(Path(verify_list), "--int8-verify")
    held = {_key(v) for v in verification}
    pool = [p for p in dict.fromkeys(pool) if _key(p) not in held]  # a verification clip never calibrates
    order = np.random.default_rng(seed).permutation(len(pool))
    calibration = [pool[i] for i in order[:count]]
    rest = [pool[i] for i in order[count:]]
    if not verification:
        verification, rest = rest[:verify_count], rest[verify_count:]
    if not calibration:
        raise ExportError(f"{calib_list}: no calibration clip left (every clip of the list also verifies)")
    if not verification:
        raise ExportError(f"{calib_list}: no verification clip: the list has {len(pool)} clips and calibration "
                          f"takes {count}; give --int8-verify LIST, or a smaller --calib-count")
    return ClipSets(calibration, verification, calib_list, Path(verify_list) if verify_list else None, seed,
                    tuning=rest[:DEFAULT_TUNING_CLIPS])


def clip_batches(clips: Sequence[Path], spec: ModelSpec, what: str) -> list[np.ndarray]:
    """Each clip as the batch the Recognizer serves (views, 3, T, S, S); an unreadable clip is an error naming it."""
    out = []
    for clip in clips:
        try:
            out.append(video_to_batch(clip, spec).numpy())
        except ReskdError as exc:
            raise ExportError(f"{clip}: a {what} clip cannot be read: {one_line(exc)}") from None
    return out


def calibration_samples(batches: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One (1, 3, T, S, S) sample per view of every calibration clip: what the quantizers iterate over."""
    return [np.ascontiguousarray(b[i : i + 1]) for b in batches for i in range(len(b))]
