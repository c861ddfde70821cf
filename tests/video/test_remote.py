"""Videos by URL from a 127.0.0.1 HTTP server with and without byte-range support (issue 26): an MP4 whose
index sits at its end needs seeking, which FFmpeg does over HTTP with range requests."""

from __future__ import annotations

import functools
import http.server
import socketserver
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from reskd_infer import ModelSpec, build_model, save_checkpoint
from reskd_infer.cli.predict import main as predict_main
from reskd_infer.errors import UnreadableVideoError
from reskd_infer.video import load_clips, probe
from videogen import textured_frames, write_video

SPEC = ModelSpec(arch="tsn_r18", class_names=["a"], input_size=32, num_frames=3)


class NoRanges(http.server.SimpleHTTPRequestHandler):
    """Python's own file server: it ignores Range headers and always answers 200 with the whole file."""

    ranges_seen: list[str | None]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.ranges_seen.append(self.headers.get("Range"))
        super().do_GET()


class WithRanges(NoRanges):
    """The same files, answering ``Range: bytes=a-b`` with 206 and the slice, as range-capable servers do."""

    def do_GET(self) -> None:
        spec = self.headers.get("Range")
        self.ranges_seen.append(spec)
        path = Path(self.translate_path(self.path))
        if not spec or not path.is_file():
            super().do_GET()
            return
        data = path.read_bytes()
        first, _, last = spec.removeprefix("bytes=").partition("-")
        start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start: end + 1])


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    write_video(root / "clip.mp4", textured_frames(150, 240, 320, seed=4))  # index after the media data
    return root


@pytest.fixture(params=[NoRanges, WithRanges], ids=["no_ranges", "ranges"])
def server(request, video_dir) -> Iterator[tuple[str, list[str | None], type]]:
    handler = type(request.param.__name__, (request.param,), {"ranges_seen": []})
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(video_dir)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.ranges_seen, request.param
    httpd.shutdown()
    httpd.server_close()


def test_a_url_gives_the_frames_of_the_file_with_or_without_range_support(server, video_dir):
    base, ranges_seen, kind = server
    url = f"{base}/clip.mp4"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clips = load_clips(url, SPEC)
        assert probe(url).num_frames == probe(video_dir / "clip.mp4").num_frames
    np.testing.assert_array_equal(clips, load_clips(video_dir / "clip.mp4", SPEC))
    said = [str(w.message) for w in caught if "byte-range" in str(w.message)]
    if kind is NoRanges:  # read through memory, said once for this URL however often it is opened
        assert len(said) == 1 and said[0].startswith(url)
    else:  # FFmpeg streamed it, seeking with range requests of its own
        assert not said and any(r not in (None, "bytes=0-0", "bytes=0-") for r in ranges_seen)


def test_a_large_file_from_a_server_without_ranges_is_one_clear_error(server, monkeypatch):
    base, _, kind = server
    monkeypatch.setenv("RESKD_URL_BUFFER_MB", "0.01")
    if kind is WithRanges:  # the bound only matters when the server refuses ranges
        assert load_clips(f"{base}/clip.mp4", SPEC).shape[1] == SPEC.num_frames
        return
    with pytest.raises(UnreadableVideoError, match=r"clip\.mp4: the server does not support byte-range requests.*"
                                                   r"MPEG-TS"):
        load_clips(f"{base}/clip.mp4", SPEC)


def test_reskd_predict_on_a_url_from_a_server_without_ranges(server, tmp_path, capsys):
    base, _, _ = server
    ckpt = save_checkpoint(build_model(SPEC), SPEC, tmp_path / "tiny.safetensors")
    assert predict_main([str(ckpt), f"{base}/clip.mp4", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"error": null' in out and "clip.mp4" in out
