"""reskd-eval scores any artifact through the Recognizer, with multi-view testing (--num-clips, --three-crop);
training evaluation and the runtime see the same tensor, bit for bit, in every view mode."""

import json

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.cli.train import eval_main
from reskd_infer.export import export_model
from reskd_infer.train.data import EvalClipDataset, parse_list
from reskd_infer.train.evaluation import _score, evaluate
from reskd_infer.video import clips_to_batch, frames_to_tensor, load_clips
from reskd_infer.video.preprocess import crop_boxes, view_crops
from trainkit import make_video_set


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalart")
    spec = ModelSpec(arch="tsn_r18", class_names=["r", "g", "b"], input_size=32, crop_size=40, num_frames=2)
    torch.manual_seed(3)
    ckpt = save_checkpoint(build_model(spec), spec, root / "m.ckpt")
    export_model(ckpt, root / "exp", verify_clips=(), progress=False)
    val = make_video_set(root / "data", num_videos=6, num_classes=3, frames=6, size=48)
    return ckpt, root / "exp", val


@pytest.mark.parametrize("num_clips, three_crop", [(1, False), (3, False), (2, True), (3, True)])
def test_runtime_views_equal_the_evaluation_tensor(setup, num_clips, three_crop):
    ckpt, _, val = setup
    with Recognizer(ckpt, num_clips=num_clips, three_crop=three_crop) as rec:
        views = num_clips * (3 if three_crop else 1)
        assert rec.views_per_video == views and rec.backend.spec.num_clips == 1  # the artifact's spec is kept
        dataset = EvalClipDataset(val, None, rec.spec)  # what reskd-eval and training evaluation decode
        for i, sample in enumerate(dataset.samples[:3]):
            served = rec.preprocess(sample.path)
            assert served.shape == (views, 3, 2, 32, 32)
            assert torch.equal(served, dataset[i][0])
            if three_crop:  # the middle crop of each clip is the single-view tensor
                with Recognizer(ckpt, num_clips=num_clips) as single:
                    assert torch.equal(served[1::3], single.preprocess(sample.path))


def test_three_crops_cover_both_ends_of_the_long_side():
    assert crop_boxes(40, 100, 40, 3) == [(0, 0), (0, 30), (0, 60)]
    assert crop_boxes(90, 50, 44, 3) == [(0, 3), (23, 3), (46, 3)]
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], input_size=16, crop_size=16, resize_short=16,
                     num_frames=1, num_crops=3)
    frames = np.zeros((1, 16, 48, 3), np.uint8)
    frames[:, :, :16] = 10
    frames[:, :, 16:32] = 20
    frames[:, :, 32:] = 30
    crops = view_crops(frames, spec)
    assert [int(c.mean()) for c in crops] == [10, 20, 30]
    single = spec.replace(num_crops=1)
    batch = clips_to_batch(load_clips(frames, single), single)
    assert torch.equal(batch[0], frames_to_tensor(frames, single))


def test_every_artifact_scores_alike_through_the_recognizer(setup):
    ckpt, folder, val = setup
    results = {name: evaluate(path, val, workers=0) for name, path in [
        ("checkpoint", ckpt), ("onnx", folder / "model.onnx"), ("fp16", folder / "model.fp16.onnx"),
        ("folder", folder)]}
    assert all(r["num_samples"] == 6 and r["views"] == 1 for r in results.values())
    assert results["checkpoint"]["top1"] == results["onnx"]["top1"] == results["folder"]["top1"]
    assert abs(results["fp16"]["top1"] - results["onnx"]["top1"]) <= 1 / 6  # at most one clip may flip


def test_evaluation_scores_are_the_recognizers_probabilities(setup):
    ckpt, _, val = setup
    with Recognizer(ckpt, num_clips=2, three_crop=True) as rec:
        dataset = EvalClipDataset(val, None, rec.spec)
        scores, targets = _score(rec, dataset, batch_size=4, workers=1, progress=False)
        expected = np.stack([rec.probabilities(s.path) for s in parse_list(val)])
    assert scores.shape == (6, 3) and len(targets) == 6
    assert np.allclose(scores, expected, atol=1e-6)


def test_eval_cli_any_artifact_and_views(setup, capsys):
    ckpt, folder, val = setup
    assert eval_main([str(folder), "--val-list", str(val), "--num-clips", "2", "--three-crop", "--json",
                      "--workers", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["views"] == 6 and doc["num_samples"] == 6 and 0 <= doc["top1"] <= 1
    assert eval_main([str(folder / "model.onnx"), "--val-list", str(val), "--workers", "0"]) == 0
    assert "top1\t" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        eval_main([str(ckpt), "--val-list", str(val), "--num-clips", "0"])
    assert eval_main([str(folder / "nothing.plan"), "--val-list", str(val), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "ArtifactError"
