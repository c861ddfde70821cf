"""The inference precisions the runtime accepts, and the one command-line flag that asks for them."""

from __future__ import annotations

import argparse

PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # what Recognizer(precision=...) accepts
CLI_PRECISIONS = ("auto", "fp32", "bf16")  # what the CPU commands offer (FP16 is the engine's, on GPUs)


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision`` for reskd-predict and reskd-bench (docs/engines.md)."""
    parser.add_argument("--precision", default="auto", choices=CLI_PRECISIONS,
                        help="inference precision (default auto = FP32 on the CPU). bf16: OpenVINO BF16 on CPUs with "
                        "AVX512-BF16/AMX, only for export folders whose verification passed the BF16 gate "
                        "(manifest.json); otherwise FP32 with a warning (reports say which precision ran)")
