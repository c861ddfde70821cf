"""Where each artifact keeps its ModelSpec, and what an export folder holds.

* checkpoint (.ckpt/.safetensors/.pt): the spec in the safetensors metadata (``reskd_spec``);
* ONNX (.onnx): the spec JSON in ``metadata_props`` under the key ``reskd_spec``;
* TensorRT (.plan): a sidecar ``<plan>.json`` ``{"spec": {...}, "tensorrt": {...}, "fallback": [...]}``,
  never a header inside the plan, so trtexec, Triton and DeepStream load the plan as is;
* OpenVINO IR (.xml + .bin, the INT8 model NNCF writes): the spec JSON in the IR's ``rt_info`` under
  ``reskd_spec``, its precision under ``reskd_precision`` (read from the XML, without OpenVINO);
* export folder: ``manifest.json`` ``{"spec": {...}, "artifacts": {"tensorrt": "model.plan",
  "onnx": "model.onnx", "onnx_fp16": "model.fp16.onnx", "onnx_int8": "model.int8.onnx",
  "openvino_int8": "openvino/model.int8.xml", "checkpoint": "model.ckpt"}, "sha256": {file: hex}, ...}``.

A folder's artifacts are checked before they are loaded: each listed file must be a relative path inside
the folder (no ``..``), exist, and match the SHA-256 the manifest records (an IR's ``.bin`` too); the spec each
artifact carries must be the manifest's. An ONNX model's external-data files must lie inside its folder.
INT8 artifacts say so in their own metadata (``reskd_precision``: :func:`artifact_precision`).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path, PurePosixPath
from typing import Any

import onnx
from onnx.external_data_helper import _get_all_tensors, uses_external_data

from reskd_infer.errors import ArtifactError, SpecError, one_line
from reskd_infer.formats import (
    ARTIFACT_CHECKPOINT,
    ARTIFACT_ONNX,
    ARTIFACT_OPENVINO_INT8,
    ARTIFACT_TENSORRT,
    MANIFEST_NAME,
    PRECISION_KEY,
    SIDECAR_SUFFIX,
    artifact_type,
    companion_files,
    folder_kinds,
    is_remote,
)
from reskd_infer.io.checkpoint import spec_from_checkpoint
from reskd_infer.io.digests import file_sha256
from reskd_infer.spec import ModelSpec

ONNX_SPEC_KEY = "reskd_spec"
CARD_NAME = "card.json"  # reskd-card's measurements, written beside an export folder's manifest
ONNX_INPUT_NAME, ONNX_OUTPUT_NAME = "video", "logits"  # the graph contract the runtime and exporter share


def sidecar_path(plan: str | Path) -> Path:
    plan = Path(plan)
    return plan.with_name(plan.name + SIDECAR_SUFFIX)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable {what}: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: {what} must be a JSON object")
    return data


def read_sidecar(plan: str | Path) -> dict[str, Any]:
    """The sidecar JSON of a TensorRT plan."""
    return _read_json(sidecar_path(plan), "TensorRT sidecar (<plan>.json)")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an export folder."""
    path = Path(folder) / MANIFEST_NAME
    manifest = _read_json(path, "export manifest")
    if not isinstance(manifest.get("artifacts"), dict):
        raise ArtifactError(f"{path}: export manifest has no 'artifacts' mapping; re-export the folder with "
                            "reskd-export")
    return manifest


def read_card(folder: str | Path) -> dict[str, Any] | None:
    """The deployment card (``card.json``) of an export folder, or None when the folder has none."""
    path = Path(folder) / CARD_NAME
    return _read_json(path, "deployment card") if path.is_file() else None


def manifest_spec(folder: str | Path) -> ModelSpec:
    try:
        return ModelSpec.from_dict(read_manifest(folder).get("spec", {}))
    except SpecError as exc:
        raise ArtifactError(f"{Path(folder) / MANIFEST_NAME}: invalid model spec: {exc}") from None


def _folder_file(folder: Path, key: str, name: object) -> Path:
    """A manifest entry as a path; only relative paths inside the folder (no ``..``, no backslash) are accepted."""
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if (not isinstance(name, str) or not name or "\\" in name or PurePosixPath(name).is_absolute()
            or not parts or any(p in (".", "..") for p in parts) or name.endswith("/")):
        raise ArtifactError(f"{folder / MANIFEST_NAME}: artifact {key!r} is {name!r}; expected a file name "
                            "inside the export folder")
    return folder / name


def folder_key(folder: str | Path, path: Path) -> str:
    """How the manifest names ``path`` (its path relative to the export folder, with ``/``)."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name


def check_folder_artifact(folder: str | Path, artifact: Path, manifest: dict[str, Any], kind: str | None = None) -> None:
    """The listed file (and its companions, an IR's ``.bin``) exist and have the SHA-256 the manifest records."""
    files = [artifact] + (companion_files(kind, artifact) if kind else [])
    for path in files:
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in {Path(folder) / MANIFEST_NAME} but missing; re-export the "
                                "folder with reskd-export")
        expected = (manifest.get("sha256") or {}).get(folder_key(folder, path))
        if expected and file_sha256(path) != expected:
            raise ArtifactError(f"{path}: corrupt or replaced: its SHA-256 differs from the one "
                                f"{MANIFEST_NAME} records; re-export the folder with reskd-export")


def check_spec_matches_manifest(folder: str | Path, artifact: Path, spec: ModelSpec) -> None:
    """An export folder's manifest and the artifact served must describe the same model."""
    expected = manifest_spec(folder)
    if expected.replace(provenance={}) != spec.replace(provenance={}):
        mine, theirs = expected.to_dict(), spec.to_dict()
        fields = sorted(k for k in mine if k != "provenance" and mine.get(k) != theirs.get(k))
        raise ArtifactError(f"{Path(folder) / MANIFEST_NAME}: its model spec disagrees with {artifact.name}'s "
                            f"(fields: {', '.join(fields) or 'provenance'}); re-export the folder with reskd-export")


def check_onnx_external_data(path: Path, model: Any) -> None:
    """Every external-data file of an ONNX model lies inside the model's folder and exists."""

    folder = path.parent.resolve()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = (folder / location).resolve()
        if not location or not target.is_relative_to(folder):
            raise ArtifactError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, outside the "
                                "model's folder; refused")
        if not target.is_file():
            raise ArtifactError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, which is missing")


def read_onnx_spec(path: str | Path) -> ModelSpec:

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: ONNX model not found") from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise ArtifactError(f"{path}: not a readable ONNX model, corrupt or truncated ({type(exc).__name__})") from None
    if not model.graph.node:
        raise ArtifactError(f"{path}: not a readable ONNX model (no graph: corrupt, truncated or another format)")
    check_onnx_external_data(path, model)
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_SPEC_KEY not in props:
        raise SpecError(f"{path}: ONNX model has no '{ONNX_SPEC_KEY}' metadata; export it with reskd-export")
    try:
        return ModelSpec.from_json(props[ONNX_SPEC_KEY])
    except SpecError as exc:
        raise ArtifactError(f"{path}: invalid model spec in its metadata: {exc}") from None


def _ir_rt_info(path: Path) -> dict[str, str]:
    """The top-level ``rt_info`` entries of an OpenVINO IR (.xml), read with the standard library."""
    try:
        root = ElementTree.parse(path).getroot()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: OpenVINO IR not found") from None
    except (OSError, ElementTree.ParseError) as exc:
        raise ArtifactError(f"{path}: not a readable OpenVINO IR, corrupt or truncated ({one_line(exc)})") from None
    if root.tag != "net" or root.find("layers") is None:
        raise ArtifactError(f"{path}: not an OpenVINO IR (no <net><layers>)")
    info = root.find("rt_info")
    return {e.tag: e.get("value", "") for e in (info if info is not None else [])}


def read_ir_spec(path: str | Path) -> ModelSpec:
    """The spec an OpenVINO IR written by reskd-export keeps in its ``rt_info``."""
    path = Path(path)
    info = _ir_rt_info(path)
    if ONNX_SPEC_KEY not in info:
        raise SpecError(f"{path}: OpenVINO IR has no '{ONNX_SPEC_KEY}' rt_info; export it with reskd-export --int8")
    if not path.with_suffix(".bin").is_file():
        raise ArtifactError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
    try:
        return ModelSpec.from_json(info[ONNX_SPEC_KEY])
    except SpecError as exc:
        raise ArtifactError(f"{path}: invalid model spec in its rt_info: {exc}") from None


def artifact_precision(path: str | Path) -> str:
    """The precision an ONNX model or OpenVINO IR says it holds: "int8" (reskd-export --int8), else "fp32"."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return _ir_rt_info(path).get(PRECISION_KEY, "fp32")
    if path.suffix.lower() == ".onnx":
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception:  # noqa: BLE001 - read_onnx_spec reports a damaged file; here it is simply not INT8
            return "fp32"
        return {p.key: p.value for p in model.metadata_props}.get(PRECISION_KEY, "fp32")
    return "fp32"


def read_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec a local artifact or export folder carries (remote models: their backend's ``read_spec``)."""
    if is_remote(path):
        raise ArtifactError(f"{path}: a remote model; its backend reads its spec (Recognizer does this)")
    path = Path(path)
    if path.is_dir():
        return manifest_spec(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such file or export folder")
    kind = artifact_type(path)
    if kind == ARTIFACT_CHECKPOINT:

        return spec_from_checkpoint(path)
    if kind == ARTIFACT_ONNX:
        return read_onnx_spec(path)
    if kind == ARTIFACT_OPENVINO_INT8:
        return read_ir_spec(path)
    try:
        return ModelSpec.from_dict(read_sidecar(path).get("spec", {}))
    except SpecError as exc:
        raise ArtifactError(f"{sidecar_path(path)}: invalid model spec: {exc}") from None


def candidate_artifacts(path: str | Path) -> list[tuple[Path, str]]:
    """The artifacts a Recognizer may load for ``path``, best first (fallbacks after).

    For an export folder every listed artifact is returned, present or not: the caller checks each
    (:func:`check_folder_artifact`) so a missing file is reported, not silently skipped.
    """
    if is_remote(path):
        return [(path, artifact_type(path))]  # type: ignore[list-item]  # a URL, kept as a string
    path = Path(path)
    if path.is_dir():
        files = read_manifest(path)["artifacts"]
        out = [(_folder_file(path, k, files[k]), k) for k in folder_kinds() if k in files]
        if not out:
            raise ArtifactError(f"{path / MANIFEST_NAME}: lists no artifact to serve (checkpoint, onnx or "
                                "tensorrt); re-export the folder with reskd-export")
        return out
    if not path.exists():
        raise ArtifactError(f"{path}: no such file or export folder")
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
