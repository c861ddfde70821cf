"""A Triton Inference Server model repository for an exported model.

Layout (Triton's documented repository structure)::

    DIR/<name>/config.pbtxt
    DIR/<name>/labels.txt          # class names, one per line (Triton's classification extension)
    DIR/<name>/1/model.plan        # platform "tensorrt_plan", or
    DIR/<name>/1/model.onnx        # platform "onnxruntime_onnx"

``config.pbtxt`` is protobuf text format of Triton's ``ModelConfig``: ``max_batch_size``
(dims exclude the batch dimension), ``dynamic_batching`` with preferred batch sizes
from the export profile, the ``video``/``logits`` tensors, and the ModelSpec JSON as a
parameter so preprocessing settings travel with the model. Preprocessing itself is
not in the graph: clients send normalized ``(N, 3, T, S, S)`` float32 batches.

A plan only loads in the TensorRT release that built it, so for ``tensorrt_plan``
the config also records ``tensorrt_version``, ``gpu_name`` and
``compute_capability`` from the plan's sidecar as parameters: serve it from a
Triton container whose TensorRT is that exact release, on a GPU of that compute
capability (NVIDIA's container release notes list each container's TensorRT).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from reskd_infer.errors import ExportError
from reskd_infer.export.onnx import INPUT_NAME, OUTPUT_NAME
from reskd_infer.io.artifacts import read_sidecar
from reskd_infer.spec import ModelSpec

PLATFORMS = {".plan": "tensorrt_plan", ".engine": "tensorrt_plan", ".onnx": "onnxruntime_onnx"}
DEFAULT_FILENAMES = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}


def triton_model_name(spec: ModelSpec) -> str:
    return "reskd_" + re.sub(r"[^A-Za-z0-9_]", "_", spec.arch)


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid protobuf text-format string


def _parameter(key: str, value: str) -> list[str]:
    return ["parameters {", f"  key: {_quote(key)}", f"  value: {{ string_value: {_quote(value)} }}", "}"]


def config_pbtxt(name: str, platform: str, spec: ModelSpec, max_batch_size: int,
                 preferred_batch_sizes: Sequence[int] = (), max_queue_delay_us: int = 2000,
                 engine: dict[str, str] | None = None) -> str:
    """The text of ``config.pbtxt`` for ``spec``'s input and output.

    ``engine``: for a plan, the sidecar's TensorRT facts (``version``, ``gpu_name``,
    ``compute_capability``), recorded as parameters; required for ``tensorrt_plan``.
    """
    if platform not in DEFAULT_FILENAMES:
        raise ExportError(f"unsupported Triton platform {platform!r}; expected one of {sorted(DEFAULT_FILENAMES)}")
    if max_batch_size < 1:
        raise ExportError(f"Triton max_batch_size must be >= 1, got {max_batch_size}")
    if platform == "tensorrt_plan" and not (engine or {}).get("version"):
        raise ExportError(f"{name}: a tensorrt_plan config needs the TensorRT version that built the plan")
    preferred = sorted({int(b) for b in preferred_batch_sizes if 1 < int(b) <= max_batch_size})
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {int(max_batch_size)}",
        "input [",
        "  {",
        f"    name: {_quote(INPUT_NAME)}",
        "    data_type: TYPE_FP32",
        f"    dims: {_dims(spec.input_shape)}",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_quote(OUTPUT_NAME)}",
        "    data_type: TYPE_FP32",
        f"    dims: {_dims([spec.num_classes])}",
        '    label_filename: "labels.txt"',
        "  }",
        "]",
        "dynamic_batching {",
    ]
    if preferred:
        lines.append(f"  preferred_batch_size: {_dims(preferred)}")
    lines += [f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}", "}"]
    if platform == "tensorrt_plan":
        lines += ["instance_group [", "  {", "    count: 1", "    kind: KIND_GPU", "  }", "]"]
    lines += _parameter("reskd_spec", spec.to_json())
    if platform == "tensorrt_plan":
        lines += _parameter("tensorrt_version", str(engine["version"]))  # type: ignore[index]
        for key in ("gpu_name", "compute_capability"):
            if (engine or {}).get(key):
                lines += _parameter(key, str(engine[key]))  # type: ignore[index]
    return "\n".join(lines) + "\n"


def write_triton_repository(repo: str | Path, model_file: str | Path, spec: ModelSpec, max_batch_size: int,
                            preferred_batch_sizes: Sequence[int] = (), name: str | None = None) -> Path:
    """Write ``repo/<name>/`` (config, labels, version 1 with a copy of ``model_file``); returns the model folder."""
    model_file = Path(model_file)
    platform = PLATFORMS.get(model_file.suffix.lower())
    if platform is None:
        raise ExportError(f"{model_file}: Triton needs a .plan or .onnx model")
    name = name or triton_model_name(spec)
    folder = Path(repo) / name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    engine = read_sidecar(model_file).get("tensorrt") if platform == "tensorrt_plan" else None
    config = config_pbtxt(name, platform, spec, max_batch_size, preferred_batch_sizes, engine=engine)
    shutil.copyfile(model_file, version / DEFAULT_FILENAMES[platform])
    (folder / "labels.txt").write_text("\n".join(spec.class_names) + "\n")
    (folder / "config.pbtxt").write_text(config)
    return folder
