"""``reskd-bench``: engine and end-to-end speed of artifacts, side by side (interleaved rounds, medians)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from reskd_infer.bench.measure import benchmark, build_arch_artifacts, pipeline_report, video_list
from reskd_infer.bench.tables import format_pipeline, format_table
from reskd_infer.errors import EXIT_USAGE, ReskdError, plain_warnings, report_error
from reskd_infer.formats import (
    ARTIFACT_CHECKPOINT,
    ARTIFACT_ONNX,
    ARTIFACT_TENSORRT,
    CLI_PRECISIONS,
    kind_for_backend,
)


def build_parser() -> argparse.ArgumentParser:
    """reskd-bench's arguments."""
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
    parser.add_argument("--precision", default="auto", metavar="LIST",
                        help="comma-separated precisions, one row each, interleaved (default auto: an export "
                        "folder's INT8 artifacts when reskd-export --int8 wrote them, else FP32). fp32,int8 on such a "
                        "folder gives FP32 and INT8 rows side by side; bf16: OpenVINO BF16 where the CPU has it and "
                        f"the export verified it (reports say which precision ran). One of {', '.join(CLI_PRECISIONS)}")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batch.split(",")]
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not precisions or set(precisions) - set(CLI_PRECISIONS):
        build_parser().error(f"--precision: expected a comma-separated subset of {', '.join(CLI_PRECISIONS)}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

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
                kinds = {b: kind_for_backend(b) for b in backends}  # the artifact each backend runs
                built = build_arch_artifacts(args.arch, sizes, args.frames, Path(tmp), ARTIFACT_ONNX in kinds.values(),
                                             trt=ARTIFACT_TENSORRT in kinds.values())
                for size, ckpt, onnx_path, plan_path in built:
                    built_for = {ARTIFACT_ONNX: onnx_path, ARTIFACT_TENSORRT: plan_path, ARTIFACT_CHECKPOINT: ckpt}
                    for b in backends:
                        path = built_for[kinds[b]]
                        if path is not None:
                            triples.append((f"{args.arch}@{size}/{b}", path, b))
            report = benchmark(triples, batches, args.rounds, args.warmup, args.video, precision=precisions)
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
