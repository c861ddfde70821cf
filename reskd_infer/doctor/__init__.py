"""reskd-doctor: check every GPU path (and the CPU ones) on the machine it runs on, and report."""

from reskd_infer.doctor.report import FAIL, PASS, SKIPPED, Check, Report
from reskd_infer.doctor.run import CHECKS, run_doctor

__all__ = ["CHECKS", "FAIL", "PASS", "SKIPPED", "Check", "Report", "run_doctor"]
