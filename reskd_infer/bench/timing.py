"""Interleaved timing: every arm runs once per round, in turn, so a noisy shared machine slows them all alike.

The one timing loop of the project: ``reskd-bench``, ``reskd-doctor``, the demo's speed stage and every
script under ``benchmarks/`` call :func:`interleave` and summarise with :func:`spread`.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm


@dataclass
class Timings:
    """What :func:`interleave` measured per arm, in call order: wall and CPU seconds, and what each timed call
    returned (an arm that times itself elsewhere, e.g. in a worker process, returns its own seconds)."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    returned: dict[str, list[object]] = field(default_factory=dict)

    def median(self, arm: str) -> float:
        """Median wall seconds of one arm."""
        return statistics.median(self.wall[arm])

    def ms(self, arm: str) -> list[float]:
        """Wall milliseconds of every timed call of one arm."""
        return [1000.0 * s for s in self.wall[arm]]


def interleave(arms: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1,
               progress: str | None = None) -> Timings:
    """Call each arm once per round, in order, ``warmup`` untimed rounds first, then ``rounds`` timed ones.

    Records this process's wall and CPU time (all its threads) per call: on an oversubscribed machine the CPU
    time of a single-threaded stage is its cost, the wall time also holds the waiting. ``progress``: a label
    for a progress bar on stderr (None: silent).
    """
    out = Timings({a: [] for a in arms}, {a: [] for a in arms}, {a: [] for a in arms})
    for _ in range(warmup):
        for fn in arms.values():
            fn()
    for _ in tqdm(range(rounds), desc=progress, disable=progress is None, file=sys.stderr):
        for arm, fn in arms.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            value = fn()
            out.wall[arm].append(time.perf_counter() - start)
            out.cpu[arm].append(time.process_time() - start_cpu)
            out.returned[arm].append(value)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1): a value that was measured, never below the median at q >= 0.5."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def spread(values_ms: Sequence[float]) -> dict[str, float] | None:
    """Median, 90th percentile (nearest rank), minimum and count of some milliseconds (None if there are none)."""
    if not values_ms:
        return None
    return {"median_ms": statistics.median(values_ms), "p90_ms": percentile(values_ms, 0.9),
            "min_ms": min(values_ms), "runs": len(values_ms)}
