"""What every benchmark shares: where things are, the code's commit, and variants as YAML configs.

A config names the benchmark it varies (``_base_``, the module) and states only what changes:
``args`` are that benchmark's command-line options (by their argparse names, ``w_kd`` for ``--w-kd``)
that become its new defaults; anything else is a section the benchmark reads itself (a selection table).
Options given on the command line still win over the config.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCRATCH = ROOT / "benchmarks" / "scratch"


def results_dir(name: str, quick: bool, given: str | Path | None = None) -> Path:
    """``given``, else benchmarks/scratch/quick for a smoke run, else benchmarks/results/<name> (the latest run)."""
    if given:
        return Path(given)
    return SCRATCH / "quick" if quick else RESULTS / name


def git_commit() -> str:
    """HEAD's commit, with ``-dirty`` when tracked files changed since ("unknown" outside git)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_config(path: str | Path, base: str) -> dict[str, Any]:
    """A variant's YAML; refuses one whose ``_base_`` is not ``base`` (the module that runs it)."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    if config.get("_base_") != base:
        raise SystemExit(f"{path}: _base_ is {config.get('_base_')!r}, but this is {base} "
                         f"(run it with python -m {config.get('_base_')} --config {path})")
    return config


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None, base: str) -> argparse.Namespace:
    """Parse ``argv`` after ``--config``'s ``args`` became the parser's defaults; the whole config (or {}) is
    left in ``namespace.config``."""
    parser.add_argument("--config", default=None, metavar="YAML",
                        help=f"a variant: YAML naming _base_: {base} and the options that change")
    early, _ = parser.parse_known_args(argv)
    config = load_config(early.config, base) if early.config else {}
    delta = config.get("args") or {}
    known = {a.dest for a in parser._actions}
    unknown = sorted(set(delta) - known)
    if unknown:
        parser.error(f"{early.config}: {base} has no options {unknown}")
    parser.set_defaults(**delta)
    args = parser.parse_args(argv)
    args.config = config
    return args
