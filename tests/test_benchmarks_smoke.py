"""The benchmark scripts' --quick paths run end to end and write JSON of the documented shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path) -> dict:
    if not (ROOT / "data" / "fashion-mnist").is_dir() or not (ROOT / "data" / "footage" / "bbb_film.mp4").is_file():
        pytest.fail(f"shipped data missing under {ROOT / 'data'}: run `make data` (make test does it)")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json",
                           "--results-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    stem = script.removesuffix(".py")
    written = json.loads((out / f"{stem}.json").read_text())
    assert written == printed
    assert (out / f"{stem}.md").read_text().startswith("# ")
    return written


def test_trend_quick(tmp_path):
    r = _run("reskd_trend.py", tmp_path)
    assert r["complete"] is True
    assert set(r["teacher"]) >= {"input_size", "top1"} and r["teacher"]["input_size"] == 112
    assert 0.0 <= r["teacher"]["top1"] <= 1.0
    assert r["students"]
    for st in r["students"]:
        assert isinstance(st["input_size"], int) and st["input_size"] < 112
        for key in ("kd", "plain"):
            v = st[key]
            assert set(v) >= {"top1_mean", "top1_std", "seeds"}
            assert all(0.0 <= x <= 1.0 for x in v["seeds"])
        assert st["throughput_clips_per_s"] > 0
    assert (tmp_path / "reskd_trend.png").stat().st_size > 1000


def test_realfootage_quick(tmp_path):
    r = _run("reskd_realfootage.py", tmp_path)
    assert r["teacher"]["input_size"] == 224
    sizes = [st["input_size"] for st in r["students"]]
    assert sizes == [56, 32]
    for st in r["students"]:
        for key in ("plain", "bn_recal", "reskd"):
            agree = st[key]["all_frames"]["top1_agree"]
            assert 0.0 <= agree <= 1.0
    assert r["setup"]["quick"] is True
