"""The cascade: threshold 0 is the small model and 1 the large one, result for result; order, errors and bounded
read-ahead hold through it as through predict_iter; the calibration reaches its target; reskd-predict --cascade."""

import csv
import json

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.cli.predict import main as predict_main
from reskd_infer.errors import ClassMismatchError, UnreadableVideoError, UsageError
from reskd_infer.runtime.cascade import Cascade, cascade_point, choose_threshold, top1_margin
from videogen import textured_frames, write_video

NAMES = ["walk", "run", "jump"]


def _model(root, name, size, crop, names=NAMES, seed=0, **extra):
    torch.manual_seed(seed)
    spec = ModelSpec(arch="tsn_r18", class_names=names, input_size=size, crop_size=crop, num_frames=2, **extra)
    return save_checkpoint(build_model(spec), spec, root / f"{name}.ckpt")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 32 px student seeing the 64 px crop and a 64 px teacher (random weights): one decode serves both exactly."""
    root = tmp_path_factory.mktemp("cascade")
    return _model(root, "small", 32, 64, seed=1), _model(root, "large", 64, 64, seed=2), root


@pytest.fixture(scope="module")
def videos(pair):
    root = pair[2]
    return [write_video(root / f"v{i}.mp4", textured_frames(6 + i, 72, 96, seed=i)) for i in range(7)]


def _answers(results):
    return [(r.video, None if r.error else [p.index for p in r.predictions],
             None if r.error else [round(p.score, 5) for p in r.predictions]) for r in results]


@pytest.mark.parametrize("decode", ["once", "twice"])
def test_threshold_0_is_the_small_model_and_1_the_large_one_result_for_result(pair, videos, decode):
    small, large, _ = pair
    with Recognizer(small) as s, Recognizer(large) as big:
        alone_small = list(s.predict_iter(videos, batch_size=3, topk=3))
        alone_large = list(big.predict_iter(videos, batch_size=3, topk=3))
        for threshold, alone, who in ((0.0, alone_small, "small"), (1.0, alone_large, "large")):
            with Cascade(s, big, threshold=threshold, decode=decode) as cascade:
                got = list(cascade.predict_iter(videos, batch_size=3, topk=3))
            assert _answers(got) == _answers(alone)
            assert all(r.answered_by == who for r in got)
            assert all(np.allclose(a.probabilities, b.probabilities, atol=1e-6) for a, b in zip(got, alone, strict=True))
        assert s.path == small  # Recognizers passed in stay open: the cascade closes only its own
        assert s.predict(videos[0], topk=1)


def test_a_threshold_between_escalates_exactly_the_unsure_clips(pair, videos):
    small, large, _ = pair
    with Recognizer(small) as s, Recognizer(large) as big:
        p_small = np.stack([s.probabilities(v) for v in videos])
        p_large = np.stack([big.probabilities(v) for v in videos])
        threshold = float(np.median(top1_margin(p_small)))
        with Cascade(s, big, threshold=threshold) as cascade:
            assert cascade.decode == "once"  # same frames, short side and crop: one exact decode
            got = list(cascade.predict_iter(videos, batch_size=2, topk=1))
    unsure = top1_margin(p_small) < threshold
    assert 0 < unsure.sum() < len(videos)
    assert [r.answered_by == "large" for r in got] == list(unsure)
    expected = np.where(unsure, p_large.argmax(-1), p_small.argmax(-1))
    assert [r.predictions[0].index for r in got] == list(expected)
    assert cascade_point(p_small, p_large, threshold)["escalated"] == pytest.approx(unsure.mean())


def test_order_errors_and_bounded_read_ahead_hold_through_the_cascade(pair, videos, tmp_path):
    small, large, _ = pair
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    inputs = [videos[0], text, videos[1], textured_frames(5, 40, 56, seed=9), tmp_path / "missing.mp4", videos[2]]
    with Cascade(small, large, threshold=1.0, decode="twice") as cascade:
        results = list(cascade.predict_iter(inputs, batch_size=2, workers=2))
        assert [r.video is v for r, v in zip(results, inputs, strict=True)] == [True] * len(inputs)
        assert [r.ok for r in results] == [True, False, True, True, False, True]
        assert isinstance(results[1].error, UnreadableVideoError) and "notes.mp4" in str(results[1].error)
        assert results[1].answered_by is None and results[1].predictions == []
        assert all(r.answered_by == "large" for r in results if r.ok)
        assert "answered_by" in results[0].to_dict()

        taken = []

        def endless():
            i = 0
            while True:
                taken.append(i)
                yield videos[i % len(videos)]
                i += 1

        for count, result in enumerate(cascade.predict_iter(endless(), batch_size=4, workers=2), start=1):
            assert result.ok
            assert len(taken) - count <= 2 + 4  # workers + ceil(batch / clips per video)
            if count == 10:
                break


def test_choose_threshold_reaches_the_target_with_the_fewest_escalations():
    small = np.array([[0.9, 0.1, 0.0], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.34, 0.33, 0.33]])
    large = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # margins 0.8, 0.1, 0.5, 0.01; the small model agrees on clips 0 and 2
    assert choose_threshold(small, large, 0.5)["threshold"] == 0.0
    chosen = choose_threshold(small, large, 0.75)  # one more clip must agree: escalate the lowest margin
    assert chosen["escalated"] == 0.25 and chosen["agreement"] == 0.75 and 0.01 < chosen["threshold"] < 0.1
    assert choose_threshold(small, large, 1.0)["escalated"] == 0.5
    with pytest.raises(UsageError):
        choose_threshold(small, large, 1.5)


def test_calibrate_sets_a_threshold_that_reaches_the_target_on_the_calibration_clips(pair, videos):
    small, large, _ = pair
    with Cascade(small, large) as cascade:
        chosen = cascade.calibrate(videos, target_agreement=0.8, batch_size=3)
        assert cascade.threshold == chosen["threshold"] and chosen["clips"] == len(videos)
        results = list(cascade.predict_iter(videos, batch_size=3, topk=1))
    with Recognizer(large) as big:
        reference = [big.predict(v, topk=1)[0].index for v in videos]
    agreement = np.mean([r.predictions[0].index == ref for r, ref in zip(results, reference, strict=True)])
    assert agreement >= 0.8 and agreement == pytest.approx(chosen["agreement"])


def test_models_with_other_classes_or_frames_are_refused(pair, tmp_path):
    small, large, _ = pair
    other = _model(tmp_path, "other", 32, 64, names=["walk", "swim", "jump"])
    with pytest.raises(ClassMismatchError, match=r"other\.ckpt.*large\.ckpt.*class 1 is 'swim' vs 'run'"):
        Cascade(other, large)
    four = _model(tmp_path, "four", 32, 64, seed=3).parent / "four.ckpt"
    spec = ModelSpec(arch="tsn_r18", class_names=NAMES, input_size=32, crop_size=64, num_frames=4)
    save_checkpoint(build_model(spec), spec, four)
    with pytest.raises(UsageError, match="num_frames"):
        Cascade(four, large, decode="once")
    with Cascade(four, large) as cascade:
        assert cascade.decode == "twice"


def test_reskd_predict_cascade_writes_who_answered_and_calibrates(pair, videos, tmp_path, capsys):
    small, large, _ = pair
    listing = tmp_path / "calib.txt"
    listing.write_text("".join(f"{v}\n" for v in videos))
    code = predict_main([str(small), *map(str, videos[:3]), "--cascade", str(large), "--threshold", "1", "--json", "-q"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["cascade"]["threshold"] == 1.0 and doc["cascade"]["decode"] == "once"
    assert [r["answered_by"] for r in doc["results"]] == ["large"] * 3
    code = predict_main([str(small), *map(str, videos), "--cascade", str(large), "--target-agreement", "0.8",
                         "--calibrate", str(listing), "--json", "-q"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["cascade"]["calibration"]["agreement"] >= 0.8
    assert {r["answered_by"] for r in doc["results"]} <= {"small", "large"}
    csv_out = tmp_path / "cascade.csv"
    assert predict_main([str(small), *map(str, videos[:3]), "--cascade", str(large), "--threshold", "1",
                         "--output", str(csv_out), "--topk", "1", "-q"]) == 0
    rows = list(csv.DictReader(csv_out.open(newline="")))
    assert [row["answered_by"] for row in rows] == ["large"] * 3
    with pytest.raises(SystemExit):
        predict_main([str(small), str(videos[0]), "--cascade", str(large)])  # neither --threshold nor a target
    assert "--threshold" in capsys.readouterr().err
