"""Property-based tests (hypothesis) of frame sampling and preprocessing: any clip with T, H, W >= 1
gives a finite input tensor of the spec's shape, deterministically, and sampling never points outside
the video."""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reskd_infer import ModelSpec
from reskd_infer.video import clips_to_batch, load_clips, sample_indices

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def specs(draw):
    dense = draw(st.booleans())
    crop = draw(st.sampled_from([16, 24, 40]))
    return ModelSpec(
        arch="r3d_18" if dense else "tsn_r18",
        class_names=["a", "b"],
        input_size=draw(st.sampled_from([16, crop])) if crop > 16 else 16,
        crop_size=crop,
        num_frames=draw(st.integers(1, 6)),
        frame_interval=draw(st.integers(1, 4)) if dense else 0,
        num_clips=draw(st.integers(1, 4)),
        num_crops=draw(st.sampled_from([1, 3])),
        resize_antialias=draw(st.booleans()),
    )


@FAST
@given(spec=specs(), total=st.integers(1, 5000), seed=st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_sampling_stays_inside_the_video_and_is_deterministic(spec, total, seed):
    def draw():
        return sample_indices(total, spec, None if seed is None else np.random.default_rng(seed))

    idx = draw()
    assert idx.shape == (spec.num_clips, spec.num_frames) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < total
    assert np.array_equal(idx, draw())
    if spec.sampling == "segments" and seed is None:
        assert (np.diff(idx, axis=1) >= 0).all()  # evaluation frames come in temporal order


@FAST
@given(spec=specs(), t=st.integers(1, 5), h=st.integers(1, 70), w=st.integers(1, 70), seed=st.integers(0, 1000),
       dtype_range=st.sampled_from([(0, 1), (0, 256), (250, 256)]))
def test_any_clip_gives_a_finite_tensor_of_the_spec_shape(spec, t, h, w, seed, dtype_range):
    rng = np.random.default_rng(seed)
    frames = rng.integers(*dtype_range, size=(t, h, w, 3), dtype=np.uint8)
    batch = clips_to_batch(load_clips(frames, spec), spec)
    assert batch.shape == (spec.num_clips * spec.num_crops, *spec.input_shape)
    assert batch.dtype == torch.float32 and torch.isfinite(batch).all()
    lo = (0 - max(spec.mean)) / min(spec.std)
    hi = (255 - min(spec.mean)) / min(spec.std)
    assert batch.min() >= lo - 1e-4 and batch.max() <= hi + 1e-4  # bilinear filters never overshoot 0..255
    assert torch.equal(batch, clips_to_batch(load_clips(frames, spec), spec))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 4), w=st.integers(400, 4000))
def test_extreme_aspect_ratios_stay_bounded(h, w):
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], input_size=16, crop_size=24, num_frames=1, num_crops=3)
    frames = np.full((1, h, w, 3), 90, np.uint8)
    for clip in (frames, frames.transpose(0, 2, 1, 3)):  # panoramas and their tall twins
        batch = clips_to_batch(load_clips(np.ascontiguousarray(clip), spec), spec)
        assert batch.shape == (3, 3, 1, 16, 16) and torch.isfinite(batch).all()
