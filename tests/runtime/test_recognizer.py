import json
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reskd_infer import ModelSpec, Prediction, Recognizer, build_model, save_checkpoint
from reskd_infer.cli.predict import main as predict_main
from reskd_infer.errors import BackendUnavailableError, ReskdError, VideoError
from reskd_infer.video import sample_indices, video_to_batch
from videogen import textured_frames, write_video


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    spec = ModelSpec(arch="r3d_18", class_names=["walk", "run", "jump", "sit"], input_size=32, crop_size=64,
                     num_frames=4, frame_interval=2, num_clips=2)
    path = tmp_path_factory.mktemp("model") / "student.ckpt"
    save_checkpoint(build_model(spec), spec, path)
    return path


def _reference_tensor(path, spec, uint8_resize=True):
    """An independent reading of the preprocessing contract: decode everything, then plain torch ops
    (the short-side resize in uint8 as the contract says, or in float for comparison)."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    clips = []
    for idx in sample_indices(len(frames), spec):
        x = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2)
        x = x if uint8_resize else x.float()
        h, w = x.shape[-2:]
        scale = spec.resize_short / min(h, w)
        size = (spec.resize_short, round(w * scale)) if h <= w else (round(h * scale), spec.resize_short)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).float()
        top, left = (x.shape[-2] - spec.crop_size) // 2, (x.shape[-1] - spec.crop_size) // 2
        x = x[..., top : top + spec.crop_size, left : left + spec.crop_size]
        x = F.interpolate(x, size=(spec.input_size,) * 2, mode="bilinear", align_corners=False)
        x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
        clips.append(x.transpose(0, 1))
    return torch.stack(clips)


@pytest.fixture(scope="module")
def half_up_clip(tmp_path_factory):
    """120x162 to the spec's short side 73: the long side scales to 98.55, so rounding it down (98) instead of
    to the nearest pixel (99) moves the centre crop; the shared clips all scale to fractions below .5."""
    path = tmp_path_factory.mktemp("half_up") / "h264_98.55.mp4"
    write_video(path, textured_frames(12, 120, 162, seed=5))
    return path


@pytest.mark.parametrize("name", ["h264.mp4", "vp9_odd.webm", "mjpeg.avi", "half_up"])
def test_runtime_tensor_equals_the_evaluation_tensor(clip_dir, half_up_clip, checkpoint, name):
    video = half_up_clip if name == "half_up" else clip_dir / name
    with Recognizer(checkpoint) as rec:
        assert rec.spec.resize_short == 73
        served = rec.preprocess(video)
        evaluated = video_to_batch(video, rec.spec)  # what training evaluation calls
        assert served.shape == (2, 3, 4, 32, 32)
        assert torch.equal(served, evaluated)
        assert torch.allclose(served, _reference_tensor(video, rec.spec), atol=1e-4)
        # The uint8 resize stays within one grey level of a float resize.
        one_level = 1.0 / min(rec.spec.std) + 1e-4
        assert torch.allclose(served, _reference_tensor(video, rec.spec, uint8_resize=False), atol=one_level)


def test_predict_returns_sorted_probabilities(clip_dir, checkpoint):
    with Recognizer(checkpoint) as rec:
        assert rec.backend_name == "torch" and rec.spec.num_classes == 4
        preds = rec.predict(clip_dir / "h264.mp4", topk=3)
        assert len(preds) == 3 and all(isinstance(p, Prediction) for p in preds)
        assert [p.score for p in preds] == sorted((p.score for p in preds), reverse=True)
        full = rec.probabilities(clip_dir / "h264.mp4")
        assert full.shape == (4,) and abs(full.sum() - 1) < 1e-5
        assert preds[0].index == int(full.argmax()) and preds[0].label == rec.spec.class_names[preds[0].index]
        # scores average the clips' softmax probabilities
        logits = rec.backend.infer(rec.preprocess(clip_dir / "h264.mp4"))
        assert np.allclose(torch.softmax(torch.from_numpy(logits), 1).mean(0).numpy(), full, atol=1e-6)
        assert len(rec.predict(clip_dir / "h264.mp4", topk=99)) == 4


def test_frames_arrays_and_batches(clip_dir, checkpoint):
    with av.open(str(clip_dir / "mjpeg.avi")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    rec = Recognizer(checkpoint)
    from_file = rec.predict(clip_dir / "mjpeg.avi")
    from_array = rec.predict(frames)
    from_list = rec.predict(list(frames))
    assert from_array == from_list
    assert from_file[0].index == from_array[0].index  # same frames, lossless path differs only by decode
    batch = rec.predict_batch([clip_dir / "h264.mp4", clip_dir / "vp9_odd.webm", frames])
    assert [b[0].index for b in batch] == [rec.predict(v)[0].index for v in
                                           (clip_dir / "h264.mp4", clip_dir / "vp9_odd.webm", frames)]
    for got, want in zip(batch[0], rec.predict(clip_dir / "h264.mp4"), strict=True):
        assert got.index == want.index and abs(got.score - want.score) < 1e-5
    with pytest.raises(VideoError):
        rec.predict(frames.astype(np.float32))
    rec.close()
    rec.close()  # idempotent


def test_bad_artifacts_raise_clear_errors(tmp_path, checkpoint):
    with pytest.raises(ReskdError, match="missing.ckpt"):
        Recognizer(tmp_path / "missing.ckpt")
    odd = tmp_path / "model.xyz"
    odd.write_text("?")
    with pytest.raises(BackendUnavailableError, match="unknown artifact type"):
        Recognizer(odd)
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        Recognizer(checkpoint, backend="magic")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        Recognizer(checkpoint, device="cuda")


def test_predict_cli_lines_json_and_failures(clip_dir, checkpoint, tmp_path, capsys):
    assert predict_main([str(checkpoint), str(clip_dir / "h264.mp4"), "--topk", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(clip_dir / "h264.mp4")) and line.count(":") == 2
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    code = predict_main([str(checkpoint), str(clip_dir / "h264.mp4"), str(bad), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["arch"] == "r3d_18" and doc["backend"] == "torch"
    assert len(doc["results"][0]["predictions"]) == 5 - 1  # 4 classes < topk 5
    assert "bad.mp4" in doc["results"][1]["error"]["message"]
    assert doc["results"][1]["error"]["type"] == "UnreadableVideoError"
    assert predict_main([str(tmp_path / "nothing.onnx"), str(bad)]) == 2


def test_predict_console_script_runs(clip_dir, checkpoint):
    exe = f"{sys.prefix}/bin/reskd-predict"
    out = subprocess.run([exe, str(checkpoint), str(clip_dir / "mjpeg.avi"), "--json", "--topk", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["results"][0]["predictions"]) == 1
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60).stdout
    for flag in ("--topk", "--json", "--device", "--backend", "--no-fallback"):
        assert flag in help_text
