"""Where each artifact keeps its ModelSpec, and what an export folder holds.

* checkpoint (.ckpt/.safetensors/.pt): the spec in the safetensors metadata (``reskd_spec``);
* ONNX (.onnx): the spec JSON in ``metadata_props`` under the key ``reskd_spec``;
* TensorRT (.plan): a sidecar ``<plan>.json`` ``{"spec": {...}, "tensorrt": {...}, "fallback": [...]}``,
  never a header inside the plan, so trtexec, Triton and DeepStream load the plan as is;
* export folder: ``manifest.json`` ``{"spec": {...}, "artifacts": {"tensorrt": "model.plan",
  "onnx": "model.onnx", "onnx_fp16": "model.fp16.onnx", "checkpoint": "model.ckpt"}, ...}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .backends.base import ARTIFACT_CHECKPOINT, ARTIFACT_ONNX, ARTIFACT_TENSORRT, artifact_type
from .backends.triton_ import ARTIFACT_TRITON, is_triton_url
from .errors import CheckpointError, ReskdError, SpecError
from .spec import ModelSpec

ONNX_SPEC_KEY = "reskd_spec"
ONNX_INPUT_NAME, ONNX_OUTPUT_NAME = "video", "logits"  # the graph contract the runtime and exporter share
MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "reskd-infer/export/1"
# Which artifact of an export folder to try first.
FOLDER_PREFERENCE = (ARTIFACT_TENSORRT, ARTIFACT_ONNX, ARTIFACT_CHECKPOINT)


def sidecar_path(plan: str | Path) -> Path:
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReskdError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as exc:
        raise ReskdError(f"{path}: unreadable {what}: {exc}") from None
    if not isinstance(data, dict):
        raise ReskdError(f"{path}: {what} must be a JSON object")
    return data


def read_sidecar(plan: str | Path) -> dict[str, Any]:
    """The sidecar JSON of a TensorRT plan."""
    return _read_json(sidecar_path(plan), "TensorRT sidecar (<plan>.json)")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an export folder."""
    return _read_json(Path(folder) / MANIFEST_NAME, "export manifest")


def read_onnx_spec(path: str | Path) -> ModelSpec:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_SPEC_KEY not in props:
        raise SpecError(f"{path}: ONNX model has no '{ONNX_SPEC_KEY}' metadata; export it with reskd-export")
    return ModelSpec.from_json(props[ONNX_SPEC_KEY])


def read_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec any artifact (or export folder, or grpc:// Triton model) carries."""
    if is_triton_url(path):
        from .backends.triton_ import read_triton_spec

        return read_triton_spec(str(path))
    path = Path(path)
    if path.is_dir():
        manifest = read_manifest(path)
        return ModelSpec.from_dict(manifest.get("spec", {}))
    if not path.exists():
        raise ReskdError(f"{path}: no such file or export folder")
    kind = artifact_type(path)
    if kind == ARTIFACT_CHECKPOINT:
        from .checkpoint import spec_from_checkpoint

        return spec_from_checkpoint(path)
    if kind == ARTIFACT_ONNX:
        return read_onnx_spec(path)
    sidecar = read_sidecar(path)
    return ModelSpec.from_dict(sidecar.get("spec", {}))


def candidate_artifacts(path: str | Path) -> list[tuple[Path, str]]:
    """The artifacts a Recognizer may load for ``path``, best first (fallbacks after)."""
    if is_triton_url(path):
        return [(path, ARTIFACT_TRITON)]  # type: ignore[list-item]  # a URL, kept as a string
    path = Path(path)
    if path.is_dir():
        manifest = read_manifest(path)
        files = manifest.get("artifacts", {})
        out = [(path / files[k], k) for k in FOLDER_PREFERENCE if files.get(k) and (path / files[k]).exists()]
        if not out:
            raise ReskdError(f"{path}: export folder lists no existing artifact")
        return out
    if not path.exists():
        raise ReskdError(f"{path}: no such file or export folder")
    kind = artifact_type(path)
    out = [(path, kind)]
    if kind == ARTIFACT_TENSORRT:
        sidecar_file = sidecar_path(path)
        if sidecar_file.exists():
            for name in read_sidecar(path).get("fallback", []):
                candidate = path.parent / name
                if candidate.exists():
                    out.append((candidate, artifact_type(candidate)))
    return out
