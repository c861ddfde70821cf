"""``reskd-train --teacher T --unlabelled LIST``: a student adapted to footage without labels, on the
trainer's own loop (real H.264 clips and a frame folder written with PyAV/PIL, a tiny trained teacher)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.cli.train import config_from_args, train_main
from reskd_infer.errors import DatasetError
from reskd_infer.io.checkpoint import read_checkpoint
from reskd_infer.io.digests import file_sha256
from reskd_infer.train import TrainConfig, TrainError, train
from reskd_infer.train.data import FRAME_TEMPLATE, parse_list
from reskd_infer.train.unlabelled import fit_logit_scale, mean_kl
from trainkit import class_frames, make_video_set


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> dict:
    """12 labelled clips (3 tinted classes) the teacher learns from, and the same footage as an unlabelled
    list: 11 videos and one frame folder (its frame count left for the trainer to count)."""
    root = tmp_path_factory.mktemp("unlabelled")
    labelled = make_video_set(root, num_videos=12, num_classes=3, frames=4, size=48, name="labelled.txt")
    videos = [line.split()[0] for line in labelled.read_text().splitlines()]
    frames = root / "frames" / "x11"
    frames.mkdir(parents=True)
    for i, img in enumerate(class_frames(11 % 3, 4, 48, seed=11)):
        Image.fromarray(img).save(frames / FRAME_TEMPLATE.format(i + 1))
    unlabelled = root / "unlabelled.txt"
    unlabelled.write_text("\n".join(["# my footage, no labels", *videos[:11], "frames/x11"]) + "\n")
    teacher = train(TrainConfig(arch="tsn_r18", train_list=str(labelled), data_root=str(root), input_size=64,
                                num_frames=2, epochs=8, batch_size=4, lr=0.02, workers=0, progress=False,
                                device="cpu", work_dir=str(root / "teacher")))["last"]
    return {"root": root, "list": unlabelled, "teacher": teacher, "videos": [root / v for v in videos]}


def _args(footage: dict, work: Path, *extra: str) -> list[str]:
    return ["--arch", "tsn_r18", "--input-size", "32", "--teacher", str(footage["teacher"]),
            "--unlabelled", str(footage["list"]), "--data-root", str(footage["root"]), "--batch-size", "4",
            "--workers", "0", "--lr", "0.01", "--device", "cpu", "--no-progress", "--seed", "0",
            "--work-dir", str(work), *extra]


def _top1(ckpt: str | Path, videos: list[Path]) -> list[str]:
    with Recognizer(ckpt) as rec:
        return [rec.predict(v, topk=1)[0].label for v in videos]


def _agreement(ckpt: str | Path, footage: dict) -> float:
    teacher, student = _top1(footage["teacher"], footage["videos"]), _top1(ckpt, footage["videos"])
    return sum(a == b for a, b in zip(teacher, student, strict=True)) / len(teacher)


def test_unlabelled_adaptation_raises_agreement_and_records_provenance(footage, tmp_path, capsys):
    spec = ModelSpec(arch="tsn_r18", class_names=["0", "1", "2"], input_size=32, num_frames=2, crop_size=64)
    torch.manual_seed(0)
    before = _agreement(save_checkpoint(build_model(spec), spec, tmp_path / "init.ckpt"), footage)
    assert train_main(_args(footage, tmp_path / "w", "--epochs", "4")) == 0
    out = json.loads(capsys.readouterr().out)
    after = _agreement(out["last"], footage)
    # Measured: 0.17 at initialisation (chance), 0.75 after 4 epochs on the 12 unlabelled clips.
    assert after >= before + 0.3, (before, after)
    spec_out = read_checkpoint(out["last"])[1]
    prov = spec_out.provenance
    assert prov["mode"] == "unlabelled" and prov["trained_by"] == "reskd-train"
    assert prov["teacher_sha256"] == file_sha256(footage["teacher"])
    assert prov["unlabelled_list"] == str(footage["list"])
    assert prov["unlabelled_list_sha256"] == file_sha256(footage["list"])
    assert prov["logit_scale"] > 0 and prov["logit_calibration"] is True and prov["freeze_bn"] is True
    assert prov["teacher"]["checkpoint"] == str(footage["teacher"]) and prov["kd_loss"] == "pooled"
    # The student sees the teacher's frames and crop, down-sampled: served the way it was trained.
    assert (spec_out.input_size, spec_out.crop_size, spec_out.num_frames) == (32, 64, 2)
    steps = [json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["task"] == 0.0 and r["kd"] == r["loss"] > 0 for r in steps)  # no labels, no task loss


def test_unlabelled_resume_mid_run_equals_the_uninterrupted_run(footage, tmp_path):
    common = ("--epochs", "2", "--deterministic", "--warmup-epochs", "0.5")
    assert train_main(_args(footage, tmp_path / "full", *common)) == 0
    assert train_main(_args(footage, tmp_path / "cut", *common, "--stop-after-epoch", "1")) == 0
    assert train_main(_args(footage, tmp_path / "cut", *common, "--resume")) == 0
    (a, spec_a), (b, spec_b) = read_checkpoint(tmp_path / "full" / "last.ckpt"), read_checkpoint(tmp_path / "cut" / "last.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert spec_a.provenance["logit_scale"] == spec_b.provenance["logit_scale"]  # recorded, not recalibrated


def test_torchrun_two_ranks_share_rank_0s_logit_scale(footage, tmp_path):
    """Under torchrun rank 0 alone calibrates; the other rank applies the scale it receives, so both hold the same
    weights at the epoch's check (a mismatch stops the run) and the scale is the single process's."""
    assert train_main(_args(footage, tmp_path / "one", "--epochs", "1", "--deterministic")) == 0
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "reskd_infer.train",
                          *_args(footage, tmp_path / "two", "--epochs", "1", "--deterministic")],
                         capture_output=True, text=True, env=env, timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
                 if '"step"' not in line]
    assert len(record["rank_param_sha256"]) == 2 and len(set(record["rank_param_sha256"])) == 1
    one, two = (read_checkpoint(tmp_path / w / "last.ckpt")[1].provenance for w in ("one", "two"))
    assert two["logit_scale"] == one["logit_scale"] and two["logit_scale"] != 1.0


def test_a_bad_clip_is_logged_and_skipped(footage, tmp_path):
    root = footage["root"]
    (root / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    bad = root / "with_broken.txt"
    lines = footage["list"].read_text().splitlines()
    bad.write_text("\n".join([*lines[:4], "videos/broken.mp4", *lines[4:]]) + "\n")  # line 5
    work = tmp_path / "w"
    result = train(TrainConfig(arch="tsn_r18", input_size=32, teacher=str(footage["teacher"]), unlabelled=str(bad),
                               data_root=str(root), epochs=1, batch_size=4, workers=0, progress=False,
                               device="cpu", work_dir=str(work), max_bad_clips=0.2))
    logged = (work / "bad_clips.txt").read_text().splitlines()
    assert len(logged) == 1 and logged[0].startswith(f"{bad}:5\t{root / 'videos' / 'broken.mp4'}\t")
    assert read_checkpoint(result["last"])[1].provenance["mode"] == "unlabelled"
    with pytest.raises(DatasetError, match="max-bad-clips"):
        train(TrainConfig(arch="tsn_r18", input_size=32, teacher=str(footage["teacher"]), unlabelled=str(bad),
                          data_root=str(root), epochs=1, batch_size=4, workers=0, progress=False, device="cpu",
                          work_dir=str(tmp_path / "strict"), max_bad_clips=0.01))


def test_unlabelled_lists_and_configuration(footage, tmp_path):
    samples = parse_list(footage["list"], footage["root"], labelled=False)
    assert len(samples) == 12 and samples[-1].num_frames == 4 and all(s.labels == () for s in samples)
    labelled = tmp_path / "labels.txt"
    labelled.write_text("videos/x0.mp4 1\n")
    with pytest.raises(DatasetError, match="unlabelled list holds"):
        parse_list(labelled, footage["root"], labelled=False)
    with pytest.raises(TrainError, match="give --teacher"):
        train(TrainConfig(arch="tsn_r18", unlabelled=str(footage["list"]), work_dir=str(tmp_path / "a")))
    with pytest.raises(TrainError, match="not both"):
        train(TrainConfig(arch="tsn_r18", unlabelled=str(footage["list"]), train_list=str(labelled),
                          teacher=str(footage["teacher"]), work_dir=str(tmp_path / "b")))
    # YAML keys and flags: --unlabelled in the file, BatchNorm turned back to training by a flag.
    (tmp_path / "run.yaml").write_text(f"arch: tsn_r18\nunlabelled: {footage['list']}\nteacher: {footage['teacher']}\n"
                                       "logit-calibration: false\n")
    cfg = config_from_args(["--config", str(tmp_path / "run.yaml"), "--no-freeze-bn"])
    assert (cfg.unlabelled, cfg.freeze_bn, cfg.logit_calibration) == (str(footage["list"]), False, False)
    assert config_from_args(["--config", str(tmp_path / "run.yaml")]).freeze_bn is None  # on, as --unlabelled's


def test_logit_scale_calibration_finds_the_scale_that_undoes_an_inflation():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(64, 10, generator=g) * 2
    scale = fit_logit_scale(teacher * 6.3, teacher)
    assert scale == pytest.approx(6.31, rel=0.02)  # the grid point nearest 6.3
    assert mean_kl(teacher * 6.3 / scale, teacher) < 0.01 < mean_kl(teacher * 6.3, teacher)
    assert np.isclose(mean_kl(teacher, teacher), 0.0, atol=1e-6)
