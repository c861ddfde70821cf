"""Where each artifact keeps its ModelSpec, and what an export folder holds.

* checkpoint (.ckpt/.safetensors/.pt): the spec in the safetensors metadata (``reskd_spec``);
* ONNX (.onnx): the spec JSON in ``metadata_props`` under the key ``reskd_spec``;
* TensorRT (.plan): a sidecar ``<plan>.json`` ``{"spec": {...}, "tensorrt": {...}, "fallback": [...]}``,
  never a header inside the plan, so trtexec, Triton and DeepStream load the plan as is;
* export folder: ``manifest.json`` ``{"spec": {...}, "artifacts": {"tensorrt": "model.plan",
  "onnx": "model.onnx", "onnx_fp16": "model.fp16.onnx", "checkpoint": "model.ckpt"}, "sha256": {file: hex}, ...}``.

A folder's artifacts are checked before they are loaded: each listed file must be a plain name inside
the folder, exist, and match the SHA-256 the manifest records; the spec each artifact carries must be
the manifest's. An ONNX model's external-data files must lie inside its folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
from onnx.external_data_helper import _get_all_tensors, uses_external_data

from reskd_infer.errors import ArtifactError, SpecError, one_line
from reskd_infer.formats import (
    ARTIFACT_CHECKPOINT,
    ARTIFACT_ONNX,
    ARTIFACT_TENSORRT,
    MANIFEST_NAME,
    SIDECAR_SUFFIX,
    artifact_type,
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
    """A manifest entry as a path; only plain file names inside the folder are accepted."""
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise ArtifactError(f"{folder / MANIFEST_NAME}: artifact {key!r} is {name!r}; expected a file name "
                            "inside the export folder")
    return folder / name


def check_folder_artifact(folder: str | Path, artifact: Path, manifest: dict[str, Any]) -> None:
    """The listed file exists and has the SHA-256 the manifest records (when it records one)."""
    if not artifact.is_file():
        raise ArtifactError(f"{artifact}: listed in {Path(folder) / MANIFEST_NAME} but missing; re-export the "
                            "folder with reskd-export")
    expected = (manifest.get("sha256") or {}).get(artifact.name)
    if expected and file_sha256(artifact) != expected:
        raise ArtifactError(f"{artifact}: corrupt or replaced: its SHA-256 differs from the one "
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
