"""reskd-card: its figures are reskd-eval's and reskd-bench's for the same models and clips; an unlabelled card on a
folder names the clips it could not read; the card lands in export folders (Recognizer(folder).card, reskd-predict
--card); models with other class names are refused."""

import json

import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.bench.measure import benchmark
from reskd_infer.card import SpeedSettings, make_card, pareto_front, read_clips
from reskd_infer.cli.card import main as card_main
from reskd_infer.cli.predict import main as predict_main
from reskd_infer.errors import EXIT_USAGE
from reskd_infer.export import export_model
from reskd_infer.train.evaluation import agreement, evaluate
from trainkit import make_video_set

NAMES = ["red", "green", "blue"]
FAST = SpeedSettings(rounds=1, warmup=0, videos=3, batch_size=4, workers=1)
ROW_KEYS = {"model", "arch", "input_size", "precision", "backend", "gflops_per_clip", "clips_per_s", "videos_per_s",
            "agreement", "mean_kl", "top1"}


def _model(root, name, size, names=NAMES, seed=0):
    torch.manual_seed(seed)
    spec = ModelSpec(arch="tsn_r18", class_names=names, input_size=size, crop_size=64, num_frames=2)
    return save_checkpoint(build_model(spec), spec, root / f"{name}.ckpt")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    small, large = _model(root, "small", 32, seed=1), _model(root, "large", 64, seed=2)
    labelled = make_video_set(root / "clips", num_videos=6, num_classes=3, frames=4, size=64, name="labelled.txt")
    unlabelled = root / "clips" / "unlabelled.txt"
    unlabelled.write_text("".join(line.split()[0] + "\n" for line in labelled.read_text().splitlines()))
    return root, small, large, labelled, unlabelled


def test_card_figures_equal_reskd_eval_and_reskd_bench(setup):
    root, small, large, labelled, unlabelled = setup
    card = make_card([small, large], read_clips(labelled, labelled=True), speed=FAST, cascade_shares=(0.5,))
    assert card["reference"] == str(large) and card["labelled"] and card["clips"] == 6 and card["failed"] == []
    rows = {r["model"]: r for r in card["rows"]}
    for model in (small, large):
        row = rows[str(model)]
        assert ROW_KEYS <= set(row) and row["precision"] == "fp32" and row["backend"] == "torch"
        assert row["top1"] == pytest.approx(evaluate(model, labelled, workers=0)["top1"])
        close = agreement(model, large, unlabelled, workers=0)
        assert row["agreement"] == pytest.approx(close["top1_agreement"])
        assert row["mean_kl"] == pytest.approx(close["mean_kl"], abs=1e-5)
        bench = benchmark([("m", model, "torch")], [4], rounds=1, warmup=0, video=None, progress=False)
        assert row["gflops_per_clip"] == pytest.approx(bench["cases"][0]["gflops_per_clip"], abs=1e-3)
        assert row["clips_per_s"] > 0 and row["videos_per_s"] > 0
    assert rows[str(large)]["agreement"] == 1.0 and rows[str(large)]["mean_kl"] == pytest.approx(0.0, abs=1e-9)
    (cascade,) = card["cascades"]
    assert cascade["small"] == str(small) and cascade["large"] == str(large) and cascade["escalated"] == 0.5
    assert cascade["gflops_per_clip"] == pytest.approx(rows[str(small)]["gflops_per_clip"]
                                                       + 0.5 * rows[str(large)]["gflops_per_clip"], abs=1e-3)
    assert cascade["videos_per_s"] > 0 and cascade["agreement"] >= rows[str(small)]["agreement"]


def test_unlabelled_card_on_a_folder_counts_unreadable_clips_and_lands_in_export_folders(setup, tmp_path, capsys):
    root, small, large, _, _ = setup
    folder = export_model(small, tmp_path / "small_export", fp16=False, verify_clips=()).folder
    clips = root / "clips" / "videos"
    broken = clips / "zz_broken.mp4"
    broken.write_text("not a video\n" * 10)
    try:
        code = card_main([str(folder), str(large), "--videos", str(clips), "--out", str(tmp_path / "out"),
                          "--rounds", "1", "--warmup", "0", "--speed-videos", "2", "--workers", "1",
                          "--cascade-shares", "0.5", "--json", "-q"])
    finally:
        broken.unlink()
    card = json.loads(capsys.readouterr().out)
    assert code == 0 and not card["labelled"] and card["videos"] == 7 and card["clips"] == 6
    assert [f["video"] for f in card["failed"]] == [str(broken)] and "zz_broken.mp4" in card["failed"][0]["error"]
    assert all(r["top1"] is None for r in card["rows"]) and card["reference"] == str(large)
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"card.json", "card.md", "card.png"}
    assert "zz_broken.mp4" in (tmp_path / "out" / "card.md").read_text()
    with Recognizer(folder) as rec:
        assert rec.card["rows"] == card["rows"] and rec.card["this_model"] == str(folder)
    with Recognizer(small) as rec:
        assert rec.card is None
    assert predict_main([str(folder), "--card", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == card["rows"]
    assert predict_main([str(folder), "--card"]) == 0 and "Deployment card" in capsys.readouterr().out


def test_models_with_other_class_names_are_refused_naming_both(setup, tmp_path, capsys):
    root, small, large, labelled, _ = setup
    other = _model(tmp_path, "other", 32, names=["red", "green", "yellow"])
    code = card_main([str(other), str(large), "--videos", str(labelled), "--labels", "--json", "-q"])
    doc = json.loads(capsys.readouterr().out)
    assert code == EXIT_USAGE and doc["error"]["type"] == "ClassMismatchError"
    assert "other.ckpt" in doc["error"]["message"] and "large.ckpt" in doc["error"]["message"]
    assert "'yellow' vs 'blue'" in doc["error"]["message"]


def test_pareto_front_keeps_the_points_nothing_beats():
    points = [(10.0, 0.9), (20.0, 0.8), (15.0, 0.7), (30.0, 0.5), (30.0, 0.4)]
    assert pareto_front(points) == [0, 1, 3]
