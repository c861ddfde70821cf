"""reskd-bench measures real models side by side; only the report's structure and arithmetic are
checked here (speed targets live in benchmarks/, never in tests)."""

import json

from reskd_infer.cli.bench import main as bench_main


def test_bench_reports_interleaved_cases_with_ratios(tmp_path, clip_dir, capsys):
    out = tmp_path / "bench.json"
    code = bench_main(["--arch", "tsn_r18", "--sizes", "64,32", "--frames", "2", "--backends", "torch",
                       "--rounds", "2", "--warmup", "0", "--video", str(clip_dir / "h264.mp4"),
                       "--json", "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    cases = printed["cases"]
    assert [c["name"] for c in cases] == ["tsn_r18@64/torch/b1", "tsn_r18@32/torch/b1"]
    for case in cases:
        assert case["engine"]["runs"] == 2 and case["end_to_end"]["runs"] == 2
        assert case["clips_per_s"] == 1000.0 / case["engine"]["median_ms"]
    # FLOPs of a 2D ResNet scale with the pixel count: 4x fewer at half the resolution.
    assert 3.5 < cases[0]["gflops_per_clip"] / cases[1]["gflops_per_clip"] < 4.5
    assert cases[0]["throughput_vs_first"] == 1.0
    assert abs(cases[1]["throughput_vs_first"] - cases[1]["clips_per_s"] / cases[0]["clips_per_s"]) < 1e-9


def test_bench_bad_model_is_a_clear_error(tmp_path, capsys):
    code = bench_main([str(tmp_path / "missing.ckpt"), "--backends", "torch", "--rounds", "1"])
    assert code == 2
    assert "missing.ckpt" in capsys.readouterr().err


def test_bench_tensorrt_without_gpu_says_what_is_missing(capsys):
    import torch

    if torch.cuda.is_available():
        import pytest

        pytest.skip("a GPU is present: the TensorRT benchmark would run for real")
    code = bench_main(["--arch", "tsn_r18", "--sizes", "32", "--frames", "2", "--backends", "tensorrt",
                       "--rounds", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "TensorRT engine not built" in err and "pip install" in err


def test_bench_videos_reports_the_pipeline(tmp_path, clip_dir, capsys):
    from reskd_infer import ModelSpec, build_model, save_checkpoint

    spec = ModelSpec(arch="tsn_r18", class_names=["a", "b"], input_size=32, num_frames=2)
    model = save_checkpoint(build_model(spec), spec, tmp_path / "m.ckpt")
    (tmp_path / "broken.mp4").write_text("no video here")
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{clip_dir / 'h264.mp4'}\nbroken.mp4\n{clip_dir / 'mjpeg.avi'}\n")
    code = bench_main([str(model), "--videos", str(listing), "--repeat", "2", "--backends", "torch",
                       "--workers", "2", "--batch-size", "3", "--json"])
    assert code == 0
    pipe = json.loads(capsys.readouterr().out)["pipeline"]
    assert pipe["videos"] == 6 and pipe["errors"] == 2
    assert abs(pipe["videos_per_s"] * pipe["seconds"] - 6) < 1e-6
    assert abs(pipe["clips_per_s"] * pipe["seconds"] - 4) < 1e-6  # one clip per readable video
    assert set(pipe["stages_ms"]) == {"demux", "decode", "preprocess", "infer", "wait"}
    assert pipe["peak_rss_mb"] > 50
