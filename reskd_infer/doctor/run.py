"""Run every check, in order, into one :class:`~.report.Report`."""

from __future__ import annotations

import platform
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from reskd_infer.backends.tensorrt_env import runtime_gpu, runtime_tensorrt_version
from reskd_infer.doctor import checks as c
from reskd_infer.doctor.report import FAIL, Check, Report
from reskd_infer.doctor.throughput import measure_throughput
from reskd_infer.version import __version__

CHECKS: tuple[Callable[[c.Workbench], Check], ...] = (
    c.check_driver, c.check_cuda, c.check_tensorrt, c.check_onnxruntime,
    c.check_torch_cpu, c.check_torch_cuda, c.check_preprocess_cuda,
    c.check_onnxruntime_cpu, c.check_onnxruntime_cuda, c.check_onnxruntime_tensorrt,
    c.check_tensorrt_plan, c.check_plan_fallback,
)


def environment(device: str) -> dict[str, object]:
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        providers = None
    return {"reskd_infer": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "torch": torch.__version__, "torch_cuda_build": torch.version.cuda, "cuda_available":
            torch.cuda.is_available(), "gpu": runtime_gpu(device), "onnxruntime": c.onnxruntime_distributions(),
            "onnxruntime_providers": providers, "tensorrt": runtime_tensorrt_version(),
            "torch_threads": torch.get_num_threads(), "device_checked": device}


def _guarded(check: Callable[[c.Workbench], Check], wb: c.Workbench) -> Check:
    try:
        return check(wb)
    except Exception as exc:  # noqa: BLE001 - the doctor reports a broken install, it does not crash on it
        where = traceback.extract_tb(exc.__traceback__)[-1]
        name = check.__name__.removeprefix("check_").replace("_", " ")
        return Check(name, FAIL, f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})")


def run_doctor(out_dir: str | Path | None = None, device: str = "cuda", arch: str = "mc3_18", size: int = 56,
               frames: int = 8, video: str | Path | None = None, rounds: int = 10,
               progress: bool = False) -> Report:
    """Run every check on this machine; write ``doctor.json`` and ``doctor.md`` into ``out_dir`` when given.

    GPU checks report ``skipped`` with the reason where there is no GPU, CUDA build of
    torch, ``onnxruntime-gpu`` or TensorRT; the CPU checks always run.
    """
    report = Report(environment(device))
    with tempfile.TemporaryDirectory(prefix="reskd-doctor-") as tmp:
        wb = c.Workbench(Path(tmp), device=device, arch=arch, size=size, frames=frames,
                         video=Path(video) if video else None)
        try:
            for check in tqdm(CHECKS, desc="reskd-doctor", unit="check", disable=not progress, file=sys.stderr):
                report.checks.append(_guarded(check, wb))
            try:
                more, report.throughput = measure_throughput(wb, rounds, progress)
                report.checks += more
            except Exception as exc:  # noqa: BLE001 - as above
                report.checks.append(Check("throughput", FAIL, f"{type(exc).__name__}: {exc}"))
        finally:
            wb.close()
    if out_dir is not None:
        report.write(out_dir)
    return report
