import numpy as np
import pytest

from reskd_infer import ModelSpec
from reskd_infer.video import dense_indices, sample_indices, segment_indices


def test_segment_eval_takes_each_segments_middle():
    # 80 frames, 8 segments of 10: middles at 5, 15, ..., 75
    assert segment_indices(80, 8).tolist() == [[5, 15, 25, 35, 45, 55, 65, 75]]
    assert segment_indices(10, 4).tolist() == [[1, 3, 6, 8]]  # seg len 2.5: floor(1.25 + 2.5 i)


def test_segment_short_video_repeats_in_order():
    assert segment_indices(3, 8).tolist() == [[0, 0, 0, 1, 1, 1, 2, 2]]
    assert segment_indices(1, 4).tolist() == [[0, 0, 0, 0]]


def test_segment_multi_clip_offsets_and_training_randomness():
    idx = segment_indices(40, 4, num_clips=2)
    assert idx.tolist() == [[2, 12, 22, 32], [7, 17, 27, 37]]
    rng = np.random.default_rng(0)
    train = segment_indices(40, 4, rng=rng)
    assert train.shape == (1, 4)
    assert all(10 * i <= v < 10 * (i + 1) for i, v in enumerate(train[0]))


def test_dense_eval_is_centred_and_loops_when_short():
    assert dense_indices(100, 4, 2).tolist() == [[46, 48, 50, 52]]
    assert dense_indices(5, 4, 2).tolist() == [[0, 2, 4, 1]]  # 0, 2, 4, 6 -> 6 wraps to 1
    assert dense_indices(1, 3, 4).tolist() == [[0, 0, 0]]
    assert dense_indices(20, 2, 2, num_clips=3).tolist() == [[0, 2], [8, 10], [16, 18]]


def test_sample_indices_is_deterministic_in_eval_and_follows_spec():
    spec = ModelSpec(arch="r3d_18", class_names=["a"], num_frames=4, frame_interval=3)
    first, second = sample_indices(50, spec), sample_indices(50, spec)
    assert np.array_equal(first, second) and first.shape == (1, 4)
    assert np.all(np.diff(first[0]) == 3)


@pytest.mark.parametrize("total", [1, 2, 7, 8, 9, 1000])
def test_indices_are_always_in_range(total):
    for arch in ("tsn_r18", "r3d_18"):
        spec = ModelSpec(arch=arch, class_names=["a"], num_frames=8, num_clips=3)
        for rng in (None, np.random.default_rng(1)):
            idx = sample_indices(total, spec, rng)
            assert idx.shape == (3, 8) and idx.min() >= 0 and idx.max() < total
