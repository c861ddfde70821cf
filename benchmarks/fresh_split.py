"""The fresh test split of a Fashion-MNIST clips folder: drawn once from test images no committed split uses.

The development test split (``test.txt``) was looked at while the method was being developed, so the headline
claims are scored on a second test split, ``test_fresh.txt``, written into the same clips folder beside the
untouched train/val/test lists and clips (checkpoints trained on them stay valid).

Which images are excluded is computed, not guessed: ``demo.fashion_clips`` draws each class's images as a prefix
of one permutation per (seed, classes, source split), so every recipe below is replayed through the same plan
(``demo.fashion_clips._plan``) and its source indices are removed, together with every index in the folder's own
``manifest.json``. The recipes are every ``make_fashion_clips`` caller in demo/ and benchmarks/:

* ``benchmarks.accuracy.trend``: its default data (also the ``trend_selection*.yaml`` variants, which change no data
  option, and ``benchmarks.accuracy.keyframe_sampling``, which re-renders the trend folder's recipe from its
  manifest) and its ``--quick`` data; tests/benchmarks/test_fresh_split.py checks these equal trend's parser.
* ``demo.stages.stage_clips`` (the demo's split) with ``demo.stages.Budget``'s defaults.
* ``python -m demo.fashion_clips`` with its defaults.

The realfootage benchmarks (``realfootage``, ``realfootage_selection``, ``realfootage_fm_selection``,
``realfootage_ceiling``) and ``adaptation`` use photos and footage, no Fashion-MNIST image.

The fresh clips are picked per Fashion-MNIST class from one fixed permutation of that class's test images
(seeded by ``FRESH_SEED`` and the class id, independent of the folder), skipping excluded images, and rendered
with the folder's settings (frames, canvas, item sizes, seed) under ``test_fresh/``; ``test_fresh.json`` records
the source indices and the exclusions; ``test_fresh.txt`` is written last, so its presence means the split is
complete. 200 clips per class: on 1000 clips the binomial SE of a top-1 near 0.8 is about 1.3 points.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from demo.assets import DEFAULT_DATA_DIR, FASHION_CLASSES, fashion_mnist
from demo.fashion_clips import DEFAULT_CLASSES, _plan, render_clip
from demo.stages import DEMO_CLASSES, Budget
from reskd_infer.errors import DatasetError
from reskd_infer.io.files import atomic_write
from reskd_infer.video.encode import write_mp4

FRESH_LIST = "test_fresh.txt"
FRESH_DIR = "test_fresh"
FRESH_MANIFEST = "test_fresh.json"
FRESH_PER_CLASS = 200
FRESH_SEED = 24  # issue 24; the permutation per class is seeded by (FRESH_SEED, Fashion-MNIST class id)
FRESH_RENDER_INDEX = 3  # clip rng key after train 0, val 1, test 2 (demo.fashion_clips._render_all)

TREND_CLASSES = ("trouser", "dress", "bag", "sandal", "sneaker")
# The data recipes of every make_fashion_clips caller (see the module docstring): classes, per-class counts, seed.
COMMITTED_RECIPES: dict[str, dict[str, Any]] = {
    "benchmarks.accuracy.trend (default, trend_selection*, keyframe_sampling)":
        {"classes": TREND_CLASSES, "per_class_train": 80, "per_class_val": 30, "per_class_test": 60, "seed": 0},
    "benchmarks.accuracy.trend --quick":
        {"classes": TREND_CLASSES[:2], "per_class_train": 4, "per_class_val": 2, "per_class_test": 2, "seed": 0},
    "demo.stages.stage_clips (the demo)":
        {"classes": DEMO_CLASSES, "per_class_train": Budget().per_class_train,
         "per_class_val": Budget().per_class_val, "per_class_test": 0, "seed": 0},
    "python -m demo.fashion_clips (defaults)":
        {"classes": DEFAULT_CLASSES, "per_class_train": 60, "per_class_val": 20, "per_class_test": 0, "seed": 0},
}


def recipe_sources(recipe: dict[str, Any], data_dir: str | Path = DEFAULT_DATA_DIR) -> set[tuple[str, int]]:
    """(Fashion-MNIST split, image index) of every clip ``recipe`` makes, replayed through the clips' own plan."""
    per_split = {"train": {"train": recipe["per_class_train"]},
                 "test": {"val": recipe["per_class_val"], "test": recipe["per_class_test"]}}
    jobs = _plan(tuple(recipe["classes"]), per_split, np.random.default_rng(recipe["seed"]), data_dir)
    return {(source, idx) for _, source, _, idx in jobs}


def excluded_sources(clips_dir: str | Path, data_dir: str | Path = DEFAULT_DATA_DIR) -> set[tuple[str, int]]:
    """Every source image a committed recipe or this folder's manifest uses."""
    used: set[tuple[str, int]] = set()
    for recipe in COMMITTED_RECIPES.values():
        used |= recipe_sources(recipe, data_dir)
    for clip in json.loads((Path(clips_dir) / "manifest.json").read_text())["clips"]:
        used.add((clip["source_split"], int(clip["source_index"])))
    return used


def fresh_sources(classes: list[str], excluded: set[tuple[str, int]], per_class: int,
                  data_dir: str | Path = DEFAULT_DATA_DIR) -> dict[int, list[int]]:
    """Per label of ``classes``: ``per_class`` Fashion-MNIST test indices of that class, none excluded."""
    _, labels = fashion_mnist("test", data_dir)
    picked: dict[int, list[int]] = {}
    for label, name in enumerate(classes):
        fm_class = FASHION_CLASSES.index(name)
        order = np.random.default_rng([FRESH_SEED, fm_class]).permutation(np.flatnonzero(labels == fm_class))
        free = [int(i) for i in order if ("test", int(i)) not in excluded]
        if len(free) < per_class:
            raise DatasetError(f"Fashion-MNIST test split has {len(free)} unused images of class {name!r}, "
                               f"{per_class} requested for the fresh test split")
        picked[label] = free[:per_class]
    return picked


def _render_fresh(clips: Path, picked: dict[int, list[int]], settings: dict[str, Any], data_dir: str | Path,
                  progress: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """Render the picked images into a temporary folder renamed to ``test_fresh/``; list lines and manifest."""
    images, _ = fashion_mnist("test", data_dir)
    tmp = clips / f".{FRESH_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    lines, manifest = [], []
    jobs = [(label, n, idx) for label, indices in picked.items() for n, idx in enumerate(indices)]
    for label, n, idx in tqdm(jobs, desc="fresh test clips", leave=False, disable=not progress):
        rng = np.random.default_rng([settings["seed"], FRESH_RENDER_INDEX, label, n])
        clip, info = render_clip(images[idx], rng, settings["frames"], settings["size"], tuple(settings["item_sizes"]))
        rel = f"{FRESH_DIR}/{settings['classes'][label]}/{n:04d}.mp4"
        write_mp4(tmp / rel.removeprefix(f"{FRESH_DIR}/"), clip)
        lines.append(f"{rel} {label}")
        manifest.append({"path": rel, "split": "test_fresh", "label": label, "class": settings["classes"][label],
                         "source_split": "test", "source_index": idx, **info})
    shutil.rmtree(clips / FRESH_DIR, ignore_errors=True)  # a run that died before writing the list
    tmp.rename(clips / FRESH_DIR)
    return lines, manifest


def write_fresh_test(clips_dir: str | Path, per_class: int = FRESH_PER_CLASS,
                     data_dir: str | Path = DEFAULT_DATA_DIR, progress: bool = True) -> Path:
    """Write ``test_fresh.txt`` and its clips into a ``make_fashion_clips`` folder, once; returns the list.

    Leaves every other file of the folder untouched. Safe to call from processes running in parallel (a lock
    file serialises them; the later ones find the list written). Raises :class:`DatasetError` when the folder
    has no Fashion-MNIST manifest or too few unused images remain.
    """
    clips = Path(clips_dir)
    listing = clips / FRESH_LIST
    manifest_path = clips / "manifest.json"
    if not manifest_path.is_file():
        raise DatasetError(f"{manifest_path}: missing; the fresh test split is drawn only for "
                           "demo.fashion_clips folders")
    with open(clips / f".{FRESH_DIR}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if listing.is_file():
            return listing
        settings = json.loads(manifest_path.read_text())["settings"]
        excluded = excluded_sources(clips, data_dir)
        picked = fresh_sources(settings["classes"], excluded, per_class, data_dir)
        lines, manifest = _render_fresh(clips, picked, settings, data_dir, progress)
        chosen = sorted(i for indices in picked.values() for i in indices)
        record = {"settings": {**settings, "per_class": per_class, "fresh_seed": FRESH_SEED,
                               "render_index": FRESH_RENDER_INDEX},
                  "excluded": {"recipes": {k: {**v, "classes": list(v["classes"])}
                                           for k, v in COMMITTED_RECIPES.items()},
                               "and": "every source index in manifest.json",
                               "test_images_excluded": sum(1 for s, _ in excluded if s == "test")},
                  "source_indices_sha256": hashlib.sha256(json.dumps(chosen).encode()).hexdigest(),
                  "clips": manifest}
        atomic_write(clips / FRESH_MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
        atomic_write(listing, lambda tmp: Path(tmp).write_text("".join(f"{line}\n" for line in lines)))
    return listing
