"""Models several benchmarks measure, made on first use under benchmarks/scratch/ (never committed).

* The trend task's seed-0 teacher and distilled students (:func:`trend_runs`): the 112 px teacher and the
  default 56 and 40 px students the cascade and INT8 accuracy benchmarks measure, made by the trend benchmark
  itself with the settings they were measured with (5 student epochs at lr 0.01, the trainer's default
  objective). Their clips folder is :data:`TREND_CLIPS` (train, val, development test and fresh test lists).
* The label-free distilled 56 px Lite0 (:func:`realfootage_student`): ``make demo``'s stage-5 recipe
  (:func:`demo.realfootage.stage_realfootage`, unchanged defaults), distilled from the ImageNet Lite0 at 224 px
  on unlabelled photos and footage.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from benchmarks.accuracy import trend
from benchmarks.common import ROOT, SCRATCH
from demo.realfootage import FootageBudget, stage_realfootage

TREND_CLIPS = SCRATCH / "fashion_tro-dre-bag-san-sne_80x30x60_f2_s0"
TREND_RUNS = SCRATCH / "trend_runs_shared"
TREND_MODELS = ("teacher", "kd_56_s0", "kd_40_s0")
TREND_ARGS = ["--seeds", "0", "--kd-only", "--no-throughput", "--tag", "_shared", "--epochs", "5", "--lr", "0.01",
              "--split", "val"]
REALFOOTAGE_DIR = SCRATCH / "realfootage_student"
REALFOOTAGE_STUDENT = REALFOOTAGE_DIR / "realfootage" / "distilled_56.safetensors"


def trend_runs() -> Path:
    """The folder holding ``teacher/``, ``kd_56_s0/`` and ``kd_40_s0/`` (each with ``last.ckpt``); trains the
    missing ones with the trend benchmark (about 15 minutes on one core)."""
    if not all((TREND_RUNS / name / "last.ckpt").is_file() for name in TREND_MODELS):
        with contextlib.redirect_stdout(sys.stderr):  # the caller's stdout may be a --json document
            trend.main([*TREND_ARGS, "--results-dir", str(TREND_RUNS / "results")])
    return TREND_RUNS


def realfootage_student() -> Path:
    """The label-free distilled 56 px Lite0's checkpoint; made with the demo's recipe when missing (about 4 min)."""
    if not REALFOOTAGE_STUDENT.is_file():
        with contextlib.redirect_stdout(sys.stderr):  # the caller's stdout may be a --json document
            stage_realfootage(ROOT / "data", REALFOOTAGE_DIR, FootageBudget())
    return REALFOOTAGE_STUDENT
