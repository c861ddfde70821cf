"""The divergence guard: stop a run whose task loss, once learnt, climbs back to chance and stays there.

Why: a rate that suits plain training can make distillation blow up (TSM-Lite0 at 56 px, lr 0.03: the task
loss rose from 1.2 to 5.8 during the warm-up and then sat at chance, ln 8, for the rest of the run, with no
NaN; docs/benchmarks.md, the temporal task). Without a guard the run finishes and saves a chance-level model.

The rule spares runs that start at chance (from scratch): it only fires after the smoothed task loss has been
below ``LEARNT_FRACTION`` of chance, then at or above chance for ``PATIENCE_STEPS`` steps in a row. A NaN or
infinite task loss fires at once. Thresholds were checked against every run this project has logged
(benchmarks/scratch: 149 trend runs, 15 temporal ones): they fire on the three collapsed temporal students
(at steps 98-101) and on none of the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

EMA_ALPHA = 0.1  # smoothing of the per-step task loss (about ten steps)
LEARNT_FRACTION = 0.75  # the run "had learnt" once the smoothed loss fell below this share of chance
PATIENCE_STEPS = 50  # consecutive steps at or above chance after that


class DivergenceGuard:
    """Watches the per-step task loss of a single-label run; :attr:`reason` is set once it diverged."""

    def __init__(self, num_classes: int, active: bool = True):
        self.chance = math.log(num_classes) if num_classes > 1 else 0.0
        self.active = active and num_classes > 1
        self.ema: float | None = None
        self.best = math.inf
        self.run_length = 0
        self.reason: str | None = None

    def observe(self, record: dict[str, Any]) -> None:
        """Feed one step's record (``step``, ``task``, ``lr``); sets :attr:`reason` when the rule fires."""
        if not self.active or self.reason is not None:
            return
        task = float(record["task"])
        if not math.isfinite(task):
            self.reason = f"step {record['step']}: the task loss is {task} at lr {record['lr']:.3g}"
            return
        self.ema = task if self.ema is None else (1 - EMA_ALPHA) * self.ema + EMA_ALPHA * task
        self.best = min(self.best, self.ema)
        learnt = self.best <= LEARNT_FRACTION * self.chance
        self.run_length = self.run_length + 1 if learnt and self.ema >= self.chance else 0
        if self.run_length >= PATIENCE_STEPS:
            self.reason = (f"step {record['step']}: the smoothed task loss fell to {self.best:.2f} and has then stayed at or "
                           f"above chance (ln {round(math.exp(self.chance))} = {self.chance:.2f}) for "
                           f"{self.run_length} steps (now {self.ema:.2f}) at lr {record['lr']:.3g}")


def replay(records: Iterable[dict[str, Any]], num_classes: int) -> str | None:
    """The guard over a finished run's per-step records (metrics.jsonl lines with a ``step``): its reason, or
    None. Benchmarks train to the end with the guard off and report with this whether it would have stopped."""
    guard = DivergenceGuard(num_classes)
    for record in records:
        if "step" in record and record.get("task") is not None:
            guard.observe(record)
    return guard.reason
