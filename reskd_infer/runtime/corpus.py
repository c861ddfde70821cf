"""Predict over a corpus: sources -> (one shard of) the video list -> the streaming runtime
-> a predictions file that resumes, with a progress bar.

``reskd-predict`` is a thin wrapper of :func:`select_videos` and :func:`run_corpus`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from reskd_infer.errors import ReskdError
from reskd_infer.runtime.recognizer import Recognizer
from reskd_infer.runtime.results import RunSummary, VideoResult
from reskd_infer.runtime.sources import expand_sources, shard
from reskd_infer.runtime.writers import PredictionWriter, result_record


def iter_timelines(recognizer: Recognizer, videos: Iterable[str], window_s: float, stride_s: float | None = None,
                   topk: int = 5) -> Iterator[VideoResult]:
    """One result per video, in order, predicted window by window (``Recognizer.predict_windows``):
    ``predictions`` is the overall label, ``windows`` the timeline; a video that fails yields an error result."""
    for video in videos:
        start = time.perf_counter()
        try:
            timeline = recognizer.predict_windows(video, window_s=window_s, stride_s=stride_s, topk=topk)
        except ReskdError as exc:
            yield VideoResult(video, error=exc, timings={})
            continue
        yield VideoResult(video, timeline.overall, timings={"total": (time.perf_counter() - start) * 1000},
                          windows=timeline.windows)


def select_videos(sources: Any = (), list_file: str | Path | None = None, data_root: str | Path | None = None,
                  shard_spec: tuple[int, int] | None = None) -> list[str]:
    """Every video a source expression names (files, folders, globs, URLs, a list file), in order,
    or only shard ``(i, n)`` of them."""
    videos = expand_sources(sources, list_file=list_file, data_root=data_root)
    return shard(videos, *shard_spec) if shard_spec is not None else videos


def predict_sources(recognizer: Recognizer, sources: Any = (), list_file: str | Path | None = None,
                    data_root: str | Path | None = None, shard_spec: tuple[int, int] | None = None,
                    topk: int = 5, batch_size: int = 8, workers: int = 2) -> Iterator[VideoResult]:
    """Results for every video of :func:`select_videos`, in order (``Recognizer.predict_iter``)."""
    videos = select_videos(sources, list_file, data_root, shard_spec)
    return recognizer.predict_iter(videos, batch_size=batch_size, workers=workers, topk=topk)


def _progress_bar(total: int, quiet: bool) -> tqdm:
    return tqdm(total=total, unit="video", file=sys.stderr, disable=quiet, dynamic_ncols=True,
                smoothing=0.1, desc="predict")


def run_corpus(recognizer: Recognizer, videos: list[str], writer: PredictionWriter | None = None,
               on_result: Callable[[dict[str, Any]], None] | None = None, shard_spec: tuple[int, int] | None = None,
               topk: int = 5, batch_size: int = 8, workers: int = 2, quiet: bool = False,
               windows: tuple[float, float | None] | None = None) -> RunSummary:
    """Predict ``videos`` (skipping those ``writer`` already holds), write each record as it is
    done, call ``on_result`` with it, and show a progress bar on stderr (videos/s, clips/s)
    unless ``quiet`` or there is a single video. ``windows=(window_s, stride_s)`` predicts a
    timeline per video instead (``Recognizer.predict_windows``)."""
    todo = [v for v in videos if writer is None or v not in writer.done]
    summary = RunSummary(total=len(videos), skipped=len(videos) - len(todo))
    start = time.perf_counter()
    with _progress_bar(len(todo), quiet or len(todo) <= 1) as bar:
        results = (iter_timelines(recognizer, todo, windows[0], windows[1], topk) if windows else
                   recognizer.predict_iter(todo, batch_size=batch_size, workers=workers, topk=topk))
        for result in results:
            record = result_record(result, shard_spec)
            summary.done += 1
            summary.failed += not result.ok
            summary.clips += _clips_of(result, recognizer.spec.num_clips)
            if on_result is not None:
                on_result(record)  # before writing: it may add to the record (the annotated video's path)
            if writer is not None:
                writer.write(record)
            summary.seconds = time.perf_counter() - start
            bar.set_postfix_str(f"{summary.clips_per_s:.1f} clips/s, {summary.failed} failed", refresh=False)
            bar.update(1)
    summary.seconds = time.perf_counter() - start
    return summary


def _clips_of(result: VideoResult, clips_per_video: int) -> int:
    """Clips inferred for one result: none on error, ``num_clips`` per window of a timeline."""
    if not result.ok:
        return 0
    return clips_per_video * (len(result.windows) if result.windows is not None else 1)
