"""The streaming runtime: many videos through decode workers and batched inference, in input order.

Workers (threads or processes) decode and preprocess videos ahead of the engine;
the calling thread batches the clips of consecutive videos, runs the engine, and
yields one :class:`VideoResult` per video in input order as soon as that video's
clips have been inferred. At most ``max_in_flight`` videos are taken from the input
and not yet yielded, so memory stays bounded however long the input is (a generator
of a million paths is read lazily). A video that cannot be read becomes an error
result; it never stops the stream.

Threads are the default: PyAV and torch release the GIL while decoding and resizing,
and threads need no pickling (``benchmarks/e2e.py`` measures threads against
processes). Each worker thread sets torch to one intra-op thread for its own
preprocessing (OpenMP thread counts are per thread), so it never fights the engine
for cores.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reskd_infer.errors import ReskdError, UnreadableVideoError, VideoError
from reskd_infer.runtime.results import STAGES, VideoResult
from reskd_infer.spec import ModelSpec
from reskd_infer.video import clips_to_batch, load_clips

WORKER_KINDS = ("thread", "process")


def _video_name(video: Any) -> str | None:
    return str(video) if isinstance(video, (str, Path)) else None


def prepare_video(video: Any, spec: ModelSpec, device: str = "cpu", decode_spec: ModelSpec | None = None
                  ) -> tuple[np.ndarray | torch.Tensor | None, tuple | None, dict[str, float]] | tuple:
    """Worker task: decode and preprocess one video into its float32 batch (num_clips, 3, T, S, S):
    a NumPy array, or a CUDA tensor when ``device`` is a GPU where NVDEC decoding runs.

    Returns ``(batch, None, timings)`` or ``(None, error, timings)`` where ``error`` is a picklable
    ``(exception class, path, problem)``: errors travel back from worker processes intact.

    With ``decode_spec`` (a cascade decoding once for two models that sample the same frames) the frames
    are decoded as ``decode_spec`` says, ``spec``'s batch is made from them, and the decoded uint8 clips
    come back as a fourth item (None on error), so the other model's batch needs no second decode.
    """
    timings = dict.fromkeys(STAGES, 0.0)
    keep = decode_spec is not None
    try:
        clips = load_clips(video, decode_spec or spec, None, timings, device=device)
        start = time.perf_counter()
        batch = clips_to_batch(clips, spec, device)
        batch = batch.numpy() if batch.device.type == "cpu" else batch
        timings["preprocess"] = (time.perf_counter() - start) * 1000.0
        return (batch, None, timings, clips) if keep else (batch, None, timings)
    except VideoError as exc:
        error = (type(exc), exc.path, exc.problem)
    except ReskdError as exc:
        error = (type(exc), None, str(exc))
    except Exception as exc:  # noqa: BLE001 - a worker must turn anything into an error result, never a traceback
        error = (UnreadableVideoError, _video_name(video), f"cannot be processed ({type(exc).__name__}: {exc})")
    return (None, error, timings, None) if keep else (None, error, timings)


def _rebuild_error(error: tuple) -> ReskdError:
    cls, path, problem = error
    return cls(path, problem) if issubclass(cls, VideoError) else cls(problem)


def _one_thread_worker() -> None:
    torch.set_num_threads(1)  # OpenMP thread counts are per thread: the engine's threads are untouched


def make_executor(kind: str, workers: int) -> Executor:
    """A pool of ``workers`` decode workers: "thread" or "process" (spawned: safe with engine threads)."""
    if kind not in WORKER_KINDS:
        raise ValueError(f"worker kind must be one of {WORKER_KINDS}, got {kind!r}")
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_one_thread_worker)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reskd-decode", initializer=_one_thread_worker)


@dataclass
class _Pending:
    """A video taken from the input: its decode future, then its clips' logits as batches complete."""

    result: VideoResult
    future: Future | None = None
    num_clips: int = 0
    logits: list[np.ndarray] = field(default_factory=list)
    inferred: int = 0
    payload: Any = None  # what a custom ``prepare`` returned beside the batch (the cascade's decoded frames)

    @property
    def done(self) -> bool:
        return self.result.error is not None or (self.num_clips > 0 and self.inferred == self.num_clips)


class ClipStream:
    """The machinery behind ``predict_iter``: bounded read-ahead, batching across videos, in-order output.

    ``infer(batch float32 (N, 3, T, S, S)) -> logits (N, K)`` runs in the calling thread;
    ``finish(pending logits (num_clips, K)) -> predictions`` turns a video's logits into its result.
    ``complete(result, logits, payload)``, when given, fills the result itself instead (in the calling
    thread, in input order). ``prepare(video, spec, device)`` is the worker task (default
    :func:`prepare_video`; it may return a fourth item, a payload kept with the video until ``complete``).
    """

    def __init__(self, spec: ModelSpec, infer: Callable[[np.ndarray], np.ndarray],
                 finish: Callable[[np.ndarray], list] | None, batch_size: int = 8, workers: int = 2,
                 worker_kind: str = "thread", max_in_flight: int | None = None, device: str = "cpu",
                 prepare: Callable[..., tuple] = prepare_video,
                 complete: Callable[[VideoResult, np.ndarray, Any], None] | None = None):
        if batch_size < 1 or workers < 1:
            raise ValueError("batch_size and workers must be at least 1")
        if worker_kind == "process" and not device.startswith("cpu"):
            raise ValueError("GPU preprocessing runs in worker threads (CUDA tensors do not cross processes)")
        self.device = device
        self.spec, self.infer, self.finish = spec, infer, finish
        self.prepare, self.complete = prepare, complete
        self.batch_size, self.workers, self.worker_kind = batch_size, workers, worker_kind
        # Enough read-ahead to fill one batch while the workers decode the next ones.
        self.max_in_flight = max_in_flight or workers + math.ceil(batch_size / spec.num_clips)
        self.peak_in_flight = 0  # the most videos taken from the input and not yet yielded

    def run(self, videos: Iterable[Any]) -> Iterator[VideoResult]:
        source = iter(videos)
        order: deque[_Pending] = deque()  # every video taken and not yet yielded, in input order
        clips: deque[tuple[_Pending, np.ndarray]] = deque()  # decoded clips waiting for the engine
        with make_executor(self.worker_kind, self.workers) as pool:
            self._fill(source, order, pool)
            while order:
                collected = self._collect_next(order, clips)
                self._fill(source, order, pool)
                while len(clips) >= self.batch_size:
                    self._run_batch(clips)
                if not collected and clips:  # nothing more to decode until these are out: a partial batch
                    self._run_batch(clips)
                while order and order[0].future is None and order[0].done:
                    yield self._emit(order.popleft())
                # A partial batch can finish every video in flight at once: refill before the loop
                # tests ``order``, or the stream would end with input left (measured: 500 in, 10 out).
                self._fill(source, order, pool)

    def _fill(self, source: Iterator[Any], order: deque[_Pending], pool: Executor) -> None:
        while len(order) < self.max_in_flight:
            try:
                video = next(source)
            except StopIteration:
                return
            item = _Pending(VideoResult(video))
            item.future = pool.submit(self.prepare, video, self.spec, self.device)
            order.append(item)
            self.peak_in_flight = max(self.peak_in_flight, len(order))

    def _collect_next(self, order: deque[_Pending], clips: deque) -> bool:
        """Wait for the oldest video still decoding and queue its clips; False if none is decoding."""
        item = next((p for p in order if p.future is not None), None)
        if item is None:
            return False
        start = time.perf_counter()
        batch, error, timings, *payload = item.future.result()
        item.payload = payload[0] if payload else None
        waited = (time.perf_counter() - start) * 1000.0
        item.future = None
        item.result.timings.update(timings)
        item.result.timings["wait"] = waited
        if error is not None:
            item.result.error = _rebuild_error(error)
            return True
        item.num_clips = len(batch)
        clips.extend((item, clip) for clip in batch)
        return True

    def _run_batch(self, clips: deque) -> None:
        taken = [clips.popleft() for _ in range(min(self.batch_size, len(clips)))]
        start = time.perf_counter()
        ready = [clip for _, clip in taken]
        logits = self.infer(torch.stack(ready) if isinstance(ready[0], torch.Tensor) else np.stack(ready))
        share = (time.perf_counter() - start) * 1000.0 / len(taken)
        for (item, _), row in zip(taken, logits, strict=True):
            item.logits.append(row)
            item.inferred += 1
            item.result.timings["infer"] += share

    def _emit(self, item: _Pending) -> VideoResult:
        if item.result.error is None:
            if self.complete is not None:
                self.complete(item.result, np.stack(item.logits), item.payload)
            else:
                item.result.predictions = self.finish(np.stack(item.logits))
        item.logits, item.payload = [], None
        return item.result
