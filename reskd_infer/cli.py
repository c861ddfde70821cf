"""Console entry points. Thin argument parsing only: every command calls the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def predict_main(argv: Sequence[str] | None = None) -> int:
    """reskd-predict MODEL VIDEO... [--topk K] [--json]"""
    parser = argparse.ArgumentParser(
        prog="reskd-predict",
        description="Classify video files with a reskd-infer model (checkpoint, ONNX, TensorRT plan or export folder). "
        "Frames are sampled, resized and normalized exactly as the model's spec says.",
    )
    parser.add_argument("model", help="a .ckpt, .onnx or .plan file, or an export folder written by reskd-export")
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to classify")
    parser.add_argument("--topk", type=int, default=5, help="how many classes to report per video (default: 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of one line per video")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, or cuda:N")
    parser.add_argument("--backend", default="auto", help="auto, torch, onnxruntime or tensorrt (default: auto)")
    parser.add_argument("--no-fallback", action="store_true",
                        help="fail instead of falling back to another artifact when the preferred one cannot run")
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error("--topk must be at least 1")

    from . import Recognizer
    from .errors import ReskdError

    try:
        recognizer = Recognizer(args.model, device=args.device, backend=args.backend, fallback=not args.no_fallback)
    except ReskdError as exc:
        if args.json:
            print(json.dumps({"model": args.model, "error": str(exc), "results": []}, indent=2))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    results, failed = [], 0
    with recognizer:
        for video in args.videos:
            try:
                preds = recognizer.predict(video, topk=args.topk)
            except ReskdError as exc:
                failed += 1
                results.append({"video": video, "error": str(exc)})
                if not args.json:
                    print(f"{video}\tERROR\t{exc}", file=sys.stderr)
                continue
            results.append({"video": video, "predictions": [p.to_dict() for p in preds]})
            if not args.json:
                print(f"{video}\t" + "\t".join(f"{p.label}:{p.score:.4f}" for p in preds))
        if args.json:
            doc = {"model": args.model, "backend": recognizer.backend_name, "arch": recognizer.spec.arch,
                   "results": results}
            print(json.dumps(doc, indent=2))
    return 1 if failed else 0


def export_main(argv: Sequence[str] | None = None) -> int:
    from .export.cli import main

    return main(argv)


def train_main(argv: Sequence[str] | None = None) -> int:
    from .train.cli import train_main as main

    return main(argv)


def eval_main(argv: Sequence[str] | None = None) -> int:
    from .train.cli import eval_main as main

    return main(argv)


def bench_main(argv: Sequence[str] | None = None) -> int:
    from .bench import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(predict_main())
