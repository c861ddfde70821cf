"""reskd-doctor: check every GPU path (and the CPU ones) on the machine it runs on, and report."""

from .report import FAIL, PASS, SKIPPED, Check, Report
from .run import CHECKS, run_doctor

__all__ = ["CHECKS", "FAIL", "PASS", "SKIPPED", "Check", "Report", "run_doctor"]
