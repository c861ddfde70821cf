"""The evaluation protocol in the scripts: --split val never reads a test list; a look at a test split is logged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.accuracy import adaptation, realfootage
from benchmarks.accuracy.stats import binomial_se, paired
from benchmarks.protocol import TEST_LOOKS, count_test_looks, log_test_look, split_list
from demo.fashion_clips import make_fashion_clips

ROOT = Path(__file__).resolve().parents[2]
QUICK_LOOKS = ROOT / "benchmarks" / "scratch" / "quick" / "test_looks.jsonl"


def _bytes(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""


@pytest.fixture()
def sealed_clips(tmp_path) -> Path:
    """A tiny clips folder whose test lists cannot be read: test.txt and test_fresh.txt are folders, so any
    attempt to read (or to draw) a test list fails."""
    if not (ROOT / "data" / "fashion-mnist").is_dir():
        pytest.fail(f"Fashion-MNIST is missing from {ROOT / 'data'}: run `make data` (make test does it)")
    clips = tmp_path / "clips"
    make_fashion_clips(clips, ROOT / "data", classes=("trouser", "dress"), per_class_train=4, per_class_val=2,
                       per_class_test=1, frames=2, size=112, seed=0)
    for name in ("test.txt", "test_fresh.txt"):
        (clips / name).unlink(missing_ok=True)
        (clips / name).mkdir()
    return clips


def _trend(clips: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.accuracy.trend", "--quick", "--json", "--no-throughput",
                           "--clips-dir", str(clips), "--results-dir", str(out), *extra],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_trend_on_val_never_reads_a_test_list(sealed_clips, tmp_path):
    looks = (_bytes(TEST_LOOKS), _bytes(QUICK_LOOKS))
    proc = _trend(sealed_clips, tmp_path / "val", "--split", "val", "--arms", "kd")
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["split"] == "val" and "test_split" not in r and "test_looks" not in r
    assert all(run["top1"] == run["val_top1"] for run in r["runs"])  # the figures are validation's
    # No look logged: not in the real log, and none of this run's in the smoke runs' log (other tests share it).
    assert _bytes(TEST_LOOKS) == looks[0]
    assert str(sealed_clips).encode() not in _bytes(QUICK_LOOKS)[len(looks[1]):]
    assert not (sealed_clips / "test_fresh").exists() and (sealed_clips / "test_fresh.txt").is_dir()


def test_trend_on_test_reads_the_test_list(sealed_clips, tmp_path):
    """The same run on the test split fails on the unreadable list: the test above can fail."""
    proc = _trend(sealed_clips, tmp_path / "test", "--split", "test")
    assert proc.returncode != 0 and "test_fresh" in proc.stderr


def test_a_look_is_logged_and_counted_per_test_set(tmp_path):
    log = tmp_path / "looks.jsonl"
    assert log_test_look("trend", "test", {"lr": 0.01}, {"default_56": 0.8}, path=log) == 1
    assert log_test_look("trend", "dev-test", {}, {}, path=log) == 1
    assert log_test_look("realfootage", "test", {}, {}, path=log, name=realfootage.TEST_SET) == 1
    assert log_test_look("trend", "test", {"lr": 0.01}, {}, path=log) == 2
    assert count_test_looks("test", log) == 2 and count_test_looks("dev-test", log) == 1
    assert count_test_looks("test", log, name=realfootage.TEST_SET) == 1
    assert count_test_looks("test", log, name=adaptation.TEST_SET) == 0
    first = json.loads(log.read_text().splitlines()[0])
    assert first["benchmark"] == "trend" and first["test_split"] == "fresh" and first["figures"] == {"default_56": 0.8}
    with pytest.raises(ValueError):
        log_test_look("trend", "val", {}, {}, path=log)


def test_choosers_refuse_a_test_split():
    with pytest.raises(SystemExit):  # a selection config chooses on validation only
        realfootage.parse_args(["--config", str(ROOT / "benchmarks/configs/realfootage_selection.yaml"),
                                "--split", "test"])
    with pytest.raises(SystemExit):
        adaptation.parse_args(["--split", "dev-test"])


def test_split_list_names_the_missing_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="val"):
        split_list(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="test_fresh"):  # no manifest: nothing to draw the split from
        split_list(tmp_path, "test")


def test_paired_test_and_binomial_se():
    p = paired([0.80, 0.82, 0.85, 0.79, 0.84], [0.78, 0.80, 0.80, 0.78, 0.80])
    assert p["mean_diff"] == pytest.approx(0.028) and p["df"] == 4 and 0.0 < p["p_two_sided"] < 0.05
    assert p["p_one_sided_greater"] == pytest.approx(p["p_two_sided"] / 2, rel=1e-3)
    assert paired([0.8, 0.8], [0.7, 0.7]) is None  # no spread in the differences: no test
    assert binomial_se(0.8, 1000) == pytest.approx(0.0126, abs=1e-4)


def test_merge_carries_an_earlier_look_and_scores_only_new_runs(tmp_path):
    """Arms added after a look at the test split join that table in a second, logged look that scores only the new
    runs: the earlier runs keep their figures even with their checkpoints gone."""
    clips = tmp_path / "clips"
    make_fashion_clips(clips, ROOT / "data", classes=("trouser", "dress"), per_class_train=4, per_class_val=2,
                       per_class_test=1, frames=2, size=112, seed=0)
    (clips / "test_fresh.txt").write_text((clips / "val.txt").read_text())  # a stand-in fresh list (4 clips)
    out, looks_before = tmp_path / "out", len(_bytes(QUICK_LOOKS).splitlines())
    assert _trend(clips, out, "--arms", "plain", "--tag", "_a").returncode == 0
    part_a = json.loads((out / "trend_a.json").read_text())
    teacher = part_a["setup"]["teacher_ckpt"]
    assert _trend(clips, out, "--arms", "logit_only", "--tag", "_b", "--teacher-ckpt", teacher).returncode == 0

    first = _trend(clips, out, "--merge", str(out / "trend_a.json"), "--split", "test", "--tag", "_m1")
    assert first.returncode == 0, first.stderr[-2000:]
    m1 = json.loads((out / "trend_m1.json").read_text())
    for run in m1["runs"]:
        if run["name"] != "teacher":  # the teacher is scored in every look
            Path(run["ckpt"]).unlink()  # carried students must not be scored again
    second = _trend(clips, out, "--merge", str(out / "trend_m1.json"), str(out / "trend_b.json"), "--split", "test",
                    "--tag", "_m2")
    assert second.returncode == 0, second.stderr[-2000:]
    m2 = json.loads((out / "trend_m2.json").read_text())
    assert "throughput_clips_per_s" not in m2 and "| n/a |" in (out / "trend_m2.md").read_text()  # --no-throughput
    top1 = {run["name"]: run["top1"] for run in m2["runs"]}
    assert all(top1[run["name"]] == run["top1"] for run in m1["runs"])
    assert {"plain_32_s0", "logit_only_32_s0"} <= set(top1) and m2["parts"] == ["trend_a.json", "trend_b.json"]
    assert m2["carried_runs"] == ["plain_32_s0", "plain_32_s1"] and (out / "trend_m2_paired.png").is_file()
    # Other smoke tests running in parallel log to the same scratch file: keep this test's looks (its clips).
    looks = [look for look in map(json.loads, _bytes(QUICK_LOOKS).splitlines()[looks_before:])
             if look["configuration"].get("clips_dir") == str(clips)]
    assert len(looks) == 2 and m2["test_looks"] > m1["test_looks"]
    assert looks[1]["configuration"]["carried"] == m2["carried_runs"]  # the log and the table agree
    assert looks[1]["configuration"]["scored"] == ["logit_only_32_s0", "logit_only_32_s1", "teacher"]

    mixed = _trend(clips, out, "--merge", str(out / "trend_m1.json"), str(out / "trend_b.json"), "--tag", "_m3")
    assert mixed.returncode != 0 and "test split" in mixed.stderr  # test figures never join a validation table
