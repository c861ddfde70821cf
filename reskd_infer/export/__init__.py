"""Export a checkpoint to verified ONNX, mixed-precision ONNX and TensorRT, as one folder.

``export_model(checkpoint, out_dir)`` writes::

    out_dir/manifest.json        # schema reskd-infer/export/1: spec, artifacts, verification reports
    out_dir/model.ckpt           # a copy of the checkpoint (the last fallback)
    out_dir/model.onnx           # FP32, dynamic batch, spec in metadata_props
    out_dir/model.fp16.onnx      # mixed precision (normalizations/softmax/reductions in FP32)
    out_dir/model.plan (+ .json) # TensorRT engine and its sidecar, when built
    out_dir/openvino/model.int8.xml (+ .bin), out_dir/model.int8.onnx, out_dir/model.int8.plan
                                 # int8=True: INT8 models that passed the agreement gate (.int8_stages)

Every stage (:mod:`.stages`, one small function each) is verified against the previous one
(:mod:`.verify`) and the export fails with :class:`ExportError` above the documented tolerances;
:mod:`.driver` picks the stages and runs them. ``Recognizer(out_dir)`` serves the folder, best
artifact first.
"""

from reskd_infer.export.driver import export_model
from reskd_infer.export.result import ExportResult, TensorRTUnavailableError

__all__ = ["ExportResult", "TensorRTUnavailableError", "export_model"]
