"""Argument helpers every command shares."""

from __future__ import annotations

import argparse

from reskd_infer.formats import CLI_PRECISIONS


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision`` for reskd-predict and reskd-bench (docs/engines.md)."""
    parser.add_argument("--precision", default="auto", choices=CLI_PRECISIONS,
                        help="inference precision (default auto: an export folder's INT8 artifacts when reskd-export "
                        "--int8 wrote them, else FP32 on the CPU). fp32: the FP32 artifacts even where INT8 ones "
                        "exist. int8: only INT8 artifacts (an error without them). bf16: OpenVINO BF16 on CPUs with "
                        "AVX512-BF16/AMX, only for export folders whose verification passed the BF16 gate "
                        "(manifest.json); otherwise FP32 with a warning (reports say which precision ran)")
