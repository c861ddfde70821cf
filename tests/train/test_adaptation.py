"""Adapting a student to one's own cameras: ``reskd-eval --reference`` (agreement with a reference model on
unlabelled clips) and spans in unlabelled lists (``video start_s end_s``), on real clips written with PyAV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, build_model, save_checkpoint
from reskd_infer.cli.train import eval_main, train_main
from reskd_infer.errors import DatasetError
from reskd_infer.io.checkpoint import read_checkpoint
from reskd_infer.io.digests import file_sha256
from reskd_infer.train.data import EvalClipDataset, TrainClipDataset, parse_list
from reskd_infer.train.evaluation import agreement
from trainkit import make_video_set
from videogen import frame_index, level_frames, write_video

CLASSES = ["0", "1", "2"]


def _checkpoint(path: Path, input_size: int, seed: int, roll: int = 0) -> Path:
    """A tiny tsn_r18 (seeded weights) seeing 64 px crops at ``input_size``; ``roll``: its classifier's rows
    rolled, so its top-1 is always another class than the unrolled model's."""
    spec = ModelSpec(arch="tsn_r18", class_names=CLASSES, input_size=input_size, num_frames=2, crop_size=64)
    torch.manual_seed(seed)
    model = build_model(spec)
    if roll:
        fc = model.classifier()
        with torch.no_grad():
            fc.weight.copy_(fc.weight.roll(roll, 0))
            fc.bias.copy_(fc.bias.roll(roll, 0))
    return save_checkpoint(model, spec, path)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    """Six H.264 clips as an unlabelled list, and a 5 s video whose frames' grey level encodes their index."""
    root = tmp_path_factory.mktemp("adaptation")
    labelled = make_video_set(root, num_videos=6, num_classes=3, frames=4, size=48)
    unlabelled = root / "unlabelled.txt"
    unlabelled.write_text("\n".join(line.split()[0] for line in labelled.read_text().splitlines()) + "\n")
    write_video(root / "levels.mp4", level_frames(40, 48, 64), rate=8, gop=4)  # 40 frames, 8 fps: 5 s
    teacher = _checkpoint(root / "teacher.ckpt", 64, seed=0)
    return {"root": root, "list": unlabelled, "teacher": teacher,
            "rolled": _checkpoint(root / "rolled.ckpt", 64, seed=0, roll=1),
            "small": _checkpoint(root / "small.ckpt", 32, seed=1)}


def test_a_model_agrees_with_itself_and_not_with_a_different_model(clips):
    same = agreement(clips["teacher"], clips["teacher"], clips["list"], workers=0, device="cpu")
    assert same["top1_agreement"] == 1.0 and same["top5_overlap"] == 1.0 and same["num_samples"] == 6
    assert abs(same["mean_kl"]) < 1e-9
    # Rolled classifier: every top-1 differs; 3 classes, so the reference's top-1 is always in its top 5.
    rolled = agreement(clips["rolled"], clips["teacher"], clips["list"], workers=0, device="cpu")
    assert rolled["top1_agreement"] == 0.0 and rolled["top5_overlap"] == 1.0 and rolled["mean_kl"] > 0.01
    # Another model with its own preprocessing (32 px of the 64 px crop): a finite, positive KL.
    small = agreement(clips["small"], clips["teacher"], clips["list"], workers=0, device="cpu")
    assert 0.0 <= small["top1_agreement"] <= 1.0 and 0.0 < small["mean_kl"] < 10


def test_reskd_eval_reference_prints_the_agreement(clips, capsys):
    argv = [str(clips["rolled"]), "--reference", str(clips["teacher"]), "--val-list", str(clips["list"]),
            "--workers", "0", "--device", "cpu", "--json"]
    assert eval_main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"top1_agreement", "top5_overlap", "mean_kl", "num_samples"} and out["top1_agreement"] == 0.0
    with pytest.raises(SystemExit):  # the reference mode scores each model with its own spec's views
        eval_main([*argv, "--three-crop"])
    other = _checkpoint(clips["root"] / "two_classes.ckpt", 64, seed=0)
    spec = read_checkpoint(other)[1].replace(class_names=["a", "b", "c"])
    save_checkpoint(build_model(spec), spec, other)
    assert eval_main([str(other), "--reference", str(clips["teacher"]), "--val-list", str(clips["list"]),
                      "--workers", "0", "--device", "cpu", "--json"]) == 2
    assert "different classes" in json.loads(capsys.readouterr().out)["error"]["message"]


def _frames_read(dataset, index: int, spec: ModelSpec, draws: int = 12) -> set[int]:
    """The frame indices the training sampler reads from sample ``index`` over ``draws`` random draws."""
    return {frame_index(frame) for s in range(draws)
            for clip in dataset.clips(index, spec, np.random.default_rng(s)) for frame in clip}


def test_spans_limit_the_sampled_frames_to_that_part_of_the_video(clips, tmp_path):
    listing = tmp_path / "spans.txt"
    listing.write_text("levels.mp4 2 3.5\nlevels.mp4\n")  # 2 s - 3.5 s at 8 fps: frames 16..27
    samples = parse_list(listing, clips["root"], labelled=False)
    assert [s.span for s in samples] == [(2.0, 3.5), None]
    spec = ModelSpec(arch="tsn_r18", class_names=CLASSES, input_size=32, num_frames=4, crop_size=64)
    train = TrainClipDataset(listing, clips["root"], spec, labelled=False)
    inside = _frames_read(train, 0, train.spec)
    assert inside <= set(range(16, 28)) and len(inside) >= 6, inside
    assert not _frames_read(train, 1, train.spec) <= set(range(16, 28))  # the whole video otherwise
    evaluation = EvalClipDataset(listing, clips["root"], spec, labelled=False)
    assert {frame_index(f) for f in evaluation.clips(0, spec, None)[0]} <= set(range(16, 28))
    for line, message in (("levels.mp4 3 2", "0 <= start_s < end_s"), ("levels.mp4 1", "unlabelled list holds"),
                          ("levels.mp4 a b", "not two numbers")):
        listing.write_text(line + "\n")
        with pytest.raises(DatasetError, match=message):
            parse_list(listing, clips["root"], labelled=False)
    listing.write_text("levels.mp4 10 20\n")  # past the end of a 5 s video: named by its line when read
    with pytest.raises(DatasetError, match=f"{listing}:1: span 10-20 s holds no frame"):
        EvalClipDataset(listing, clips["root"], spec, labelled=False)[0]


def test_reskd_train_adapts_on_spans_and_records_the_list_digest(clips, tmp_path, capsys):
    listing = clips["root"] / "span_list.txt"
    listing.write_text("".join(f"{line} 0 0.4\n" for line in clips["list"].read_text().split()) + "levels.mp4 0 3\n")
    assert train_main(["--arch", "tsn_r18", "--input-size", "32", "--teacher", str(clips["teacher"]),
                       "--unlabelled", str(listing), "--epochs", "1", "--batch-size", "4", "--workers", "0",
                       "--device", "cpu", "--no-progress", "--work-dir", str(tmp_path / "w")]) == 0
    prov = read_checkpoint(json.loads(capsys.readouterr().out)["last"])[1].provenance
    assert prov["mode"] == "unlabelled" and prov["unlabelled_list_sha256"] == file_sha256(listing)
    # The adapted student scores against its teacher on the same span list.
    scores = agreement(tmp_path / "w" / "last.ckpt", clips["teacher"], listing, workers=0, device="cpu")
    assert scores["num_samples"] == 7 and scores["mean_kl"] >= 0
