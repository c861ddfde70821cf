"""reskd-doctor: one command that checks every GPU path on this machine and writes a report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from reskd_infer.doctor.run import run_doctor

EXIT_OK, EXIT_FAILED = 0, 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reskd-doctor",
        description="Check this machine's GPU paths and report: NVIDIA driver, CUDA in torch, TensorRT, ONNX "
        "Runtime's providers; a small random-weight student on the PyTorch backend (CPU, and CUDA against the "
        "CPU), GPU against CPU preprocessing, ONNX Runtime's CPU, CUDA and TensorRT providers against the CPU "
        "reference, a TensorRT FP16 plan built, verified and served through Recognizer(model.plan), a plan "
        "with a mismatched sidecar falling back to ONNX, and throughput at batch 1 and 8 per backend. Without "
        "a GPU every GPU check reports 'skipped' with the reason and the CPU checks run. Send the report "
        "files with bug reports.",
        epilog="Exit status: 0 no check failed (passed or skipped), 1 at least one check failed, 2 bad arguments.",
    )
    parser.add_argument("--out", type=Path, default=Path("reskd-doctor-report"), metavar="DIR",
                        help="folder for the report files doctor.json and doctor.md (default reskd-doctor-report)")
    parser.add_argument("--json", action="store_true",
                        help="print the report as one JSON document (a 'checks' list of {name, status, detail})")
    parser.add_argument("--device", default="cuda", metavar="DEV",
                        help="the CUDA device the GPU checks use: cuda or cuda:N (default cuda)")
    parser.add_argument("--arch", default="mc3_18",
                        help="architecture of the random-weight test student (default mc3_18: 3D convolutions)")
    parser.add_argument("--size", type=int, default=56, metavar="PX", help="its input size in pixels (default 56)")
    parser.add_argument("--frames", type=int, default=8, metavar="T", help="its frames per clip (default 8)")
    parser.add_argument("--video", type=Path, default=None, metavar="VIDEO",
                        help="a video to check on (default: an H.264 clip of a moving texture written on the fly)")
    parser.add_argument("--rounds", type=int, default=10, metavar="N",
                        help="timed rounds per throughput case, interleaved across backends (default 10)")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="torch intra-op threads for the CPU checks (0: leave torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.device.startswith("cuda"):
        parser.error("--device must be cuda or cuda:N (the CPU checks always run)")
    if args.size < 16 or args.frames < 1 or args.rounds < 1 or args.threads < 0:
        parser.error("--size must be >= 16, --frames and --rounds >= 1, --threads >= 0")
    if args.video is not None and not args.video.is_file():
        parser.error(f"--video {args.video}: no such file")


    if args.threads:
        torch.set_num_threads(args.threads)
    report = run_doctor(args.out, device=args.device, arch=args.arch, size=args.size, frames=args.frames,
                        video=args.video, rounds=args.rounds, progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for check in report.checks:
            print(f"{check.status.upper():8} {check.name}: {check.detail}")
        summary = report.summary()
        print(f"{summary['pass']} passed, {summary['fail']} failed, {summary['skipped']} skipped; "
              f"report: {args.out / 'doctor.json'} and {args.out / 'doctor.md'}")
    return EXIT_FAILED if report.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
