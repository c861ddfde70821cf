"""Post-training static INT8: NNCF for OpenVINO, ONNX Runtime's QDQ quantizer, and the agreement gate.

Both quantizers start from the verified FP32 ``model.onnx`` and the calibration samples of
:mod:`reskd_infer.export.calibration`:

* **OpenVINO**: ``nncf.quantize`` on the OpenVINO model read from the ONNX file (preset PERFORMANCE:
  symmetric INT8 weights and activations, per-channel weights, CPU target; on CPUs without VNNI NNCF's
  overflow fix for every layer, half-range weights, as NNCF advises for AVX2), saved as
  ``openvino/model.int8.xml`` + ``.bin`` with the spec in the IR's ``rt_info``.
* **ONNX Runtime**: ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel INT8
  weights, MinMax calibration. Activations are unsigned INT8 (what ONNX Runtime's x86 kernels prefer)
  with 7-bit weights (``reduce_range``) on CPUs without VNNI, as ONNX Runtime's guidance says; when the
  graph is also built for TensorRT they are signed and symmetric (TensorRT's explicit quantization
  accepts only those), and weights use the full range.

**The gate**: the INT8 model's top-1 (class probabilities averaged over the spec's views, as the
Recognizer answers) must agree with FP32's on at least ``min_agreement`` of the verification clips.
Below it the next fallback is tried: first keep the first convolution and the classifier in float
("keep_ends"), then NNCF's accuracy-aware mode (OpenVINO; it reverts the layers that cost most
agreement on the calibration clips, label-free) or percentile calibration (ONNX Runtime). The manifest
records every attempt and the one used; when none passes the artifact is deleted and the export
refuses (:class:`~reskd_infer.errors.Int8RefusedError`, exit 3) with the figure and the worst clips.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from reskd_infer.export.onnx import set_spec
from reskd_infer.formats import INT8, PRECISION_KEY
from reskd_infer.io.artifacts import ONNX_INPUT_NAME, ONNX_SPEC_KEY
from reskd_infer.io.cpuinfo import cpuinfo
from reskd_infer.io.files import atomic_write
from reskd_infer.spec import ModelSpec, library_versions

DEFAULT_MIN_AGREEMENT = 0.99
OPENVINO_MODES = ("default", "keep_ends", "accuracy_control")
ONNXRUNTIME_MODES = ("default", "keep_ends", "keep_ends_percentile")
ACCURACY_CONTROL_ITERATIONS = 16  # NNCF reverts at most this many layer groups to float
PAYS_MIN_SPEEDUP = 1.1  # below this measured INT8/FP32 ratio the exporter says INT8 does not pay here
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
FAMILIES_RESULTS = "benchmarks/results/int8/int8_families.json"
# The zoo families whose OpenVINO INT8 was measured under PAYS_MIN_SPEEDUP x FP32 (FAMILIES_RESULTS: 56 px, 4 frames,
# batch 1, 1 thread, random weights) on a CPU without VNNI: arch -> that speed-up. ``reskd-export --int8`` refuses
# them on such CPUs before decoding or quantizing anything (:func:`not_paying_reason`); the one place they are listed.
INT8_NOT_PAYING: dict[str, float] = {
    "swin3d_t": 0.838,  # 0.84x at 56 px; at 112 px, 8 frames: see docs/engines.md (cause not measured)
}
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class GateResult:
    """INT8 against FP32 on the verification clips."""

    agreement: float  # per clip (views averaged, as the Recognizer answers)
    view_agreement: float  # per view
    clips: list[dict[str, Any]] = field(default_factory=list)  # worst first

    def worst(self, n: int = 5) -> list[dict[str, Any]]:
        return self.clips[:n]


def cpu_description() -> tuple[str, set[str]]:
    """The CPU's model name and flags (Linux; elsewhere "this CPU" and no flags)."""
    name, flags = cpuinfo()
    return name or "this CPU", flags


def has_vnni() -> bool:
    """Whether this CPU has an 8-bit dot-product instruction (VNNI or AMX)."""
    return bool(cpu_description()[1].intersection(VNNI_FLAGS))


def _probabilities(logits: np.ndarray, spec: ModelSpec) -> np.ndarray:
    if spec.multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def agreement_gate(names: Sequence[str], fp32_logits: Sequence[np.ndarray], candidate: Runner,
                   batches: Sequence[np.ndarray], spec: ModelSpec) -> GateResult:
    """Top-1 agreement of ``candidate`` with the FP32 logits, clip by clip, the clips it moved most first."""
    rows, views_agree, views = [], 0, 0
    for name, ref, x in zip(names, fp32_logits, batches, strict=True):
        got = np.asarray(candidate(x), dtype=np.float32)
        if not np.isfinite(got).all():
            got = np.nan_to_num(got, nan=-1e9, posinf=1e9, neginf=-1e9)
        views_agree += int((got.argmax(1) == ref.argmax(1)).sum())
        views += len(ref)
        p32, p8 = _probabilities(ref, spec).mean(0), _probabilities(got, spec).mean(0)
        c32, c8 = int(p32.argmax()), int(p8.argmax())
        rows.append({"clip": name, "agree": c32 == c8, "fp32_class": spec.class_names[c32],
                     "fp32_prob": round(float(p32[c32]), 4), "int8_class": spec.class_names[c8],
                     "int8_prob_of_fp32_class": round(float(p8[c32]), 4)})
    rows.sort(key=lambda r: (r["agree"], -(r["fp32_prob"] - r["int8_prob_of_fp32_class"])))
    agreement = sum(r["agree"] for r in rows) / max(1, len(rows))
    return GateResult(agreement, views_agree / max(1, views), rows)


def describe_worst(gate: GateResult, n: int = 5) -> str:
    return "; ".join(f"{r['clip']} (FP32 {r['fp32_class']} {r['fp32_prob']:.2f} -> INT8 {r['int8_class']}, "
                     f"{r['int8_prob_of_fp32_class']:.2f} on {r['fp32_class']})" for r in gate.worst(n))


# ---- OpenVINO through NNCF -----------------------------------------------------------------------
def _openvino_ends(model: Any) -> list[str]:
    """The friendly names of the first convolution and the last MatMul (the classifier) of an OpenVINO model."""
    ops = list(model.get_ordered_ops())
    convs = [op for op in ops if op.get_type_name() in ("Convolution", "GroupConvolution")]
    heads = [op for op in ops if op.get_type_name() == "MatMul"]
    return [op.get_friendly_name() for op in (convs[:1] + heads[-1:])]


def quantize_openvino(onnx_path: Path, out_xml: Path, spec: ModelSpec, samples: Sequence[np.ndarray], mode: str,
                      min_agreement: float, tuning: Sequence[np.ndarray] = ()) -> dict[str, Any]:
    """Quantize ``onnx_path`` with NNCF into ``out_xml`` (+ .bin); returns the settings used. ``tuning``: the
    samples the accuracy-aware mode ranks layers on (default: the calibration samples)."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    model = ov.Core().read_model(str(onnx_path))
    ends = _openvino_ends(model) if mode in ("keep_ends", "accuracy_control") else []
    # Without VNNI, 8-bit dot products (AVX2 vpmaddubsw) saturate their 16-bit sums: NNCF's overflow fix quantizes
    # weights to half the range then (NNCF recommends ENABLE for AVX2 when accuracy drops; measured in
    # docs/engines.md: the trend student's validation agreement 96.0% -> 96.7%), like ONNX Runtime's reduce_range.
    overflow = OverflowFix.FIRST_LAYER if has_vnni() else OverflowFix.ENABLE
    common = {"preset": nncf.QuantizationPreset.PERFORMANCE, "target_device": nncf.TargetDevice.CPU,
              "subset_size": len(samples),
              "model_type": nncf.ModelType.TRANSFORMER if spec.arch.startswith("swin") else None,
              "ignored_scope": nncf.IgnoredScope(names=ends, validate=False) if ends else None}
    advanced = AdvancedQuantizationParameters(overflow_fix=overflow)
    calibration = nncf.Dataset(list(samples))
    from nncf.common.logging import nncf_logger

    level = nncf_logger.level
    nncf.set_log_level(logging.WARNING)  # NNCF logs every quantizer it places at INFO; the export has its own bar
    try:
        with contextlib.redirect_stdout(sys.stderr):  # NNCF draws its progress on stdout: --json owns stdout
            quantized = _quantize_nncf(nncf, ov, model, calibration, samples, tuning, mode, common, advanced,
                                       min_agreement)
    finally:
        nncf_logger.setLevel(level)
    quantized.set_rt_info(spec.to_json(), ONNX_SPEC_KEY)
    quantized.set_rt_info(INT8, PRECISION_KEY)
    save_ir(ov, quantized, out_xml)
    return {"tool": "nncf", "api": "nncf.quantize_with_accuracy_control" if mode == "accuracy_control"
            else "nncf.quantize", "mode": mode, "preset": "performance", "target_device": "CPU",
            "subset_size": len(samples), "fast_bias_correction": True, "overflow_fix": str(overflow.value),
            "kept_in_float": ends,
            "model_type": "transformer" if common["model_type"] else None,
            "max_drop": round(1.0 - min_agreement, 6) if mode == "accuracy_control" else None,
            "accuracy_control_samples": (len(tuning) or len(samples)) if mode == "accuracy_control" else None,
            "accuracy_control_on": ("tuning clips" if tuning else "calibration clips") if mode == "accuracy_control"
            else None}


def _quantize_nncf(nncf: Any, ov: Any, model: Any, calibration: Any, samples: Sequence[np.ndarray],
                   tuning: Sequence[np.ndarray], mode: str, common: dict[str, Any], advanced: Any,
                   min_agreement: float) -> Any:
    if mode == "accuracy_control":
        return _accuracy_controlled(nncf, ov, model, calibration, list(tuning) or samples, common, advanced,
                                    min_agreement)
    return nncf.quantize(model, calibration, **common, advanced_parameters=advanced)


def _accuracy_controlled(nncf: Any, ov: Any, model: Any, calibration: Any, samples: Sequence[np.ndarray],
                         common: dict[str, Any], advanced: Any, min_agreement: float) -> Any:
    """NNCF's accuracy-aware quantization, its metric the label-free top-1 agreement with FP32 per view
    on ``samples`` (the tuning clips, else the calibration ones: the verification clips stay unseen)."""
    fp32 = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    items = [(x, int(np.asarray(fp32(x)[0]).argmax())) for x in samples]

    def agreement(compiled: Any, data: Any) -> tuple[float, list[float]]:
        hits = [float(np.asarray(compiled(x)[0]).argmax() == top) for x, top in data]
        return (sum(hits) / max(1, len(hits))), hits

    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    validation = nncf.Dataset(items, lambda item: item[0])
    return nncf.quantize_with_accuracy_control(
        model, calibration, validation, agreement, max_drop=1.0 - min_agreement,
        drop_type=nncf.DropType.ABSOLUTE, **common, advanced_quantization_parameters=advanced,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=ACCURACY_CONTROL_ITERATIONS))


def save_ir(ov: Any, model: Any, out_xml: Path) -> None:
    """Write the IR through a temporary folder beside it, then move the .bin and last the .xml into place."""
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_xml.parent, prefix=".tmp-") as tmp:
        staged = Path(tmp) / out_xml.name
        ov.save_model(model, str(staged), compress_to_fp16=False)  # float layers stay FP32, as verified
        os.replace(staged.with_suffix(".bin"), out_xml.with_suffix(".bin"))
        os.replace(staged, out_xml)


# ---- ONNX Runtime QDQ ----------------------------------------------------------------------------
class _Samples:
    """ONNX Runtime's CalibrationDataReader protocol (get_next, None at the end) over the samples."""

    def __init__(self, samples: Sequence[np.ndarray]):
        self._it = iter(samples)
        self._n = len(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {ONNX_INPUT_NAME: x}

    def __len__(self) -> int:
        return self._n


def _onnx_ends(model: Any) -> list[str]:
    """The names of the first Conv and the last Gemm/MatMul (the classifier) of an ONNX graph."""
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    heads = [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    return convs[:1] + heads[-1:]


def quantize_onnxruntime(onnx_path: Path, out_path: Path, spec: ModelSpec, samples: Sequence[np.ndarray], mode: str,
                         for_tensorrt: bool) -> dict[str, Any]:
    """QDQ static quantization of ``onnx_path`` into ``out_path``; returns the settings used."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reduce_range = not for_tensorrt and not has_vnni()
    method = CalibrationMethod.Percentile if mode.endswith("percentile") else CalibrationMethod.MinMax
    with tempfile.TemporaryDirectory(prefix="reskd-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:  # shape inference and graph optimization first, as ONNX Runtime's quantization guide advises
            quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - an optimization the pre-processor cannot do: quantize the graph as is
            shutil.copyfile(onnx_path, prepared)
        ends = _onnx_ends(onnx.load(str(prepared))) if mode.startswith("keep_ends") else []
        staged = Path(tmp) / "int8.onnx"
        with contextlib.redirect_stdout(sys.stderr):  # the percentile calibrator prints: --json owns stdout
            quantize_static(str(prepared), str(staged), _Samples(samples), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=reduce_range,
                            activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=ends or None, calibrate_method=method,
                            # TensorRT's Q/DQ: signed INT8, zero point 0, float biases (it fuses them itself).
                            extra_options={"ActivationSymmetric": for_tensorrt, "WeightSymmetric": True,
                                           "QuantizeBias": not for_tensorrt})
        proto = onnx.load(str(staged))
    set_spec(proto, spec)
    _set_prop(proto, PRECISION_KEY, INT8)
    proto.producer_name = "reskd-infer"
    atomic_write(out_path, lambda t: onnx.save(proto, t))
    return {"tool": "onnxruntime.quantization", "api": "quantize_static", "mode": mode, "format": "QDQ",
            "per_channel": True, "reduce_range": reduce_range,
            "activation_type": "int8 symmetric" if for_tensorrt else "uint8",
            "weight_type": "int8 symmetric", "bias": "float" if for_tensorrt else "int32",
            "calibrate_method": method.name, "kept_in_float": ends,
            "for_tensorrt": for_tensorrt, "calibration_samples": len(samples)}


def _set_prop(proto: Any, key: str, value: str) -> None:
    props = proto.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == key:
            del props[i]
    entry = props.add()
    entry.key, entry.value = key, value


def tool_versions() -> dict[str, str | None]:
    return library_versions("nncf", "openvino", "onnxruntime", "onnx")


# ---- does INT8 pay here? ---------------------------------------------------------------------------
def speedup_vs_fp32(fp32: Runner, int8: Runner, sample: np.ndarray, rounds: int = 7) -> float:
    """Median FP32 time over median INT8 time of one batch, alternating the two (a short look, not a benchmark)."""
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(2):
        fp32(sample), int8(sample)
    for _ in range(rounds):
        for name, run in (("fp32", fp32), ("int8", int8)):
            start = time.perf_counter()
            run(sample)
            times[name].append(time.perf_counter() - start)
    return float(np.median(times["fp32"]) / np.median(times["int8"]))


def pays_line(engine: str, spec: ModelSpec, speedup: float) -> str | None:
    """The exporter's one line where INT8 is not faster than FP32 on this CPU, else None."""
    if speedup >= PAYS_MIN_SPEEDUP:
        return None
    cpu = cpu_description()[0]
    why = "" if has_vnni() else " (no VNNI: 8-bit dot products run as AVX2 vpmaddubsw)"
    return (f"int8: {engine} INT8 runs {spec.arch} at {spec.input_size} px at {speedup:.2f}x FP32 on {cpu}{why}: "
            "INT8 does not pay here; Recognizer(folder, precision='fp32') serves FP32")


def not_paying_reason(spec: ModelSpec) -> str | None:
    """The one-line refusal of ``--int8`` for a family measured not to pay on CPUs like this one, else None."""
    speedup = INT8_NOT_PAYING.get(spec.arch)
    if speedup is None or has_vnni():
        return None
    return (f"{spec.arch}: INT8 not exported: OpenVINO INT8 ran it at {speedup:.2f}x FP32 on a CPU without VNNI "
            f"({FAMILIES_RESULTS}), under the {PAYS_MIN_SPEEDUP}x it must gain to pay; "
            "the FP32/FP16 artifacts were written and verified")


def refusal_message(path: Path, engine: str, gate: GateResult, min_agreement: float,
                    attempts: Sequence[dict[str, Any]]) -> str:
    tried = ", ".join(f"{a['mode']} {a['agreement']:.1%}" if a.get("agreement") is not None
                      else f"{a['mode']} failed ({a.get('error')})" for a in attempts)
    return (f"{path}: {engine} INT8 refused: best top-1 agreement with FP32 {gate.agreement:.1%} on "
            f"{len(gate.clips)} verification clips < {min_agreement:.1%} after every fallback ({tried}); its worst "
            f"clips: {describe_worst(gate)}. The FP32/FP16 artifacts were written and verified.")


__all__ = ["DEFAULT_MIN_AGREEMENT", "INT8_NOT_PAYING", "GateResult", "agreement_gate", "not_paying_reason", "pays_line",
           "quantize_onnxruntime",
           "quantize_openvino", "refusal_message", "speedup_vs_fp32", "tool_versions"]
