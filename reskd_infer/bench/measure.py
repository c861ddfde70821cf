"""What ``reskd-bench`` measures: engine and end-to-end cases of artifacts, and the streaming pipeline.

Cases run in interleaved rounds (:func:`reskd_infer.bench.timing.interleave`); reports give medians,
90th percentiles and ratios against the first case of the same run.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from reskd_infer.bench.flops import clip_gflops
from reskd_infer.bench.machine import machine_info
from reskd_infer.bench.timing import interleave, spread
from reskd_infer.errors import DatasetError
from reskd_infer.export import export_model
from reskd_infer.io.checkpoint import save_checkpoint
from reskd_infer.models import build_model
from reskd_infer.runtime.batching import make_executor, prepare_video
from reskd_infer.runtime.recognizer import Recognizer
from reskd_infer.runtime.sources import expand_sources, read_source_list
from reskd_infer.spec import ModelSpec


@dataclass
class BenchCase:
    """One configuration: an artifact run by one backend at one batch size."""

    name: str
    artifact: str
    backend: str
    input_size: int
    num_frames: int
    batch: int
    gflops_per_clip: float | None = None
    precision: str = "fp32"  # what the engine actually ran (a refused BF16 request runs FP32)
    engine_ms: list[float] = field(default_factory=list)
    end_to_end_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The case's settings, engine and end-to-end spread, and clips/s at the engine median."""
        engine = spread(self.engine_ms)
        out = {k: v for k, v in asdict(self).items() if k not in ("engine_ms", "end_to_end_ms")}
        out["engine"] = engine
        out["end_to_end"] = spread(self.end_to_end_ms)
        out["clips_per_s"] = (1000.0 * self.batch / engine["median_ms"]) if engine else None
        return out


Call = Callable[[], object]


def run_cases(cases: list[tuple[BenchCase, Call, Call | None]], rounds: int, warmup: int,
              progress: bool = True) -> list[BenchCase]:
    """Time (case, engine call, end-to-end call or None) triples with :func:`interleave`, filling each case's
    milliseconds; within a round, a case's engine call then its end-to-end call, case after case."""
    arms: dict[str, Call] = {}
    for i, (_, engine_fn, e2e_fn) in enumerate(cases):
        arms[f"{i}/engine"] = engine_fn
        if e2e_fn:
            arms[f"{i}/e2e"] = e2e_fn
    timings = interleave(arms, rounds, warmup, "benchmark rounds" if progress else None)
    for i, (case, _, e2e_fn) in enumerate(cases):
        case.engine_ms += timings.ms(f"{i}/engine")
        if e2e_fn:
            case.end_to_end_ms += timings.ms(f"{i}/e2e")
    return [c for c, _, _ in cases]


def build_arch_artifacts(arch: str, sizes: Sequence[int], num_frames: int, work_dir: Path, onnx: bool,
                         num_classes: int = 10, trt: bool = False) -> list[tuple[int, Path, Path | None, Path | None]]:
    """Randomly initialised checkpoints (and ONNX exports, and TensorRT FP16 plans with ``trt``) of
    ``arch`` at each size: speed does not depend on the weights. Returns (size, ckpt, onnx, plan)."""
    out = []
    for size in sizes:
        spec = ModelSpec(arch=arch, class_names=[f"class{i}" for i in range(num_classes)], input_size=size,
                         num_frames=num_frames)
        ckpt = save_checkpoint(build_model(spec), spec, work_dir / f"{arch}_{size}.ckpt")
        onnx_path = plan_path = None
        if onnx or trt:
            # A failing TensorRT build (no GPU, no tensorrt) raises a ReskdError that says what is missing.
            result = export_model(ckpt, work_dir / f"{arch}_{size}", onnx=True, trt=trt, fp16=trt,
                                  verify_clips=())
            onnx_path = Path(result.onnx_path)
            plan_path = Path(result.plan_path) if result.plan_path else None
        out.append((size, ckpt, onnx_path, plan_path))
    return out


def benchmark(artifacts: Sequence[tuple[str, Path, str]], batches: Sequence[int], rounds: int, warmup: int,
              video: Path | None, progress: bool = True, precision: str | Sequence[str] = "auto") -> dict[str, object]:
    """Benchmark (name, artifact path, backend) triples at each batch size, once per precision asked for
    (``("fp32", "int8")`` on an export folder written with ``reskd-export --int8``: FP32 and INT8 rows side by side)."""
    precisions = [precision] if isinstance(precision, str) else list(precision)
    prepared = []
    for (name, path, backend), wanted in [(a, p) for a in artifacts for p in precisions]:
        name = f"{name}/{wanted}" if len(precisions) > 1 else name
        rec = Recognizer(path, backend=backend, max_batch=max(batches), precision=wanted)
        spec = rec.spec
        flops = clip_gflops(build_model(spec).eval(), spec.input_shape)
        for batch in batches:
            x = torch.randn(batch, *spec.input_shape).to(rec.backend.input_device)
            case = BenchCase(f"{name}/b{batch}", str(path), rec.backend_name, spec.input_size, spec.num_frames,
                             batch, round(flops, 3), getattr(rec.backend, "precision", "fp32"))
            e2e = (lambda r=rec: r.predict(video)) if (video is not None and batch == 1) else None
            prepared.append((case, (lambda r=rec, x=x: r.backend.infer(x)), e2e))
    cases = run_cases(prepared, rounds, warmup, progress)
    rows = [c.summary() for c in cases]
    base = rows[0]["clips_per_s"] if rows and rows[0]["clips_per_s"] else None
    for row in rows:
        row["throughput_vs_first"] = (row["clips_per_s"] / base) if base and row["clips_per_s"] else None
    return {
        "machine": machine_info(),
        "rounds": rounds,
        "warmup": warmup,
        "video": str(video) if video else None,
        "cases": rows,
    }


def video_list(source: str | Path, repeat: int = 1) -> list[Path]:
    """Videos from a folder (every video file below it, sorted) or a list file (the first column of each line,
    relative to the list's folder; repeats kept, so a short list can be cycled), the whole list ``repeat``
    times. Folders and lists are read as reskd-predict reads them (:mod:`reskd_infer.runtime.sources`)."""
    source = Path(source)
    if source.is_file():
        videos = read_source_list(source)
    elif source.is_dir():
        videos = expand_sources(source)
    else:
        raise DatasetError(f"{source}: no such folder or list file")
    return [Path(v) for v in videos] * max(1, repeat)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB)."""
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0  # Linux: KB, macOS: bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def measure_pipeline(recognizer: Recognizer, videos: Sequence[object], batch_size: int = 8, workers: int = 2,
                     worker_kind: str = "thread", progress: bool = False) -> dict[str, object]:
    """Stream ``videos`` through ``recognizer.predict_iter``: sustained rates, median per-video stage
    times (ms), errors, and peak RSS."""
    stages: dict[str, list[float]] = {}
    clips = errors = 0
    start = time.perf_counter()
    stream = recognizer.predict_iter(videos, batch_size=batch_size, workers=workers, worker_kind=worker_kind)
    for result in tqdm(stream, total=len(videos), desc="videos", disable=not progress, file=sys.stderr):
        errors += result.error is not None
        clips += 0 if result.error else recognizer.spec.num_clips
        for stage, ms in result.timings.items():
            stages.setdefault(stage, []).append(ms)
    seconds = time.perf_counter() - start
    return {
        "videos": len(videos), "errors": errors, "seconds": seconds,
        "videos_per_s": len(videos) / seconds, "clips_per_s": clips / seconds,
        "stages_ms": {k: statistics.median(v) for k, v in stages.items()},
        "peak_rss_mb": peak_rss_mb(), "batch_size": batch_size, "workers": workers, "worker_kind": worker_kind,
        "torch_threads": torch.get_num_threads(),
    }


def decode_only_rate(spec: ModelSpec, videos: Sequence[object], workers: int = 2, worker_kind: str = "thread") -> float:
    """Videos per second the decode workers sustain alone (decode + preprocess, no engine)."""
    start = time.perf_counter()
    with make_executor(worker_kind, workers) as pool:
        for _ in pool.map(prepare_video, videos, [spec] * len(videos)):
            pass
    return len(videos) / (time.perf_counter() - start)


def engine_only_rate(recognizer: Recognizer, batch_size: int, calls: int = 5) -> float:
    """Clips per second the engine sustains alone on ready batches of ``batch_size``."""
    x = torch.randn(batch_size, *recognizer.spec.input_shape).to(recognizer.backend.input_device)
    recognizer.backend.infer(x)  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        recognizer.backend.infer(x)
    return calls * batch_size / (time.perf_counter() - start)


def pipeline_report(models: Sequence[tuple[str, Path, str]], videos: Sequence[Path], batch_size: int, workers: int,
                    worker_kind: str, progress: bool = True) -> dict[str, object]:
    """``reskd-bench --videos``: the streaming pipeline per model (first model's figures under ``pipeline``)."""
    runs = []
    for name, path, backend in models:
        with Recognizer(path, backend=backend, max_batch=batch_size) as rec:
            run = measure_pipeline(rec, videos, batch_size, workers, worker_kind, progress)
            runs.append({"name": name, "backend": rec.backend_name, "arch": rec.spec.arch,
                         "input_size": rec.spec.input_size, **run})
    return {"machine": machine_info(), "videos": len(videos), "pipeline": runs[0], "runs": runs}
