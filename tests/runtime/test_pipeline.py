"""The streaming runtime: input order, error results, bounded read-ahead, batching across videos."""

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, VideoResult, build_model, save_checkpoint
from reskd_infer.errors import NoVideoStreamError, UnreadableVideoError
from reskd_infer.runtime.batching import STAGES
from videogen import textured_frames, write_audio_only


@pytest.fixture(scope="module")
def tsn(tmp_path_factory):
    torch.manual_seed(0)
    spec = ModelSpec(arch="tsn_r18", class_names=["a", "b", "c"], input_size=32, num_frames=2, num_clips=2)
    path = tmp_path_factory.mktemp("pipe") / "tsn.ckpt"
    save_checkpoint(build_model(spec), spec, path)
    return path


@pytest.fixture(scope="module")
def inputs(clip_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    text = root / "notes.mp4"
    text.write_text("not a video\n" * 20)
    audio = write_audio_only(root / "sound.wav")
    frames = textured_frames(7, 40, 56, seed=9)
    good = [clip_dir / "h264.mp4", clip_dir / "vp9_odd.webm", clip_dir / "mjpeg.avi"]
    videos = [good[0], text, good[1], frames, root / "missing.mp4", good[2], audio, good[0]]
    return videos, {1: UnreadableVideoError, 4: UnreadableVideoError, 6: NoVideoStreamError}


@pytest.fixture(scope="module")
def expected(tsn, inputs):
    """What one-at-a-time predict says for each readable input."""
    videos, bad = inputs
    with Recognizer(tsn) as rec:
        return {i: rec.predict(v, topk=2) for i, v in enumerate(videos) if i not in bad}


@pytest.mark.parametrize(("batch_size", "workers"), [(3, 2), (16, 3)])  # clips split across batches; one partial
def test_results_in_input_order_equal_predict_and_errors_do_not_stop_the_stream(tsn, inputs, expected, batch_size,
                                                                                 workers):
    videos, bad = inputs
    with Recognizer(tsn) as rec:
        results = list(rec.predict_iter(videos, batch_size=batch_size, workers=workers, topk=2))
        assert len(results) == len(videos)
        for i, (video, result) in enumerate(zip(videos, results, strict=True)):
            assert isinstance(result, VideoResult) and result.video is video
            assert set(result.timings) == set(STAGES)
            if i in bad:
                assert isinstance(result.error, bad[i]) and result.predictions == [] and not result.ok
                assert str(video) in str(result.error) or isinstance(video, np.ndarray)
                continue
            assert result.error is None
            assert [p.index for p in result.predictions] == [p.index for p in expected[i]]
            assert np.allclose([p.score for p in result.predictions], [p.score for p in expected[i]], atol=1e-5)
            assert result.timings["infer"] > 0


def test_a_run_of_broken_videos_longer_than_the_read_ahead_does_not_end_the_stream(tsn, clip_dir, tmp_path):
    """Regression: when every video in flight had been decoded and their clips did not fill a batch
    (broken videos bring none), the partial batch finished them all at once and the stream stopped
    although the input had more videos (500 in, 10 out)."""
    good = clip_dir / "h264.mp4"
    videos = [v for i in range(3) for v in (good, *(tmp_path / f"missing{i}_{j}.mp4" for j in range(3)))] + [good]
    with Recognizer(tsn) as rec:  # 2 clips per video, batch 4, 2 workers: at most 4 videos in flight
        results = list(rec.predict_iter(videos, batch_size=4, workers=2))
    assert [r.video for r in results] == videos
    assert [r.ok for r in results] == [v == good for v in videos]


def test_read_ahead_is_bounded_and_the_input_is_read_lazily(tsn, clip_dir):
    taken = []

    def endless():
        i = 0
        while True:
            taken.append(i)
            yield clip_dir / ("h264.mp4" if i % 2 else "mjpeg.avi")
            i += 1

    with Recognizer(tsn) as rec:
        stream = rec.predict_iter(endless(), batch_size=4, workers=2)
        for count, result in enumerate(stream, start=1):
            assert result.ok
            assert len(taken) - count <= 2 + 4 // rec.spec.num_clips  # workers + ceil(batch / clips)
            if count == 12:
                break


def test_clips_are_batched_across_videos(tsn, clip_dir):
    with Recognizer(tsn) as rec:
        sizes = []
        original = rec.backend.infer
        rec.backend.infer = lambda x: sizes.append(len(x)) or original(x)
        results = list(rec.predict_iter([clip_dir / "h264.mp4"] * 7, batch_size=4, workers=2))
        assert all(r.ok for r in results)
        assert sum(sizes) == 7 * 2 and sizes[:3] == [4, 4, 4] and max(sizes) == 4


def test_predict_batch_goes_through_the_stream_and_raises_the_first_error(tsn, clip_dir, tmp_path):
    with Recognizer(tsn) as rec:
        got = rec.predict_batch([clip_dir / "mjpeg.avi", clip_dir / "h264.mp4"], topk=1)
        assert [g[0].index for g in got] == [rec.predict(v, topk=1)[0].index
                                             for v in (clip_dir / "mjpeg.avi", clip_dir / "h264.mp4")]
        with pytest.raises(UnreadableVideoError, match="nothing.mp4"):
            rec.predict_batch([clip_dir / "mjpeg.avi", tmp_path / "nothing.mp4"])


def test_process_workers_give_the_same_results(tsn, inputs):
    videos, bad = inputs
    with Recognizer(tsn) as rec:
        videos = videos[:4]  # two readable, one broken, frames: spawning workers costs seconds
        threads = list(rec.predict_iter(videos, batch_size=3, workers=1))
        processes = list(rec.predict_iter(videos, batch_size=3, workers=1, worker_kind="process"))
    for a, b in zip(threads, processes, strict=True):
        assert type(a.error) is type(b.error) and str(a.error) == str(b.error)
        assert [(p.index, round(p.score, 5)) for p in a.predictions] == [(p.index, round(p.score, 5))
                                                                          for p in b.predictions]
