"""The evaluation protocol every accuracy benchmark follows: choose on validation, look at a test split once.

- ``add_split_argument`` gives a script ``--split val|test`` (default ``val``). Selection, probes and choosers run on
  ``val`` and never open a test list.
- ``split_list`` maps a split to the list a script scores. ``test`` is the sealed fresh test split (the headline
  claims; drawn on first use from Fashion-MNIST test images no committed split uses, ``benchmarks.fresh_split``);
  the development test split, used while the method was being developed, is ``dev-test`` and is kept only
  to reproduce figures published before the fresh split existed.
- ``log_test_look`` appends one line per look at a test split to ``benchmarks/results/test_looks.jsonl``, so anyone
  can count the looks each split has had (``count_test_looks``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, git_commit
from benchmarks.fresh_split import FRESH_LIST, write_fresh_test

TEST_LOOKS = RESULTS / "test_looks.jsonl"
SPLITS = ("val", "test", "dev-test")
SPLIT_FILES = {"val": "val.txt", "dev-test": "test.txt", "test": FRESH_LIST}
TEST_SPLIT_NAMES = {"test": "fresh", "dev-test": "development"}


def add_split_argument(parser: argparse.ArgumentParser) -> None:
    """``--split``: ``val`` for choosing (the default); ``test`` only for the final run of a fixed configuration."""
    parser.add_argument("--split", choices=SPLITS, default="val",
                        help="the split scored: val (choosing, probes; the default), test (the sealed fresh test "
                             "split: only the final run of a fixed configuration, logged in "
                             "benchmarks/results/test_looks.jsonl) or dev-test (the development test split, "
                             "looked at while the method was developed; reproductions only, logged too)")


def is_test(split: str) -> bool:
    """Whether ``split`` is a test split (every score on it is a logged look)."""
    return split in TEST_SPLIT_NAMES


def split_list(clips_dir: str | Path, split: str) -> Path:
    """The clip list of ``split`` inside a clips folder; a missing list is an error naming it.

    The fresh test split (``test``) of a ``demo.fashion_clips`` folder is drawn on first use
    (``benchmarks.fresh_split.write_fresh_test``: Fashion-MNIST test images no committed split uses)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    path = Path(clips_dir) / SPLIT_FILES[split]
    if split == "test" and not path.is_file() and (Path(clips_dir) / "manifest.json").is_file():
        write_fresh_test(clips_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {split} list in this clips folder")
    return path


def count_test_looks(split: str = "test", path: Path = TEST_LOOKS) -> int:
    """How many looks ``split`` ('test' or 'dev-test') has had, by the log."""
    if not path.is_file():
        return 0
    name = TEST_SPLIT_NAMES[split]
    return sum(1 for line in path.read_text().splitlines() if line.strip() and json.loads(line)["test_split"] == name)


def log_test_look(benchmark: str, split: str, configuration: dict[str, Any], figures: dict[str, Any],
                  path: Path = TEST_LOOKS) -> int:
    """Append one look at test split ``split`` to the log; returns that split's look count including this one."""
    if not is_test(split):
        raise ValueError(f"{split!r} is not a test split: only looks at a test split are logged")
    record = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "commit": git_commit(),
              "benchmark": benchmark, "test_split": TEST_SPLIT_NAMES[split], "configuration": configuration,
              "figures": figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    return count_test_looks(split, path)
