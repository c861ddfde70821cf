"""Predict over a corpus: sources -> (one shard of) the video list -> the streaming runtime
-> a predictions file that resumes, with a progress bar.

``reskd-predict`` is a thin wrapper of :func:`predict_sources` and :func:`run_corpus`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from reskd_infer.errors import ReskdError
from reskd_infer.runtime.sources import expand_sources, shard
from reskd_infer.runtime.writers import PredictionWriter, result_record


def iter_results(recognizer: Any, videos: Iterable[str], topk: int = 5, batch_size: int = 8,
                 workers: int = 2) -> Iterator[Any]:
    """One result per video, in input order: ``Recognizer.predict_iter`` (the streaming runtime)."""
    return recognizer.predict_iter(videos, batch_size=batch_size, workers=workers, topk=topk)


@dataclass
class TimelineResult:
    """A video predicted window by window (``Recognizer.predict_windows``): ``predictions`` is the
    overall label (probabilities averaged over the windows), ``windows`` the timeline."""

    video: str
    predictions: list
    error: ReskdError | None = None
    timings: dict[str, float] = field(default_factory=dict)
    windows: list | None = None
    num_clips: int = 0


def iter_timelines(recognizer: Any, videos: Iterable[str], window_s: float, stride_s: float | None = None,
                   topk: int = 5) -> Iterator[TimelineResult]:
    """One :class:`TimelineResult` per video, in order; a video that fails yields an error result."""
    for video in videos:
        start = time.perf_counter()
        try:
            timeline = recognizer.predict_windows(video, window_s=window_s, stride_s=stride_s, topk=topk)
        except ReskdError as exc:
            yield TimelineResult(video, [], exc)
            continue
        yield TimelineResult(video, timeline.overall, None, {"total": (time.perf_counter() - start) * 1000},
                             timeline.windows, len(timeline.windows) * recognizer.spec.num_clips)


def predict_sources(recognizer: Any, sources: Any = (), list_file: str | Path | None = None,
                    data_root: str | Path | None = None, shard_spec: tuple[int, int] | None = None,
                    topk: int = 5, batch_size: int = 8, workers: int = 2) -> Iterator[Any]:
    """Results for every video a source expression names (files, folders, globs, URLs, a list
    file), optionally only shard ``(i, n)`` of them, in order."""
    videos = expand_sources(sources, list_file=list_file, data_root=data_root)
    if shard_spec is not None:
        videos = shard(videos, *shard_spec)
    return iter_results(recognizer, videos, topk=topk, batch_size=batch_size, workers=workers)


@dataclass
class RunSummary:
    """What one run did: counts and sustained rates."""

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
        return {"total": self.total, "skipped": self.skipped, "done": self.done, "failed": self.failed,
                "clips": self.clips, "seconds": round(self.seconds, 3),
                "videos_per_s": round(self.videos_per_s, 3), "clips_per_s": round(self.clips_per_s, 3)}


def _progress_bar(total: int, quiet: bool):

    return tqdm(total=total, unit="video", file=sys.stderr, disable=quiet, dynamic_ncols=True,
                smoothing=0.1, desc="predict")


def run_corpus(recognizer: Any, videos: list[str], writer: PredictionWriter | None = None,
               on_result: Callable[[dict[str, Any]], None] | None = None, shard_spec: tuple[int, int] | None = None,
               topk: int = 5, batch_size: int = 8, workers: int = 2, quiet: bool = False,
               windows: tuple[float, float | None] | None = None) -> RunSummary:
    """Predict ``videos`` (skipping those ``writer`` already holds), write each record as it is
    done, call ``on_result`` with it, and show a progress bar on stderr (videos/s, clips/s)
    unless ``quiet`` or there is a single video. ``windows=(window_s, stride_s)`` predicts a
    timeline per video instead (``Recognizer.predict_windows``)."""
    todo = [v for v in videos if writer is None or v not in writer.done]
    summary = RunSummary(total=len(videos), skipped=len(videos) - len(todo))
    clips_per_video = recognizer.spec.num_clips
    start = time.perf_counter()
    with _progress_bar(len(todo), quiet or len(todo) <= 1) as bar:
        results = (iter_timelines(recognizer, todo, windows[0], windows[1], topk) if windows else
                   iter_results(recognizer, todo, topk=topk, batch_size=batch_size, workers=workers))
        for result in results:
            record = result_record(result, shard_spec)
            summary.done += 1
            summary.failed += record["error"] is not None
            summary.clips += getattr(result, "num_clips", clips_per_video) if record["error"] is None else 0
            if on_result is not None:
                on_result(record)  # before writing: it may add to the record (the annotated video's path)
            if writer is not None:
                writer.write(record)
            summary.seconds = time.perf_counter() - start
            bar.set_postfix_str(f"{summary.clips_per_s:.1f} clips/s, {summary.failed} failed", refresh=False)
            bar.update(1)
    summary.seconds = time.perf_counter() - start
    return summary
