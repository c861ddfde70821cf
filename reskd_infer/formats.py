"""The one table of artifact kinds: how each is recognised, what it is called in an export folder, which
engines run it (best first), and what ``reskd-bench`` sweeps.

The exporter names files from it, the io layer recognises artifacts with it, the backend registry and
``Recognizer(..., backend="auto")`` take their order from it, and ``reskd-bench`` maps a backend to the
artifact it needs through it (as Ultralytics' ``export_formats()`` serves its exporter, AutoBackend and
benchmarks). Adding a format is a row here plus a backend class (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reskd_infer.errors import BackendUnavailableError

ARTIFACT_CHECKPOINT = "checkpoint"
ARTIFACT_ONNX = "onnx"
ARTIFACT_ONNX_FP16 = "onnx_fp16"
ARTIFACT_TENSORRT = "tensorrt"
ARTIFACT_TRITON = "triton"
ARTIFACT_ONNX_INT8 = "onnx_int8"
ARTIFACT_OPENVINO_INT8 = "openvino_int8"
ARTIFACT_TENSORRT_INT8 = "tensorrt_int8"

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "reskd-infer/export/1"
SIDECAR_SUFFIX = ".json"  # a TensorRT plan's sidecar is "<plan>.json": never a header inside the plan
TIMING_CACHE_NAME = "model.timing.cache"

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")  # what Recognizer(precision=...) accepts
CLI_PRECISIONS = ("auto", "fp32", "bf16", "int8")  # what the CPU commands offer (FP16 is the engine's, on GPUs)
INT8 = "int8"
# Where an artifact says it holds INT8 (quantized) weights and activations: an ONNX model's metadata_props key,
# an OpenVINO IR's rt_info key (value "int8"). The manifest records it per artifact too.
PRECISION_KEY = "reskd_precision"


@dataclass(frozen=True)
class ArtifactFormat:
    """One kind of artifact."""

    kind: str
    description: str
    suffixes: tuple[str, ...]  # file suffixes that mean this kind (lower case)
    folder_file: str | None  # its file name inside an export folder; None: never in one
    backends: tuple[str, ...]  # engines that run it, best first ("auto" takes the first that can run here)
    folder_rank: int | None  # Recognizer(folder) tries kinds by this rank (0 first); None: not served from a folder
    gpu_only: bool = False
    url_schemes: tuple[str, ...] = ()  # served remotely: recognised by URL, not by a file
    precision: str = "fp32"  # what the artifact computes in: Recognizer(precision=...) selects kinds by it
    companions: tuple[str, ...] = ()  # suffixes of files that belong to it (an OpenVINO IR's weights .bin)


# An export folder with INT8 artifacts serves them first (reskd-export --int8 wrote them only after they passed
# the agreement gate): the precision was chosen once, at export; Recognizer(precision="fp32") selects FP32.
FORMATS: tuple[ArtifactFormat, ...] = (
    ArtifactFormat(ARTIFACT_TENSORRT_INT8, "TensorRT INT8 engine built from the QDQ ONNX, with its sidecar", (),
                   "model.int8.plan", ("tensorrt",), folder_rank=0, gpu_only=True, precision=INT8),
    ArtifactFormat(ARTIFACT_TENSORRT, "TensorRT engine with its <plan>.json sidecar", (".plan", ".engine"),
                   "model.plan", ("tensorrt",), folder_rank=1, gpu_only=True),
    ArtifactFormat(ARTIFACT_OPENVINO_INT8, "OpenVINO IR quantized by NNCF (.xml + .bin), the spec in its rt_info",
                   (".xml",), "openvino/model.int8.xml", ("openvino",), folder_rank=2, precision=INT8,
                   companions=(".bin",)),
    # A model.int8.onnx given directly loads as ONNX (its suffix is .onnx); its metadata says INT8.
    ArtifactFormat(ARTIFACT_ONNX_INT8, "ONNX QDQ INT8 (static, per-channel weights), the spec in its metadata", (),
                   "model.int8.onnx", ("onnxruntime",), folder_rank=3, precision=INT8),
    ArtifactFormat(ARTIFACT_ONNX, "ONNX FP32 with a dynamic batch, the spec in its metadata", (".onnx",),
                   "model.onnx", ("openvino", "onnxruntime"), folder_rank=4),
    # Built for TensorRT; a .fp16.onnx file given directly loads as ONNX (its suffix is .onnx).
    ArtifactFormat(ARTIFACT_ONNX_FP16, "mixed-precision ONNX (normalizations, softmax, reductions in FP32)", (),
                   "model.fp16.onnx", ("onnxruntime",), folder_rank=None, precision="fp16"),
    ArtifactFormat(ARTIFACT_CHECKPOINT, "PyTorch weights (safetensors) with the spec in their metadata",
                   (".ckpt", ".safetensors", ".pt", ".pth"), "model.ckpt", ("torch",), folder_rank=5),
    ArtifactFormat(ARTIFACT_TRITON, "a model on a Triton server (grpc://host:port/model)", (), None, ("triton",),
                   folder_rank=None, url_schemes=("grpc://",)),
)
_BY_KIND = {f.kind: f for f in FORMATS}


def artifact_format(kind: str) -> ArtifactFormat:
    """The table row of ``kind``."""
    return _BY_KIND[kind]


def is_remote(path: object) -> bool:
    """True for a URL one of the formats serves remotely (``grpc://`` Triton models)."""
    return isinstance(path, str) and any(path.lower().startswith(s) for f in FORMATS for s in f.url_schemes)


def artifact_type(path: str | Path) -> str:
    """The artifact kind of a file (by suffix) or a remote URL."""
    if isinstance(path, str):
        for f in FORMATS:
            if any(path.lower().startswith(s) for s in f.url_schemes):
                return f.kind
    suffix = Path(path).suffix.lower()
    for f in FORMATS:
        if suffix in f.suffixes:
            return f.kind
    known = sorted(s for f in FORMATS for s in f.suffixes)
    raise BackendUnavailableError(
        f"{path}: unknown artifact type {suffix!r}; expected one of {', '.join(known)} or an export folder")


def folder_kinds() -> list[str]:
    """The kinds Recognizer(folder) serves, in the order it tries them."""
    ranked = [f for f in FORMATS if f.folder_rank is not None]
    return [f.kind for f in sorted(ranked, key=lambda f: f.folder_rank)]


def folder_file(kind: str) -> str:
    """The file name of ``kind`` inside an export folder."""
    name = _BY_KIND[kind].folder_file
    if name is None:
        raise KeyError(f"{kind} artifacts are never written into an export folder")
    return name


def kind_for_backend(backend: str) -> str:
    """The FP32 artifact kind ``backend`` runs (the first in table order): what reskd-bench builds for it."""
    for f in FORMATS:
        if backend in f.backends and f.folder_rank is not None and f.precision != INT8:
            return f.kind
    raise BackendUnavailableError(f"unknown backend {backend!r}; known: "
                                  f"{', '.join(sorted({b for f in FORMATS for b in f.backends}))}")


def backend_order(kind: str) -> tuple[str, ...]:
    """The engines that run ``kind``, best first."""
    return _BY_KIND[kind].backends


def kind_precision(kind: str) -> str:
    """What artifacts of ``kind`` compute in ("fp32", "fp16" or "int8")."""
    return _BY_KIND[kind].precision


def companion_files(kind: str, path: Path) -> list[Path]:
    """The files that belong to the artifact ``path`` of ``kind`` besides itself (an IR's .bin)."""
    return [path.with_suffix(s) for s in _BY_KIND[kind].companions]
