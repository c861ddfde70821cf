"""The fresh test split: no source image shared with any committed split, the other lists and clips untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from benchmarks.accuracy import trend
from benchmarks.fresh_split import (
    COMMITTED_RECIPES,
    FRESH_LIST,
    excluded_sources,
    fresh_sources,
    recipe_sources,
    write_fresh_test,
)
from benchmarks.protocol import split_list
from demo.assets import FASHION_CLASSES, fashion_mnist
from demo.fashion_clips import make_fashion_clips

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
TREND_KEY = "benchmarks.accuracy.trend (default, trend_selection*, keyframe_sampling)"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not (DATA / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is missing from {DATA}/fashion-mnist: run `make data` (make test does it)")
    return DATA


def _recipe(args) -> dict:
    return {"classes": tuple(args.classes), "per_class_train": args.per_class_train,
            "per_class_val": args.per_class_val, "per_class_test": args.per_class_test, "seed": args.data_seed}


def test_the_recipes_are_the_callers_own():
    assert _recipe(trend.parse_args([])) == COMMITTED_RECIPES[TREND_KEY]
    assert _recipe(trend.parse_args(["--quick"])) == COMMITTED_RECIPES["benchmarks.accuracy.trend --quick"]
    for config in sorted((ROOT / "benchmarks" / "configs").glob("trend*.yaml")):  # variants change no data option
        assert _recipe(trend.parse_args(["--config", str(config)])) == COMMITTED_RECIPES[TREND_KEY], config.name


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith((".", "test_fresh"))
            and "test_fresh" not in p.parts}


def test_fresh_split_shares_no_source_image_and_leaves_the_rest(tmp_path, data_dir):
    clips = tmp_path / "clips"
    make_fashion_clips(clips, data_dir, classes=("sandal", "bag"), per_class_train=2, per_class_val=2,
                       per_class_test=2, frames=2, size=64, seed=0)
    before = _digest(clips)
    listing = write_fresh_test(clips, per_class=6, data_dir=data_dir, progress=False)
    assert listing == clips / FRESH_LIST and split_list(clips, "test") == listing
    assert _digest(clips) == before  # train/val/test lists, clips and manifest untouched

    record = json.loads((clips / "test_fresh.json").read_text())
    fresh = {("test", c["source_index"]) for c in record["clips"]}
    assert len(fresh) == 12
    own = {(c["source_split"], c["source_index"]) for c in json.loads((clips / "manifest.json").read_text())["clips"]}
    assert not fresh & own
    for recipe in COMMITTED_RECIPES.values():
        assert not fresh & recipe_sources(recipe, data_dir)
    _, labels = fashion_mnist("test", data_dir)
    lines = [line.split() for line in listing.read_text().splitlines()]
    assert [int(label) for _, label in lines] == [c["label"] for c in record["clips"]]
    for clip in record["clips"]:  # the label is the source image's class, and the clip exists
        assert FASHION_CLASSES[labels[clip["source_index"]]] == ("sandal", "bag")[clip["label"]]
        assert (clips / clip["path"]).stat().st_size > 0

    mtime = listing.stat().st_mtime_ns
    assert write_fresh_test(clips, per_class=6, data_dir=data_dir, progress=False) == listing
    assert listing.stat().st_mtime_ns == mtime  # drawn once


def test_the_trend_folder_fresh_draw_avoids_every_committed_image(data_dir, tmp_path):
    """The split the headline claims use (trend's folder, 200 per class) without rendering it."""
    trend_recipe = COMMITTED_RECIPES[TREND_KEY]
    folder = tmp_path / "manifest_only"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"clips": []}))
    excluded = excluded_sources(folder, data_dir)
    picked = fresh_sources(list(trend_recipe["classes"]), excluded, 200, data_dir)
    fresh = {("test", i) for indices in picked.values() for i in indices}
    assert len(fresh) == 1000
    assert not fresh & recipe_sources(trend_recipe, data_dir)
    assert not fresh & excluded
