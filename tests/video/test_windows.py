"""Long videos: windows cover the whole video, hold the full decode's frames, and stream in one pass."""

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.video import decode as decode_module
from reskd_infer.video import windows as windows_module
from reskd_infer.video.preprocess import resize_frames
from reskd_infer.video.windows import iter_window_clips, window_starts
from videogen import full_decode, textured_frames, write_video

SPEC = ModelSpec(arch="tsn_r18", class_names=["a", "b", "c"], input_size=32, num_frames=3, num_clips=2)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", textured_frames(100, 36, 48), rate=25, gop=10)


def test_window_starts_cover_the_video():
    assert window_starts(10.0, 4.0, 3.0) == [0.0, 3.0, 6.0]  # the last window ends exactly at 10 s
    assert window_starts(10.0, 4.0, 4.0) == [0.0, 4.0, 6.0]  # one more, aligned to the end
    assert window_starts(3.0, 4.0, 1.0) == [0.0]  # shorter than a window: one window
    with pytest.raises(ValueError):
        window_starts(10.0, 0.0, 1.0)


def test_windows_cover_every_frame_with_the_full_decode_frames_streamed(long_video, monkeypatch):
    decoded_up_to = []
    original = windows_module.iter_frames

    def spying(*args):
        for i, frame in original(*args):
            decoded_up_to.append(i)
            yield i, frame

    monkeypatch.setattr(windows_module, "iter_frames", spying)
    frames = full_decode(long_video)
    windows = []
    for window, clips in iter_window_clips(long_video, SPEC, window_s=1.0, stride_s=0.6):
        # Handed out as soon as its last frame is decoded: nothing is read ahead.
        assert decoded_up_to[-1] == window.indices.max()
        expected = resize_frames(np.stack([frames[i] for i in window.indices.ravel()]), SPEC.resize_short)
        assert np.array_equal(clips.reshape(expected.shape), expected)
        windows.append(window)
    assert [w.start_s for w in windows] == pytest.approx([0.0, 0.6, 1.2, 1.8, 2.4, 3.0])
    assert windows[-1].end_s == pytest.approx(4.0)
    for w in windows:  # each window samples inside its own span
        assert w.indices.min() >= round(w.start_s * 25) and w.indices.max() < round(w.end_s * 25)
    covered = np.zeros(100, bool)
    for w in windows:
        covered[round(w.start_s * 25) : round(w.end_s * 25)] = True
    assert covered.all()
    assert decoded_up_to == sorted(set(decoded_up_to))  # one forward pass, every frame decoded once


def test_predict_windows_timeline_and_overall(long_video, tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(build_model(SPEC), SPEC, tmp_path / "m.ckpt")
    with Recognizer(path) as rec:
        timeline = rec.predict_windows(long_video, window_s=1.0, stride_s=0.6, topk=3, batch_size=3)
        assert len(timeline.windows) == 6 and all(len(w.predictions) == 3 for w in timeline.windows)
        # One window holding the whole video is exactly predict().
        whole = rec.predict_windows(long_video, window_s=60.0, topk=3)
        assert len(whole.windows) == 1 and whole.windows[0].end_s == pytest.approx(4.0)
        assert [p.index for p in whole.overall] == [p.index for p in rec.predict(long_video, topk=3)]
        assert np.allclose([p.score for p in whole.overall], [p.score for p in rec.predict(long_video, topk=3)],
                           atol=1e-5)
        doc = timeline.to_dict()
        assert doc["windows"][0]["start_s"] == 0.0 and len(doc["overall"]) == 3
    assert decode_module.probe(long_video).num_frames == 100
