"""How the 8-bit weight range was chosen for CPUs without VNNI (issue 27): validation agreement per setting.

The trend benchmark's seed-0 56 px student, calibrated on 128 training clips (the exporter's draw, seed 0),
judged on the validation clips only: top-1 agreement with FP32 and top-1 accuracy, for

* OpenVINO (NNCF ``quantize``, preset performance): the overflow fix off, on the first layer (NNCF's default)
  and on every layer (half-range weights);
* ONNX Runtime (QDQ, per-channel, uint8 activations): ``reduce_range`` off and on (7-bit weights).

Without VNNI, AVX2's ``vpmaddubsw`` sums pairs of u8 x s8 products into saturating 16-bit lanes; both tools'
documentation advise the reduced range on such CPUs. The exporter's defaults follow this table.

    python -m benchmarks.accuracy.int8_settings     # writes benchmarks/results/int8/int8_settings.{json,md}
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy.int8_accuracy import CLIPS, STUDENT
from benchmarks.common import RESULTS, SCRATCH, git_commit
from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend
from reskd_infer.bench.machine import machine_info
from reskd_infer.export.calibration import calibration_samples, clip_batches, draw_clip_sets
from reskd_infer.export.int8 import agreement_gate
from reskd_infer.export.onnx import export_onnx
from reskd_infer.io.checkpoint import load_checkpoint
from reskd_infer.train.data import parse_list


def openvino_arm(onnx_path: Path, samples: list[np.ndarray], overflow: str) -> Any:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    core = ov.Core()
    quantized = nncf.quantize(core.read_model(str(onnx_path)), nncf.Dataset(samples), subset_size=len(samples),
                              preset=nncf.QuantizationPreset.PERFORMANCE, target_device=nncf.TargetDevice.CPU,
                              advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix(overflow)))
    compiled = core.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: np.asarray(compiled(x)[0])


def onnxruntime_arm(onnx_path: Path, samples: list[np.ndarray], reduce_range: bool, tmp: Path) -> Any:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader:
        def __init__(self) -> None:
            self.it = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {"video": x}

    quant_pre_process(str(onnx_path), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
    out = tmp / f"rr{int(reduce_range)}.onnx"
    quantize_static(str(tmp / "pre.onnx"), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return OnnxRuntimeBackend(out, device="cpu").infer


def main() -> int:
    warnings.simplefilter("ignore")
    t0 = time.time()
    model, spec = load_checkpoint(STUDENT)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp_dir:
        tmp = Path(tmp_dir)
        onnx_path = export_onnx(model, spec, tmp / "model.onnx")
        sets = draw_clip_sets(CLIPS / "train.txt", verify_list=CLIPS / "val.txt")
        samples = calibration_samples(clip_batches(sets.calibration, spec, "calibration"))
        batches = clip_batches(sets.verification, spec, "validation")
        labels = [s.labels[0] for s in parse_list(CLIPS / "val.txt", CLIPS)]
        names = [p.name for p in sets.verification]
        reference = OnnxRuntimeBackend(onnx_path, spec, device="cpu").infer
        fp32 = [reference(x) for x in batches]
        arms = [("openvino", "overflow fix off", lambda: openvino_arm(onnx_path, samples, "disable")),
                ("openvino", "overflow fix on the first layer (NNCF default)",
                 lambda: openvino_arm(onnx_path, samples, "first_layer_only")),
                ("openvino", "overflow fix on every layer (exporter default without VNNI)",
                 lambda: openvino_arm(onnx_path, samples, "enable")),
                ("onnxruntime", "reduce_range off (8-bit weights)", lambda: onnxruntime_arm(onnx_path, samples, False, tmp)),
                ("onnxruntime", "reduce_range on (7-bit weights; exporter default without VNNI)",
                 lambda: onnxruntime_arm(onnx_path, samples, True, tmp))]
        rows = []
        for engine, setting, make in arms:
            run = make()
            gate = agreement_gate(names, fp32, run, batches, spec)
            top1 = float(np.mean([int(run(x).mean(0).argmax() == y) for x, y in zip(batches, labels, strict=True)]))
            rows.append({"engine": engine, "setting": setting, "split": "val", "agreement_vs_fp32": gate.agreement,
                         "top1": top1})
            print(rows[-1], file=sys.stderr, flush=True)
    fp32_top1 = float(np.mean([int(f.mean(0).argmax() == y) for f, y in zip(fp32, labels, strict=True)]))
    result = {"commit": git_commit(), "machine": machine_info(), "student": str(STUDENT), "split": "val",
              "clips": len(batches), "calibration_clips": len(sets.calibration), "fp32_top1": fp32_top1,
              "rows": rows, "seconds": round(time.time() - t0, 1)}
    out = RESULTS / "int8"
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_settings.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# INT8 weight range on a CPU without VNNI (validation clips of the trend student)", "",
             f"CPU: {result['machine']['cpu']}, ISA flags {', '.join(result['machine']['isa'])}. "
             f"{len(batches)} validation clips, {len(sets.calibration)} calibration clips; FP32 top-1 {fp32_top1:.4f}.",
             "", "| engine | setting | agreement with FP32 | top-1 |", "|---|---|---|---|"]
    lines += [f"| {r['engine']} | {r['setting']} | {r['agreement_vs_fp32']:.4f} | {r['top1']:.4f} |" for r in rows]
    (out / "int8_settings.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
