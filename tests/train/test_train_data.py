"""List files, frame folders, training augmentation, and eval parity with the runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.errors import DatasetError
from reskd_infer.train.data import (
    FRAME_TEMPLATE,
    EvalClipDataset,
    TrainClipDataset,
    augment,
    infer_class_names,
    parse_list,
    read_classes,
)
from reskd_infer.video import video_to_batch
from trainkit import class_frames, make_video_set


@pytest.fixture(scope="module")
def vset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vset")
    make_video_set(root, num_videos=4, num_classes=2, frames=4, size=48)
    return root


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_parse_list_videos_comments_and_multi_label(vset):
    lst = _write(vset / "ok.txt", "# header\n\nvideos/x0.mp4 1\nvideos/x1.mp4 0 1\n")
    samples = parse_list(lst, vset, num_classes=2)
    assert [s.labels for s in samples] == [(1,), (0, 1)]
    assert samples[0].path == vset / "videos/x0.mp4" and samples[1].source == f"{lst}:4"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("videos/x0.mp4 0\nvideos/x1.mp4\n", 2, "expected 'path label"),
        ("videos/x0.mp4 0\n\nvideos/missing.mp4 1\n", 3, "file not found"),
        ("videos/x0.mp4 0\nvideos/x1.mp4 2\n", 2, "label 2 out of range"),
        ("videos/x0.mp4 zero\n", 1, "is not an integer"),
        ("videos/x0.mp4 -1\n", 1, "negative"),
    ],
)
def test_list_errors_name_the_file_and_line(vset, text, line, message):
    lst = _write(vset / "bad.txt", text)
    with pytest.raises(DatasetError, match=message) as info:
        parse_list(lst, vset, num_classes=2)
    assert f"{lst}:{line}:" in str(info.value)


def test_missing_and_empty_lists_and_classes(vset):
    with pytest.raises(DatasetError, match="list file not found"):
        parse_list(vset / "nope.txt", vset)
    with pytest.raises(DatasetError, match="no samples"):
        parse_list(_write(vset / "empty.txt", "# nothing\n"), vset)
    with pytest.raises(DatasetError, match="duplicate class names"):
        read_classes(_write(vset / "dup.txt", "a\nb\na\n"))
    names = infer_class_names([parse_list(_write(vset / "l.txt", "videos/x0.mp4 3\n"), vset)])
    assert names == ["0", "1", "2", "3"]


def test_single_label_model_refuses_a_multi_label_line(vset):
    lst = _write(vset / "multi.txt", "videos/x0.mp4 0\nvideos/x1.mp4 0 1\n")
    spec = ModelSpec(arch="tsn_r18", class_names=("a", "b"), input_size=32, num_frames=2)
    with pytest.raises(DatasetError, match=r"multi\.txt:2: several labels"):
        EvalClipDataset(lst, vset, spec)
    multi = EvalClipDataset(lst, vset, spec.replace(multi_label=True))
    assert torch.equal(multi.target(1), torch.tensor([1.0, 1.0]))


def test_frame_folders(vset, tmp_path):
    from PIL import Image

    frames = class_frames(1, 5, 40, seed=7)
    folder = tmp_path / "frames" / "clip0"
    folder.mkdir(parents=True)
    for k, img in enumerate(frames, start=1):
        Image.fromarray(img).save(folder / FRAME_TEMPLATE.format(k), quality=95)
    assert (folder / "img_00001.jpg").is_file()
    lst = _write(tmp_path / "frames.txt", "frames/clip0 5 1\n")
    spec = ModelSpec(arch="tsn_r18", class_names=("a", "b"), input_size=32, num_frames=3)
    ds = EvalClipDataset(lst, tmp_path, spec)
    assert ds.samples[0].num_frames == 5 and ds.samples[0].labels == (1,)
    clips, target = ds[0]
    assert clips.shape == (1, 3, 3, 32, 32) and int(target) == 1
    # The same frames given to the runtime as an array (JPEG round trip aside) give nearly the same tensor.
    decoded = np.stack([np.asarray(Image.open(folder / FRAME_TEMPLATE.format(k))) for k in range(1, 6)])
    assert torch.allclose(clips, video_to_batch(decoded, spec), atol=1e-5)
    with pytest.raises(DatasetError, match=r"f2\.txt:1: a frame folder needs"):
        EvalClipDataset(_write(tmp_path / "f2.txt", "frames/clip0 5\n"), tmp_path, spec)
    (tmp_path / "frames" / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"f3\.txt:1: frame folder .* has no img_00001\.jpg"):
        EvalClipDataset(_write(tmp_path / "f3.txt", "frames/empty 5 0\n"), tmp_path, spec)


def test_eval_items_equal_recognizer_preprocess(vset, tmp_path):
    # A student spec: crop at the teacher's 64 px, model input 32 px.
    spec = ModelSpec(arch="tsn_r18", class_names=("a", "b"), input_size=32, crop_size=64, num_frames=3)
    ckpt = save_checkpoint(build_model(spec), spec, tmp_path / "s.ckpt")
    ds = EvalClipDataset(vset / "train.txt", vset, spec)
    with Recognizer(ckpt, device="cpu", backend="torch") as rec:
        for i in range(2):
            clips, _ = ds[i]
            assert torch.equal(clips, rec.preprocess(ds.samples[i].path).cpu())


def test_training_items_are_teacher_resolution_crops_seeded_per_sample(vset):
    spec = ModelSpec(arch="tsn_r18", class_names=("a", "b"), input_size=32, crop_size=64, num_frames=3)
    ds = TrainClipDataset(vset / "train.txt", vset, spec, seed=5)
    crop, target = ds[1]
    assert crop.shape == (3, 3, 64, 64) and crop.dtype == torch.float32 and int(target) == 1
    assert 0 <= float(crop.min()) and float(crop.max()) <= 255
    assert torch.equal(crop, ds[1][0])  # (seed, epoch, index) fixes every random choice
    ds.set_epoch(1)
    assert not torch.equal(crop, ds[1][0])


def test_augment_flip_and_multiscale_crop():
    # A horizontal ramp (pixel value = column): an output's edge values tell which columns the box kept
    # and whether it was flipped.
    spec = ModelSpec(arch="tsn_r18", class_names=("a", "b"), input_size=32, num_frames=2)
    ramp = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.float32)[None, None, :, None], (2, 48, 64, 3))
    frames = ramp.round().astype(np.uint8)

    def edges(seed: int, flip: bool) -> tuple[float, float]:
        out = augment(frames, spec, np.random.default_rng(seed), flip=flip)
        assert out.shape == (3, 2, 32, 32)
        return float(out[..., 0].mean()), float(out[..., -1].mean())

    flipped = [left > right for left, right in (edges(s, True) for s in range(16))]
    assert any(flipped) and not all(flipped)
    kept = [edges(s, False) for s in range(16)]
    assert all(left < right for left, right in kept)  # --no-flip never mirrors
    widths = {round(right - left) for left, right in kept}
    offsets = {round(left) for left, _ in kept}
    assert len(widths) >= 2 and len(offsets) >= 3, (widths, offsets)  # several scales, several positions


def test_a_centred_unflipped_training_crop_is_the_eval_tensor_for_student_and_teacher(vset):
    # Crop 112 out of a short side of 128 is scale 0.875, one of the multi-scale crop's scales: centred and
    # unflipped, the training path (augment, then the trainer's down-sampling and normalization) must give
    # exactly the tensor evaluation and the runtime give, at the student's and at the teacher's resolution.
    from reskd_infer.train.distiller import model_input
    from reskd_infer.video import load_clips
    from reskd_infer.video.preprocess import frames_to_tensor

    student = ModelSpec(arch="tsn_r18", class_names=("a", "b"), input_size=56, crop_size=112, num_frames=3)
    teacher = student.replace(input_size=112)
    path = parse_list(vset / "train.txt", vset)[0].path
    frames = load_clips(path, student, None)[0]
    crop = augment(frames, student, np.random.default_rng(0), scales=(0.875,), flip=False, center=True)[None]
    assert torch.equal(model_input(crop, student)[0], frames_to_tensor(frames, student))
    assert torch.equal(model_input(crop, teacher)[0], frames_to_tensor(frames, teacher))


def test_metrics_by_hand():
    from reskd_infer.metrics import classification_metrics

    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    acc = classification_metrics(scores, torch.tensor([1, 2, 0]), multi_label=False)
    assert acc == {"top1": pytest.approx(1 / 3), "top5": 1.0}  # top-5 is capped at the 3 classes
    # Class 0 positives: samples 0 and 2. Its column (0.1, 0.5, 0.2) ranks them 3rd and 2nd: precisions
    # 1/2 and 2/3, AP = 7/12. Class 1 positive: sample 0, ranked 1st (0.7): AP = 1. Class 2 has no
    # positive and is left out. mAP = (7/12 + 1) / 2 = 19/24.
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert classification_metrics(scores, labels, multi_label=True) == {"mAP": pytest.approx(19 / 24)}
