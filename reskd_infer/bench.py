"""reskd-bench: throughput and latency, engine-only and end to end, measured side by side.

Configurations are measured in interleaved rounds (one call of each per round)
so that a noisy, shared machine slows them all alike; reports give medians,
90th percentiles and ratios against the first configuration of the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .precision import add_precision_argument


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
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            ordered = sorted(values)
            # Nearest-rank 90th percentile: never below the median.
            rank = max(0, math.ceil(0.9 * len(ordered)) - 1)
            return {"median_ms": statistics.median(ordered), "p90_ms": ordered[rank],
                    "min_ms": ordered[0], "runs": len(ordered)}

        engine = stats(self.engine_ms)
        out = {k: v for k, v in asdict(self).items() if k not in ("engine_ms", "end_to_end_ms")}
        out["engine"] = engine
        out["end_to_end"] = stats(self.end_to_end_ms)
        out["clips_per_s"] = (1000.0 * self.batch / engine["median_ms"]) if engine else None
        return out


def clip_gflops(model: torch.nn.Module, input_shape: Sequence[int]) -> float:
    """Forward FLOPs of one clip (multiply-add counted as 2), measured by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops() / 1e9


def _time_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def run_cases(cases: list[tuple[BenchCase, Callable[[], object], Callable[[], object] | None]], rounds: int,
              warmup: int, progress: bool = True) -> list[BenchCase]:
    """Interleave the cases for ``rounds`` rounds after ``warmup`` untimed ones."""
    from tqdm import tqdm

    for _ in range(warmup):
        for _, engine_fn, e2e_fn in cases:
            engine_fn()
            if e2e_fn:
                e2e_fn()
    for _ in tqdm(range(rounds), desc="benchmark rounds", disable=not progress, file=sys.stderr):
        for case, engine_fn, e2e_fn in cases:
            case.engine_ms.append(_time_ms(engine_fn))
            if e2e_fn:
                case.end_to_end_ms.append(_time_ms(e2e_fn))
    return [c for c, _, _ in cases]


def build_arch_artifacts(arch: str, sizes: Sequence[int], num_frames: int, work_dir: Path, onnx: bool,
                         num_classes: int = 10, trt: bool = False) -> list[tuple[int, Path, Path | None, Path | None]]:
    """Randomly initialised checkpoints (and ONNX exports, and TensorRT FP16 plans with ``trt``) of
    ``arch`` at each size: speed does not depend on the weights. Returns (size, ckpt, onnx, plan)."""
    from .checkpoint import save_checkpoint
    from .models import build_model
    from .spec import ModelSpec

    out = []
    for size in sizes:
        spec = ModelSpec(arch=arch, class_names=[f"class{i}" for i in range(num_classes)], input_size=size,
                         num_frames=num_frames)
        ckpt = save_checkpoint(build_model(spec), spec, work_dir / f"{arch}_{size}.ckpt")
        onnx_path = plan_path = None
        if onnx or trt:
            from .export import export_model

            # A failing TensorRT build (no GPU, no tensorrt) raises a ReskdError that says what is missing.
            result = export_model(ckpt, work_dir / f"{arch}_{size}", onnx=True, trt=trt, fp16=trt,
                                  verify_clips=())
            onnx_path = Path(result.onnx_path)
            plan_path = Path(result.plan_path) if result.plan_path else None
        out.append((size, ckpt, onnx_path, plan_path))
    return out


def benchmark(artifacts: Sequence[tuple[str, Path, str]], batches: Sequence[int], rounds: int, warmup: int,
              video: Path | None, progress: bool = True, precision: str = "auto") -> dict[str, object]:
    """Benchmark (name, artifact path, backend) triples at each batch size."""
    from . import Recognizer
    from .models import build_model

    prepared = []
    for name, path, backend in artifacts:
        rec = Recognizer(path, backend=backend, max_batch=max(batches), precision=precision)
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
        "machine": _machine(),
        "rounds": rounds,
        "warmup": warmup,
        "video": str(video) if video else None,
        "cases": rows,
    }


VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}


def video_list(source: str | Path, repeat: int = 1) -> list[Path]:
    """Videos from a folder (every video file, sorted) or a list file (one path per line, relative to
    the list's folder; repeats allowed), the whole list ``repeat`` times."""
    from .errors import DatasetError

    source = Path(source)
    if source.is_dir():
        videos = sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    elif source.is_file():
        lines = [ln.strip() for ln in source.read_text(encoding="utf-8").splitlines()]
        videos = [(source.parent / ln) for ln in lines if ln and not ln.startswith("#")]
    else:
        raise DatasetError(f"{source}: no such folder or list file")
    if not videos:
        raise DatasetError(f"{source}: no videos found")
    return videos * max(1, repeat)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB)."""
    import resource

    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0  # Linux: KB, macOS: bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def measure_pipeline(recognizer, videos: Sequence[object], batch_size: int = 8, workers: int = 2,
                     worker_kind: str = "thread", progress: bool = False) -> dict[str, object]:
    """Stream ``videos`` through ``recognizer.predict_iter``: sustained rates, median per-video stage
    times (ms), errors, and peak RSS."""
    from tqdm import tqdm

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


def decode_only_rate(spec, videos: Sequence[object], workers: int = 2, worker_kind: str = "thread") -> float:
    """Videos per second the decode workers sustain alone (decode + preprocess, no engine)."""
    from .pipeline import make_executor, prepare_video

    start = time.perf_counter()
    with make_executor(worker_kind, workers) as pool:
        for _ in pool.map(prepare_video, videos, [spec] * len(videos)):
            pass
    return len(videos) / (time.perf_counter() - start)


def engine_only_rate(recognizer, batch_size: int, calls: int = 5) -> float:
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
    from . import Recognizer

    runs = []
    for name, path, backend in models:
        with Recognizer(path, backend=backend, max_batch=batch_size) as rec:
            run = measure_pipeline(rec, videos, batch_size, workers, worker_kind, progress)
            runs.append({"name": name, "backend": rec.backend_name, "arch": rec.spec.arch,
                         "input_size": rec.spec.input_size, **run})
    return {"machine": _machine(), "videos": len(videos), "pipeline": runs[0], "runs": runs}


def _machine() -> dict[str, object]:
    import os

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}


def format_pipeline(report: dict[str, object]) -> str:
    lines = ["| model | backend | videos/s | clips/s | demux | decode | preprocess | infer | wait | peak RSS MB | "
             "errors |", "|" + "---|" * 11]
    for r in report["runs"]:  # type: ignore[union-attr]
        st = r["stages_ms"]
        lines.append(f"| {r['name']} | {r['backend']} | {r['videos_per_s']:.2f} | {r['clips_per_s']:.2f} | "
                     + " | ".join(f"{st.get(k, 0.0):.1f}" for k in ("demux", "decode", "preprocess", "infer", "wait"))
                     + f" | {r['peak_rss_mb']:.0f} | {r['errors']} |")
    return "\n".join(lines)


def format_table(report: dict[str, object]) -> str:
    lines = ["| case | backend | precision | size | frames | batch | GFLOPs/clip | engine median ms | p90 ms | "
             "clips/s | x first | end-to-end ms |", "|" + "---|" * 12]
    for r in report["cases"]:  # type: ignore[union-attr]
        e2e = r["end_to_end"]["median_ms"] if r["end_to_end"] else None
        lines.append(
            f"| {r['name']} | {r['backend']} | {r['precision']} | {r['input_size']} | {r['num_frames']} | {r['batch']} | "
            f"{r['gflops_per_clip']:.2f} | {r['engine']['median_ms']:.1f} | {r['engine']['p90_ms']:.1f} | "
            f"{r['clips_per_s']:.1f} | {r['throughput_vs_first']:.2f} | " + (f"{e2e:.1f} |" if e2e else "- |")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reskd-bench",
        description="Measure engine latency/throughput and end-to-end (decode + preprocess + infer) latency. "
        "Either benchmark given artifacts, or build random-weight models of --arch at several --sizes "
        "(speed does not depend on the weights) and compare them side by side.",
    )
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="artifacts to benchmark (.ckpt, .onnx, .plan or export folder); default: use --arch")
    parser.add_argument("--arch", default="r2plus1d_18", help="architecture to build when no MODEL is given")
    parser.add_argument("--sizes", default="224,112", help="comma-separated input sizes for --arch (default 224,112)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip for --arch (default 8)")
    parser.add_argument("--backends", default="torch,onnxruntime",
                        help="comma-separated backends to compare (torch, onnxruntime, openvino, tensorrt); "
                        "default torch,onnxruntime")
    add_precision_argument(parser)
    parser.add_argument("--batch", default="1", help="comma-separated batch sizes (clips per call), default 1")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per case (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up rounds (default 2)")
    parser.add_argument("--video", type=Path, default=None,
                        help="a video for end-to-end latency at batch 1 (decode + preprocess + infer)")
    parser.add_argument("--videos", default=None, metavar="DIR_OR_LIST",
                        help="measure the streaming pipeline (predict_iter) over these videos instead: a folder, or "
                        "a list file with one path per line (repeats allowed); reports videos/s, clips/s, "
                        "per-stage ms, peak RSS (JSON: the 'pipeline' object)")
    parser.add_argument("--repeat", type=int, default=1, help="with --videos: go through the list this many times")
    parser.add_argument("--workers", type=int, default=2, help="with --videos: decode workers (default 2)")
    parser.add_argument("--worker-kind", choices=("thread", "process"), default="thread",
                        help="with --videos: decode in threads (default) or processes")
    parser.add_argument("--batch-size", type=int, default=8, help="with --videos: clips per engine call (default 8)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of torch, ONNX Runtime and OpenVINO (0: leave torch's default)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batch.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    from .errors import EXIT_USAGE, ReskdError, plain_warnings, report_error

    plain_warnings()

    if args.videos is not None:
        return _pipeline_main(args, backends)
    try:
        with tempfile.TemporaryDirectory(prefix="reskd-bench-") as tmp:
            triples: list[tuple[str, Path, str]] = []
            if args.models:
                for model in args.models:
                    triples += [(f"{Path(model).name}/{b}", Path(model), b) for b in backends]
            else:
                sizes = [int(s) for s in args.sizes.split(",")]
                built = build_arch_artifacts(args.arch, sizes, args.frames, Path(tmp),
                                             bool({"onnxruntime", "openvino"} & set(backends)),
                                             trt="tensorrt" in backends)
                for size, ckpt, onnx_path, plan_path in built:
                    for b in backends:
                        path = {"onnxruntime": onnx_path, "openvino": onnx_path, "tensorrt": plan_path}.get(b, ckpt)
                        if path is not None:
                            triples.append((f"{args.arch}@{size}/{b}", path, b))
            report = benchmark(triples, batches, args.rounds, args.warmup, args.video, precision=args.precision)
    except ReskdError as exc:
        report_error(exc, args.json)
        return EXIT_USAGE
    return _write_report(report, args, format_table)


def _write_report(report: dict[str, object], args: argparse.Namespace,
                  table: Callable[[dict[str, object]], str]) -> int:
    """Print the report (JSON with --json, else the table) and write the JSON to --out if given."""
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text if args.json else table(report))
    return 0


def _pipeline_main(args: argparse.Namespace, backends: list[str]) -> int:
    from .errors import EXIT_USAGE, ReskdError, report_error

    if not args.models:
        print("error: --videos needs at least one MODEL", file=sys.stderr)
        return EXIT_USAGE
    backend = backends[0] if len(backends) == 1 else "auto"
    try:
        videos = video_list(args.videos, args.repeat)
        models = [(Path(m).name, Path(m), backend) for m in args.models]
        report = pipeline_report(models, videos, args.batch_size, args.workers, args.worker_kind)
    except ReskdError as exc:
        report_error(exc, args.json)
        return EXIT_USAGE
    return _write_report(report, args, format_pipeline)


if __name__ == "__main__":
    sys.exit(main())
