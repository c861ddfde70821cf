"""The checks reskd-doctor runs on the machine it runs on.

Every check returns a :class:`~.report.Check`. A GPU check whose hardware or package
is missing returns ``skipped`` with the reason; a check that raises becomes ``fail``
with the exception's message (the doctor itself never crashes on a broken install).
Comparisons reuse :func:`reskd_infer.export.verify.compare`: the candidate against the
PyTorch FP32 checkpoint on the CPU, on the tensors the Recognizer serves.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reskd_infer.backends.onnxruntime_ import CUDA_EP, TRT_EP, OnnxRuntimeBackend
from reskd_infer.backends.tensorrt_env import tensorrt_missing
from reskd_infer.doctor.report import FAIL, PASS, SKIPPED, Check
from reskd_infer.errors import BackendUnavailableError
from reskd_infer.export import export_model
from reskd_infer.export.tensorrt import missing_trt_names
from reskd_infer.export.verify import FP16_TOLERANCE, FP32_TOLERANCE, Runner, Tolerance, compare
from reskd_infer.io.artifacts import sidecar_path
from reskd_infer.io.checkpoint import save_checkpoint
from reskd_infer.models import build_model
from reskd_infer.runtime.recognizer import Recognizer
from reskd_infer.spec import ModelSpec
from reskd_infer.video import load_clips
from reskd_infer.video.encode import write_mp4
from reskd_infer.video.preprocess import clips_to_batch

PREPROCESS_ATOL = 1e-3  # normalized units (about 0.06 of a 0..255 grey level): GPU and CPU resize kernels differ
GPU_FP32_NOTE = "FP16 tolerance: ONNX Runtime's GPU providers may use TF32 for FP32 models"


@dataclass
class Workbench:
    """Everything the checks share: a small random-weight student, a real encoded clip, the CPU reference."""

    root: Path
    device: str = "cuda"
    arch: str = "mc3_18"
    size: int = 56
    frames: int = 8
    video: Path | None = None
    plan: Path | None = None  # set by the TensorRT check when a plan was built
    notes: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def spec(self) -> ModelSpec:
        return ModelSpec(arch=self.arch, class_names=["class0", "class1", "class2"], input_size=self.size,
                         crop_size=self.size, num_frames=self.frames)

    @cached_property
    def checkpoint(self) -> Path:
        torch.manual_seed(0)
        return save_checkpoint(build_model(self.spec), self.spec, self.root / "student.ckpt")

    @cached_property
    def clip(self) -> Path:
        """The given video, else a real H.264 clip of a moving random texture written here."""
        if self.video is not None:
            return self.video

        rng = np.random.default_rng(0)
        height, width = 2 * ((self.size + 33) // 2), 2 * ((self.size + 49) // 2)  # even: H.264 yuv420p
        canvas = rng.integers(0, 256, (height + 24, width + 48, 3), dtype=np.uint8)
        frames = np.stack([canvas[i : i + height, 2 * i : 2 * i + width] for i in range(24)])
        return write_mp4(self.root / "clip.mp4", frames)

    @cached_property
    def reference(self) -> Recognizer:
        return Recognizer(self.checkpoint, device="cpu", backend="torch")

    @cached_property
    def inputs(self) -> list[tuple[str, np.ndarray]]:
        rng = np.random.default_rng(1)
        return [(self.clip.name, self.reference.preprocess(self.clip).numpy()),
                ("random b8", rng.standard_normal((8, *self.spec.input_shape)).astype(np.float32))]

    @cached_property
    def onnx(self) -> Path:
        result = export_model(self.checkpoint, self.root / "export", fp16=False, batch=(1, 8, 8),
                              verify_clips=[self.clip])
        return Path(result.onnx_path)

    def cuda_problem(self) -> str | None:
        if torch.cuda.is_available():
            return None
        return (f"no NVIDIA GPU visible to torch (torch.cuda.is_available() is False; torch {torch.__version__}, "
                f"CUDA build {torch.version.cuda or 'none: a CPU-only torch'})")

    def close(self) -> None:
        if "reference" in self.__dict__:
            self.reference.close()


def skipped(name: str, reason: str) -> Check:
    return Check(name, SKIPPED, reason)


def compared(name: str, wb: Workbench, candidate: Runner, tolerance: Tolerance, note: str = "") -> Check:
    """``candidate`` against the CPU FP32 checkpoint on the workbench's inputs."""
    report = compare(name, ("torch cpu fp32", wb.reference.backend.infer), (name, candidate), wb.inputs, tolerance)
    detail = (f"max abs diff {report.max_abs:.3g} (allowed {report.rows[0].allowed_abs:.3g} on the clip), "
              f"min cosine {report.min_cosine:.6f}, top-1 agreement {report.top1_agreement:.0%} "
              f"over {report.samples} samples" + (f"; {note}" if note else ""))
    if not report.passed:
        return Check(name, FAIL, detail + ": " + "; ".join(report.failures))
    return Check(name, PASS, detail)


# ---- environment --------------------------------------------------------------------------------------
def check_driver(wb: Workbench) -> Check:
    name = "nvidia driver"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        if wb.cuda_problem():
            return skipped(name, "no NVIDIA driver here: nvidia-smi is not on PATH and torch sees no CUDA device")
        return Check(name, PASS, "nvidia-smi is not on PATH, but torch sees CUDA devices (the driver works)")
    proc = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return Check(name, FAIL, f"nvidia-smi failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return Check(name, PASS, "; ".join(line.strip() for line in proc.stdout.splitlines() if line.strip()))


def check_cuda(wb: Workbench) -> Check:
    name = "cuda (torch)"
    if wb.cuda_problem():
        return skipped(name, wb.cuda_problem())
    devices = [f"{i}: {torch.cuda.get_device_name(i)} (compute capability "
               f"{'.'.join(map(str, torch.cuda.get_device_capability(i)))})" for i in range(torch.cuda.device_count())]
    value = torch.arange(4.0, device=wb.device).sum().item()  # a kernel actually runs
    if value != 6.0:
        return Check(name, FAIL, f"a sum on {wb.device} gave {value}, not 6")
    return Check(name, PASS, f"torch {torch.__version__} built for CUDA {torch.version.cuda}, cuDNN "
                             f"{torch.backends.cudnn.version()}; devices {'; '.join(devices)}")


def check_tensorrt(wb: Workbench) -> Check:
    name = "tensorrt"
    problem = tensorrt_missing(wb.device)
    try:
        import tensorrt as trt
    except Exception:  # noqa: BLE001 - absent or broken: the problem text says which
        trt = None
    if wb.cuda_problem():
        have = f"tensorrt {trt.__version__} is importable, but " if trt is not None else ""
        return skipped(name, f"{have}{problem}")
    if trt is None or problem:
        return Check(name, FAIL, str(problem))

    missing = missing_trt_names(trt)
    if missing:
        return Check(name, FAIL, f"TensorRT {trt.__version__} lacks API names reskd-infer uses: {missing}")
    return Check(name, PASS, f"TensorRT {trt.__version__}; every API name reskd-infer uses exists")


def onnxruntime_distributions() -> dict[str, str]:
    found = {}
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def check_onnxruntime(wb: Workbench) -> Check:
    name = "onnxruntime providers"
    dists = onnxruntime_distributions()
    if len(dists) > 1:
        return Check(name, FAIL, f"both {', '.join(f'{k} {v}' for k, v in dists.items())} are installed: they "
                                 "provide one module and the CUDA provider disappears. pip uninstall -y onnxruntime "
                                 "onnxruntime-gpu, then pip install 'reskd-infer[gpu]' (or [cpu])")
    try:
        import onnxruntime as ort
    except ImportError:
        return Check(name, FAIL, "onnxruntime is not installed: pip install 'reskd-infer[cpu]' (or [gpu])")
    providers = ort.get_available_providers()
    detail = f"{', '.join(f'{k} {v}' for k, v in dists.items()) or 'onnxruntime'}: {', '.join(providers)}"
    if not wb.cuda_problem() and CUDA_EP not in providers:
        return Check(name, FAIL, f"{detail}; this machine has a GPU but this wheel has no CUDA provider: "
                                 "pip uninstall -y onnxruntime && pip install 'reskd-infer[gpu]'")
    return Check(name, PASS, detail)


# ---- backends against the CPU reference ---------------------------------------------------------------
def check_torch_cpu(wb: Workbench) -> Check:
    name = "torch cpu"
    probs = wb.reference.probabilities(wb.clip)
    if not np.isfinite(probs).all() or abs(float(probs.sum()) - 1) > 1e-4:
        return Check(name, FAIL, f"probabilities {probs} are not a distribution")
    top = int(probs.argmax())
    return Check(name, PASS, f"{wb.spec.arch} at {wb.size} px, {wb.frames} frames on {wb.clip.name}: "
                             f"top-1 {wb.spec.class_names[top]} ({probs[top]:.3f})")


def check_torch_cuda(wb: Workbench) -> Check:
    name = "torch cuda vs cpu"
    if wb.cuda_problem():
        return skipped(name, wb.cuda_problem())
    with Recognizer(wb.checkpoint, device=wb.device, backend="torch") as rec:
        return compared(name, wb, rec.backend.infer, FP16_TOLERANCE, "FP16 autocast")


def check_preprocess_cuda(wb: Workbench) -> Check:
    name = "preprocess cuda vs cpu"
    if wb.cuda_problem():
        return skipped(name, wb.cuda_problem())

    on_gpu = clips_to_batch(load_clips(wb.clip, wb.spec), wb.spec, torch.device(wb.device))
    diff = float((on_gpu.cpu() - wb.reference.preprocess(wb.clip)).abs().max())
    status = PASS if on_gpu.device.type == "cuda" and diff <= PREPROCESS_ATOL else FAIL
    return Check(name, status, f"max abs diff {diff:.3g} (allowed {PREPROCESS_ATOL}) on {wb.clip.name}, "
                               f"tensor on {on_gpu.device}")


def check_onnxruntime_cpu(wb: Workbench) -> Check:
    backend = OnnxRuntimeBackend(wb.onnx, device="cpu")
    return compared("onnxruntime cpu vs torch cpu", wb, backend.infer, FP32_TOLERANCE)


def _ort_gpu_problem(wb: Workbench, provider: str) -> str | None:
    import onnxruntime as ort

    if wb.cuda_problem():
        return wb.cuda_problem()
    if provider not in ort.get_available_providers():
        return (f"this onnxruntime has no {provider} ({', '.join(ort.get_available_providers())}): "
                "pip install 'reskd-infer[gpu]'")
    return None


def check_onnxruntime_cuda(wb: Workbench) -> Check:
    name = "onnxruntime cuda ep vs cpu"
    problem = _ort_gpu_problem(wb, CUDA_EP)
    if problem:
        return skipped(name, problem)
    backend = OnnxRuntimeBackend(wb.onnx, device=wb.device, providers=[CUDA_EP])
    if backend.providers[0] != CUDA_EP or backend.input_device.type != "cuda":
        return Check(name, FAIL, f"the session runs on {backend.providers}, input on {backend.input_device}")
    return compared(name, wb, backend.infer, FP16_TOLERANCE, GPU_FP32_NOTE + "; input via I/O binding")


def check_onnxruntime_tensorrt(wb: Workbench) -> Check:
    name = "onnxruntime tensorrt ep vs cpu"
    problem = _ort_gpu_problem(wb, TRT_EP)
    if problem:
        return skipped(name, problem)
    backend = OnnxRuntimeBackend(wb.onnx, device=wb.device, providers=[TRT_EP, CUDA_EP])
    if backend.providers[0] != TRT_EP:
        return Check(name, FAIL, f"the session runs on {backend.providers}")
    return compared(name, wb, backend.infer, FP16_TOLERANCE, GPU_FP32_NOTE)


def check_tensorrt_plan(wb: Workbench) -> Check:
    name = "tensorrt fp16 plan"
    problem = tensorrt_missing(wb.device)
    if problem:
        return skipped(name, problem)

    result = export_model(wb.checkpoint, wb.root / "tensorrt", trt=True, fp16=True, batch=(1, 8, 8),
                          verify_clips=[wb.clip])
    wb.plan = Path(result.plan_path)
    with Recognizer(wb.plan, device=wb.device, fallback=False) as rec:
        if rec.backend_name != "tensorrt":
            return Check(name, FAIL, f"{wb.plan} is served by {rec.backend_name}, not tensorrt")
        check = compared(name, wb, rec.backend.infer, FP16_TOLERANCE, "built, verified by reskd-export and "
                         "served through Recognizer(model.plan)")
    return check


def check_plan_fallback(wb: Workbench) -> Check:
    """A plan whose sidecar names another TensorRT release and GPU must fall back to the ONNX model."""
    name = "mismatched plan falls back"
    folder = wb.root / "fallback"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(wb.onnx, folder / "model.onnx")
    plan = folder / "model.plan"
    plan.write_bytes(b"a plan from another machine")
    sidecar = {"spec": wb.spec.to_dict(), "fallback": ["model.onnx"],
               "tensorrt": {"version": "0.0.0", "gpu_name": "another GPU", "compute_capability": "0.0"}}
    sidecar_path(plan).write_text(json.dumps(sidecar))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = Recognizer(plan, device=wb.device if not wb.cuda_problem() else "auto")
    with rec:
        served, served_kind = rec.backend_name, rec.backend.artifact
    reasons = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    try:
        Recognizer(plan, fallback=False).close()
        refused = False
    except BackendUnavailableError:
        refused = True
    if served_kind != "onnx" or not reasons or not refused:  # the ONNX model (OpenVINO or ONNX Runtime on CPUs)
        return Check(name, FAIL, f"served by {served}, warnings {reasons}, fallback=False raised: {refused}")
    return Check(name, PASS, f"served by {served} after the warning: {reasons[0]}")
