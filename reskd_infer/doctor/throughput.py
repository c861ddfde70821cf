"""Throughput at batch 1 and 8 for every backend this machine can run, interleaved like reskd-bench."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from reskd_infer.backends.onnxruntime_ import CUDA_EP
from reskd_infer.bench.measure import BenchCase, run_cases
from reskd_infer.doctor.checks import Workbench, _ort_gpu_problem
from reskd_infer.doctor.report import PASS, SKIPPED, Check
from reskd_infer.runtime.recognizer import Recognizer

BATCHES = (1, 8)


def _candidates(wb: Workbench) -> list[tuple[str, str, Path | None, str | None]]:
    """(backend, device, artifact, reason it cannot run here or None)."""

    cuda = wb.cuda_problem()
    plan_reason = None if wb.plan is not None else (cuda or "no TensorRT plan was built (see the tensorrt checks)")
    return [
        ("torch", "cpu", wb.checkpoint, None),
        ("onnxruntime", "cpu", wb.onnx, None),
        ("torch", wb.device, wb.checkpoint, cuda),
        ("onnxruntime", wb.device, wb.onnx, cuda or _ort_gpu_problem(wb, CUDA_EP)),
        ("tensorrt", wb.device, wb.plan, plan_reason),
    ]


def measure_throughput(wb: Workbench, rounds: int, progress: bool = False) -> tuple[list[Check], list[dict]]:
    """One check per (backend, device) with clips/s at each batch size, and the raw rows for the report."""
    checks: list[Check] = []
    runnable = []
    for backend, device, artifact, reason in _candidates(wb):
        name = f"throughput {backend} {device}"
        if reason:
            checks.append(Check(name, SKIPPED, reason))
        else:
            runnable.append((name, backend, device, artifact))
    recognizers, cases = [], []
    try:
        for name, backend, device, artifact in runnable:
            rec = Recognizer(artifact, device=device, backend=backend, fallback=False, max_batch=max(BATCHES))
            recognizers.append(rec)
            for batch in BATCHES:
                x = torch.randn(batch, *wb.spec.input_shape)
                case = BenchCase(f"{name}/b{batch}", str(artifact), backend, wb.size, wb.frames, batch)
                cases.append((case, _infer(rec, x.numpy()), None))
        run_cases(cases, rounds=rounds, warmup=1, progress=progress)
    finally:
        for rec in recognizers:
            rec.close()
    rows = []
    for name, backend, device, _ in runnable:
        mine = [c.summary() for c, _, _ in cases if c.name.startswith(name + "/")]
        for row in mine:
            rows.append({"backend": backend, "device": device, "batch": row["batch"],
                         "median_ms": row["engine"]["median_ms"], "clips_per_s": row["clips_per_s"]})
        detail = ", ".join(f"batch {r['batch']}: {r['clips_per_s']:.1f} clips/s" for r in mine)
        checks.append(Check(name, PASS, f"{detail} (median of {rounds} interleaved rounds, engine only, "
                                        f"torch threads: {torch.get_num_threads()})"))
    return checks, rows


def _infer(rec: Recognizer, x) -> Callable[[], object]:
    return lambda: rec.backend.infer(x)
