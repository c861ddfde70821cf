"""The benchmark scripts' --quick paths run end to end and write JSON of the documented shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, out: Path, *extra: str) -> dict:
    """``python -m benchmarks.<module> --quick --json`` from the repository root, as the README says to run it."""
    if not (ROOT / "data" / "fashion-mnist").is_dir() or not (ROOT / "data" / "footage" / "bbb_film.mp4").is_file():
        pytest.fail(f"shipped data missing under {ROOT / 'data'}: run `make data` (make test does it)")
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--quick", "--json",
                           "--results-dir", str(out), *extra], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    stem = module.rsplit(".", 1)[-1]
    written = json.loads((out / f"{stem}.json").read_text())
    assert written == printed
    assert (out / f"{stem}.md").read_text().startswith("# ")
    return written


def test_trend_quick(tmp_path):
    r = _run("accuracy.trend", tmp_path)
    assert r["complete"] is True and r["defaults"] is True and r["split"] == "val" and r["commit"]
    assert set(r["teacher"]) >= {"input_size", "top1", "val_top1"} and r["teacher"]["input_size"] == 112
    assert 0.0 <= r["teacher"]["top1"] <= 1.0
    assert r["students"]
    for st in r["students"]:
        assert isinstance(st["input_size"], int) and st["input_size"] < 112
        for key in ("kd", "plain"):
            v = st[key]
            assert set(v) >= {"top1_mean", "top1_std", "seeds", "val_seeds"} and len(v["seeds"]) == 2
            assert all(0.0 <= x <= 1.0 for x in v["seeds"])
        assert "welch" in st and "gap_closed" in st
        assert st["throughput_clips_per_s"] > 0
    assert r["throughput_load_average_1min"] >= 0 and "load average" in (tmp_path / "trend.md").read_text()
    machine = r["throughput_machine"]  # the speed figures' CPU, recorded with them (not the reader's)
    assert f"on {machine['cpus']} cores ({machine['cpu']})" in (tmp_path / "trend.md").read_text()
    kd_runs = [run for run in r["runs"] if run["name"].startswith("kd_")]
    assert kd_runs and all(run["first_steps"]["kd"] > 0 for run in kd_runs)  # the per-step log was read
    assert (tmp_path / "trend.png").stat().st_size > 1000


def test_realfootage_quick(tmp_path):
    r = _run("accuracy.realfootage", tmp_path, "--split", "test")
    assert r["split"] == "test" and r["test_looks"] >= 1  # logged in the quick runs' own look log
    assert r["heldout_videos"] == ["bikes.mp4", "carphone_pristine.mp4"] and r["heldout_clips"] > 0
    models = [row["model"] for row in r["rows"]]
    assert {"untouched", "distilled", "bn_recal", "calibrated_only", "distilled_uncalibrated",
                       "distilled_film_only"} <= set(models)
    for row in r["rows"]:
        assert set(row) >= {"model", "input_size", "top1_agreement", "mean_kl", "val"}
        assert 0.0 <= row["top1_agreement"] <= 1.0 and row["mean_kl"] >= 0.0
    d = next(row for row in r["rows"] if row["model"] == "distilled")  # the mean over seeds, with every seed
    assert [p["seed"] for p in d["seeds"]] == r["setup"]["seeds"] == [0, 1]
    for key in ("top1_agreement", "mean_kl"):
        values = [p[key] for p in d["seeds"]]
        assert abs(d[key] - sum(values) / len(values)) < 1e-3 and d[f"{key}_std"] >= 0.0
    t = r["target"]
    assert t["seeds"] == 2 and t["seeds_reaching_2x"] == sum(p["reaches_2x"] for p in d["seeds"])
    assert t["met"] == (d["top1_agreement"] >= 2 * t["untouched_top1_agreement"]
                        and d["mean_kl"] < next(row for row in r["rows"] if row["model"] == "untouched")["mean_kl"])
    s = r["setup"]
    assert s["quick"] is True and r["selection"]
    # Split by file: no test or validation file among the training sources.
    assert not set(r["heldout_videos"]) & (set(s["train_videos"]) | set(s["val_videos"]) | {"bbb_film.mp4"})
    assert not set(s["train_photos"]) & set(s["val_photos"]) and not set(s["train_videos"]) & set(s["val_videos"])
    assert (tmp_path / "realfootage.png").stat().st_size > 1000


def test_engines_quick(tmp_path):
    """The engine benchmark's smoke run: the engine table (eager, ONNX Runtime, OpenVINO FP32 in their own
    processes) and the streaming section (predict_iter with each engine) on a tiny model."""
    r = _run("speed.engines", tmp_path)
    assert r["quick"] is True and r["complete"] is True
    engines = {row["engine"]: row for row in r["engines"]}
    assert set(engines) == {"eager", "onnxruntime", "openvino_fp32"}
    for row in engines.values():
        assert row["median_ms"] > 0 and row["runs"] == 2 and row["within_fp32_tolerance"] is True
    assert engines["openvino_fp32"]["precision"] == "f32"
    stream = {row["engine"]: row for row in r["stream"]}
    assert set(stream) == {"eager", "onnxruntime", "openvino_fp32"}
    for row in stream.values():
        assert row["videos_per_s"] > 0 and row["videos"] == 2
        assert set(row["stages_ms_per_video"]) == {"demux", "decode", "preprocess", "infer", "wait"}
    assert "## Streaming end to end per engine" in (tmp_path / "engines.md").read_text()


def test_realfootage_ceiling_quick(tmp_path):
    """The transductive diagnostic: it trains on frames of the test files, so it must never train on a
    scored frame (odd frames for training, even frames scored) and must say it is a diagnostic."""
    r = _run("accuracy.realfootage_ceiling", tmp_path)
    assert r["quick"] is True and r["diagnostic"].startswith("transductive")
    assert r["test_videos"] == ["bikes.mp4", "carphone_pristine.mp4"]
    for name, idx in r["frame_indices"].items():
        assert idx["train"] and idx["scored"] and not set(idx["train"]) & set(idx["scored"]), name
        assert all(i % 2 == 1 for i in idx["train"]) and all(i % 2 == 0 for i in idx["scored"]), name
    assert r["train_frames"] == sum(len(idx["train"]) for idx in r["frame_indices"].values())
    assert [row["model"] for row in r["rows"]] == ["teacher_at_112", "untouched", "distilled_on_test_neighbours"]
    for row in r["rows"]:
        assert 0.0 <= row["top1_agreement"] <= 1.0 and row["mean_kl"] >= 0.0


def test_adaptation_quick(tmp_path):
    """Issue 25's protocol in miniature: every row per source and pooled, and no frame of a report span (nor
    of the gap before the choose span) is read for adaptation or choice."""
    r = _run("accuracy.adaptation", tmp_path, "--split", "test")
    assert r["complete"] is True and r["report_looks"] == 1 and r["test_looks"] >= 1 and r["commit"] and r["machine"]
    assert [s["video"] for s in r["sources"]] == ["vtest.avi", "bbb_film.mp4", "Megamind.avi", "bikes.mp4"]
    for s in r["sources"]:
        idx, n = s["frame_indices"], s["frames"]
        assert s["report_frames"] == len(idx["report"]) > 0 and idx["adapt"] and idx["choose"]
        assert max(idx["adapt"]) < 0.60 * n <= 0.65 * n <= min(idx["choose"])  # the gap is never read
        assert max(idx["adapt"] + idx["choose"]) < min(idx["report"]) and min(idx["report"]) >= 0.75 * n
        assert s["adapt_span"][1] <= s["choose_span"][0] < s["choose_span"][1] <= s["report_span"][0]
    rows = {(row["model"], row["source"]): row for row in r["rows"]}
    sources = [s["video"] for s in r["sources"]] + ["pooled"]
    assert set(rows) == {(m, s) for m in ("untouched", "calibrated", "adapted", "adapted_other_sources")
                         for s in sources}
    for row in r["rows"]:
        assert [p["seed"] for p in row["seeds"]] == r["setup"]["seeds"] == [0, 1]
        assert 0.0 <= row["top1_agreement"] <= row["top5_overlap"] <= 1.0 and row["mean_kl"] >= 0.0
    assert rows[("calibrated", "pooled")]["mean_kl"] < rows[("untouched", "pooled")]["mean_kl"]
    assert set(r["targets"]) == {"twice_untouched", "calibrated_plus_0.05", "lower_kl"}
    assert (tmp_path / "adaptation.png").stat().st_size > 1000


def test_cascade_quick(tmp_path):
    r = _run("accuracy.cascade", tmp_path)
    keys = {"small_input_size", "large_input_size", "split", "threshold", "escalated", "top1", "small_top1",
            "large_top1", "gflops_fraction", "videos_per_s_ratio"}
    assert [p["small_input_size"] for p in r["pairs"]] == [56, 40]
    for p in r["pairs"]:
        assert keys <= set(p) and p["large_input_size"] == 112 and p["split"] == "val"
        assert p["verified"] is True  # the real Cascade gave the simulated answer on every clip
        assert p["gflops_fraction"] <= 0.4 and p["videos_per_s_ratio"] > 0
    assert set(r["realfootage"]["small"]) == {"distilled_56", "untouched_56"}
    assert (tmp_path / "cascade.png").stat().st_size > 1000
