"""A Triton Inference Server client backend: ``Recognizer("grpc://host:8001/model_name")``.

Decoding, sampling and preprocessing stay on the client (the Recognizer does them with
the model's spec, as for every backend); only the normalized ``(N, 3, T, S, S)`` batch
travels to the server, which runs the model of the repository ``reskd-export --triton``
wrote. Everything the client needs comes from that model's ``config.pbtxt`` (protobuf
text of Triton's ``ModelConfig``): the ModelSpec JSON in its ``reskd_spec`` parameter,
the input and output tensor names and ``max_batch_size``; ``labels.txt`` must agree with
the spec's class names.

URL form: ``grpc://HOST:PORT/MODEL[/VERSION][?repository=DIR][&timeout=SECONDS]``. By
default the config is asked from the server (``ModelConfig`` RPC); with ``repository=``
it is read from the local copy of the repository instead. Every RPC has a deadline
(``timeout``, 10 s by default), so an unreachable server fails in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import torch
from google.protobuf import text_format

from reskd_infer.backends.base import Backend
from reskd_infer.errors import BackendUnavailableError, SpecError
from reskd_infer.formats import ARTIFACT_TRITON
from reskd_infer.spec import ModelSpec

SPEC_PARAMETER = "reskd_spec"
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TritonTarget:
    """Where a model is served: ``address`` (host:port), model name and version, optional local repository."""

    url: str
    address: str
    model: str
    version: str = ""
    repository: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


def parse_triton_url(url: str) -> TritonTarget:
    parts = urlsplit(url)
    names = [p for p in parts.path.split("/") if p]
    if parts.scheme.lower() != "grpc" or not parts.hostname or not parts.port or not 1 <= len(names) <= 2:
        raise BackendUnavailableError(f"{url}: expected grpc://HOST:PORT/MODEL[/VERSION]")
    query = parse_qs(parts.query)
    try:
        timeout = float(query.get("timeout", [DEFAULT_TIMEOUT_S])[0])
    except ValueError:
        raise BackendUnavailableError(f"{url}: timeout must be a number of seconds") from None
    return TritonTarget(url, f"{parts.hostname}:{parts.port}", names[0], names[1] if len(names) > 1 else "",
                        query.get("repository", [None])[0], timeout)


# ---- the model's config ---------------------------------------------------------------------------
def read_repository_config(folder: str | Path) -> Any:
    """The ``ModelConfig`` of a model folder of a Triton repository (``DIR/<model>/config.pbtxt``)."""
    from tritonclient.grpc import model_config_pb2

    path = Path(folder) / "config.pbtxt"
    if not path.is_file():
        raise SpecError(f"{path}: Triton model config not found")
    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise SpecError(f"{path}: not a valid Triton ModelConfig ({exc})") from None


def spec_from_config(config: Any, where: str, labels_file: Path | None = None) -> ModelSpec:
    """The ModelSpec a Triton ``ModelConfig`` carries; checks ``labels.txt`` when given."""
    if SPEC_PARAMETER not in config.parameters:
        raise SpecError(f"{where}: Triton config has no '{SPEC_PARAMETER}' parameter; export it with reskd-export --triton")
    spec = ModelSpec.from_json(config.parameters[SPEC_PARAMETER].string_value)
    if labels_file is not None and labels_file.is_file():
        labels = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if labels != list(spec.class_names):
            raise SpecError(f"{labels_file}: labels disagree with the class names in {where}'s spec")
    return spec


def read_repository_spec(folder: str | Path) -> ModelSpec:
    """The ModelSpec of a model folder of an exported Triton repository."""
    folder = Path(folder)
    return spec_from_config(read_repository_config(folder), str(folder / "config.pbtxt"), folder / "labels.txt")


def _client(target: TritonTarget) -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise BackendUnavailableError("the triton backend needs tritonclient: pip install 'tritonclient[grpc]'") from None
    return grpcclient.InferenceServerClient(url=target.address)


def fetch_config(target: TritonTarget, client: Any = None) -> Any:
    """The model's ``ModelConfig``: from the local repository when the URL names one, else from the server."""
    if target.repository:
        return read_repository_config(Path(target.repository) / target.model)
    from tritonclient.utils import InferenceServerException

    client = client or _client(target)
    try:
        return client.get_model_config(target.model, target.version, client_timeout=target.timeout_s).config
    except InferenceServerException as exc:
        raise BackendUnavailableError(f"{target.url}: cannot get the model config from the Triton server "
                                      f"({exc.message() or exc.status()})") from None


def read_triton_spec(url: str) -> ModelSpec:
    """The ModelSpec of the model a ``grpc://`` URL names."""
    target = parse_triton_url(url)
    labels = Path(target.repository) / target.model / "labels.txt" if target.repository else None
    return spec_from_config(fetch_config(target), url, labels)


# ---- requests -------------------------------------------------------------------------------------
def build_request(batch: np.ndarray, input_name: str, output_name: str) -> tuple[list[Any], list[Any]]:
    """The ``InferInput`` (FP32, the batch's shape and bytes) and ``InferRequestedOutput`` of one call."""
    import tritonclient.grpc as grpcclient

    batch = np.ascontiguousarray(batch, dtype=np.float32)
    infer_input = grpcclient.InferInput(input_name, list(batch.shape), "FP32")
    infer_input.set_data_from_numpy(batch)
    return [infer_input], [grpcclient.InferRequestedOutput(output_name)]


class TritonBackend(Backend):
    """Remote inference on a Triton server over gRPC (see the module doc)."""

    name = "triton"
    artifact = ARTIFACT_TRITON

    @classmethod
    def read_spec(cls, path: str | Path) -> ModelSpec:
        return read_triton_spec(str(path))

    @classmethod
    def available(cls, device: str = "auto") -> str | None:
        try:
            import tritonclient.grpc  # noqa: F401
        except ImportError:
            return "tritonclient is not installed (pip install 'tritonclient[grpc]')"
        return None

    def __init__(self, path: str | Path, spec: ModelSpec, device: str = "auto"):
        super().__init__(path, spec, device)
        self.url = str(path)
        self.path = self.url  # type: ignore[assignment]  # a URL, not a file
        self.target = parse_triton_url(self.url)
        self.client = _client(self.target)
        config = fetch_config(self.target, self.client)
        if len(config.input) != 1 or len(config.output) != 1:
            raise BackendUnavailableError(f"{self.url}: expected one input and one output in the Triton config")
        self.input_name, self.output_name = config.input[0].name, config.output[0].name
        self.max_batch = max(1, int(config.max_batch_size))

    def infer(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        array = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
        parts = []
        for start in range(0, len(array), self.max_batch):
            inputs, outputs = build_request(array[start : start + self.max_batch], self.input_name, self.output_name)
            try:
                result = self.client.infer(self.target.model, inputs, self.target.version, outputs,
                                           client_timeout=self.target.timeout_s)
            except InferenceServerException as exc:
                raise BackendUnavailableError(f"{self.url}: Triton inference failed "
                                              f"({exc.message() or exc.status()})") from None
            parts.append(result.as_numpy(self.output_name).astype(np.float32, copy=False))
        return np.concatenate(parts, axis=0)

    def release(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()
            self.client = None
