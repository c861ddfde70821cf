"""The temporal benchmark's smoke run: --split val never opens the test list; --split test scores the same
fixed configuration's models once and logs one look (beside the smoke results, not in the real log)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.accuracy import temporal
from benchmarks.protocol import TEST_LOOKS

ROOT = Path(__file__).resolve().parents[2]


def test_temporal_quick_val_then_test(tmp_path, monkeypatch, capsys):
    if not (ROOT / "data" / "fashion-mnist").is_dir() or not (ROOT / "data" / "photos").is_dir():
        pytest.fail(f"shipped data missing under {ROOT / 'data'}: run `make data` (make test does it)")
    real_split_list = temporal.split_list
    opened = []

    def guarded(clips_dir, split):
        opened.append(split)
        return real_split_list(clips_dir, split)

    monkeypatch.setattr(temporal, "split_list", guarded)
    looks_before = TEST_LOOKS.read_text() if TEST_LOOKS.is_file() else ""
    assert temporal.main(["--quick", "--json", "--results-dir", str(tmp_path), "--grid-only"]) == 0
    grid = json.loads(capsys.readouterr().out)
    assert [("plain_budget" in f, "kd" in f) for f in grid["families"]] == [(True, False)] * 2
    assert not list((tmp_path / "temporal_runs").glob("*/kd_*"))  # the grid stage trains no distilled student
    assert (tmp_path / "temporal_grid.md").read_text().startswith("# Temporal task: the students' budgets")
    # One arm's students (a stage of a parallel run); the full run below reuses them.
    assert temporal.main(["--quick", "--json", "--results-dir", str(tmp_path), "--arms", "plain"]) == 0
    stage = json.loads(capsys.readouterr().out)
    assert [("plain" in f, "kd" in f, f["seed_ids"]) for f in stage["families"]] == [(True, False, [0, 1])] * 2
    assert not list((tmp_path / "temporal_runs").glob("*/kd_*")) and (tmp_path / "temporal_plain.json").is_file()
    with pytest.raises(SystemExit, match="validation only"):
        temporal.main(["--quick", "--results-dir", str(tmp_path), "--arms", "kd", "--split", "test"])
    assert temporal.main(["--quick", "--json", "--results-dir", str(tmp_path)]) == 0  # reuses the grid's models
    r = json.loads(capsys.readouterr().out)
    assert opened == [] and r["split"] == "val" and r["complete"] is True
    assert r == json.loads((tmp_path / "temporal.json").read_text())
    md = (tmp_path / "temporal.md").read_text()
    assert md.startswith("# Temporal task: ResKD vs tuned plain students (val split)") and "no test clip" in md
    assert md.count("| tsm_effnet_lite0 | ResKD |") == 2 and (tmp_path / "temporal_paired.png").is_file()
    for fam in r["families"]:  # the factors of every model, on validation (a TSN-like order-blind model: 0.5)
        assert all(0.0 <= fam[m]["factors"][k] <= 1.0 for m in ("kd", "plain") for k in ("garment", "order"))
        assert fam["teacher"]["factors"]["top1"] == pytest.approx(fam["teacher"]["val_top1"], abs=1e-3)
    assert r["frames"] == 8 and r["teacher"]["input_size"] == 64 and r["teacher"]["top1"] is None
    assert [f["arch"] for f in r["families"]] == ["tsm_effnet_lite0", "r3d_18"]
    for fam in r["families"]:
        assert fam["input_size"] == 32 and fam["plain_budget"]["grid"] and 0.0 <= fam["teacher"]["val_top1"] <= 1.0
        for arm in ("kd", "plain"):
            assert len(fam[arm]["seeds"]) == 2 and fam[arm]["seeds"] == fam[arm]["val_seeds"]
        assert "paired_p" in fam and "welch_p" in fam
    # A further arm beside the comparison: trained against the same plain students (which are reused).
    assert temporal.main(["--quick", "--json", "--results-dir", str(tmp_path), "--arms", "kd,plain,feature_only"]) == 0
    extra = json.loads(capsys.readouterr().out)
    for fam, val_fam in zip(extra["families"], r["families"], strict=True):
        assert fam["plain"]["seeds"] == val_fam["plain"]["seeds"] and len(fam["feature_only"]["seeds"]) == 2
        assert "paired_vs_plain" in fam["feature_only"] and "welch_vs_plain" in fam["feature_only"]
    assert "| r3d_18 | feature-only KD |" in (tmp_path / "temporal.md").read_text()
    runs = sorted(p.parent.name for p in (tmp_path / "temporal_runs").glob("*/*/row.json")
                  if "feature_only" not in p.parent.name)
    assert runs == sorted(["teacher_64", "plain_32_lr0.01_e1_s0", "plain_32_lr0.01_e1_s1", "kd_32_lr0.01_e1_s0",
                           "kd_32_lr0.01_e1_s1"] * 2)

    assert temporal.main(["--quick", "--json", "--results-dir", str(tmp_path), "--split", "test"]) == 0
    t = json.loads(capsys.readouterr().out)
    assert opened.count("test") > 0 and t["split"] == "test" and t["test_looks"] == 1
    assert 0.0 <= t["teacher"]["top1"] <= 1.0
    for fam, val_fam in zip(t["families"], r["families"], strict=True):
        assert fam["kd"]["val_seeds"] == val_fam["kd"]["val_seeds"]  # the same models: nothing retrained
        assert all(0.0 <= x <= 1.0 for x in fam["kd"]["seeds"] + fam["plain"]["seeds"])
        assert fam["test_binomial_se"] > 0
    assert "look 1 at that split" in (tmp_path / "temporal.md").read_text()
    look = json.loads((tmp_path / "test_looks.jsonl").read_text())
    assert look["benchmark"] == "temporal" and look["test_split"] == temporal.TEST_SET  # its own test set, counted apart
    assert (TEST_LOOKS.read_text() if TEST_LOOKS.is_file() else "") == looks_before  # the real log is untouched

    # The distilled arm at its own validated rate (--kd-lr-grid): a grid at the plain epochs, then every seed.
    assert temporal.main(["--quick", "--json", "--results-dir", str(tmp_path), "--kd-lr-grid", "0.03,0.01"]) == 0
    own = json.loads(capsys.readouterr().out)
    for fam, val_fam in zip(own["families"], r["families"], strict=True):
        cells = fam["kd_budget"]["grid"]
        assert [c["lr"] for c in cells] == [0.03, 0.01] and fam["kd"]["lr"] == fam["kd_budget"]["lr"]
        best = max(cells, key=lambda c: (c["val_top1_mean"], -c["lr"]))
        assert fam["kd_budget"]["lr"] == best["lr"] and fam["plain"]["lr"] == fam["plain_budget"]["lr"] == 0.01
        assert fam["plain"]["seeds"] == val_fam["plain"]["seeds"]  # plain keeps its own budget and models
        assert all(len(fam[a]["guard_stop"]) == 2 for a in ("kd", "plain"))  # the guard's replay per seed
    md = (tmp_path / "temporal.md").read_text()
    assert "| r3d_18 | " in md and "| ResKD | 0.03 | 1 |" in md and "at its own learning rate chosen on" in md
    assert (tmp_path / "temporal_runs" / "tsm_effnet_lite0" / "kd_32_lr0.03_e1_s0" / "row.json").is_file()
