"""The triton client backend, offline: spec loading from an exported repository, request building,
errors when the server is unreachable (127.0.0.1 only, within seconds), and a round trip through a
STAND-IN server (a contract test: a few lines of gRPC implementing Triton's ModelConfig/ModelInfer
with ONNX Runtime; no real Triton server has run here)."""

import socket
import time

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model
from reskd_infer.backends.triton_ import build_request, parse_triton_url, read_repository_spec
from reskd_infer.errors import BackendUnavailableError, SpecError
from reskd_infer.export.onnx import export_onnx
from reskd_infer.export.triton import write_triton_repository
from triton_standin import start_standin


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """An ONNX model and the Triton repository reskd-export writes for it."""
    torch.manual_seed(0)
    spec = ModelSpec(arch="r3d_18", class_names=["walk", "run", "jump"], input_size=32, crop_size=64,
                     num_frames=4, frame_interval=2, num_clips=3)
    root = tmp_path_factory.mktemp("triton")
    onnx_path = export_onnx(build_model(spec).eval(), spec, root / "model.onnx")
    folder = write_triton_repository(root / "models", onnx_path, spec, max_batch_size=2)
    return root / "model.onnx", folder, spec


def test_spec_and_request_come_from_the_exported_repository(repository, tmp_path):
    _, folder, spec = repository
    assert read_repository_spec(folder) == spec
    batch = np.random.default_rng(0).standard_normal((2, *spec.input_shape)).astype(np.float32)
    (inp,), (out,) = build_request(batch, "video", "logits")
    assert inp.name() == "video" and inp.datatype() == "FP32" and inp.shape() == [2, 3, 4, 32, 32]
    assert inp._get_content() == batch.tobytes() and out.name() == "logits"
    target = parse_triton_url(f"grpc://127.0.0.1:8001/{folder.name}/1?repository={folder.parent}&timeout=2")
    assert (target.address, target.model, target.version, target.timeout_s) == ("127.0.0.1:8001", folder.name, "1", 2.0)
    (folder.parent / "bad").mkdir()
    (folder.parent / "bad" / "labels.txt").write_text("a\nb\nc\n")
    (folder.parent / "bad" / "config.pbtxt").write_text((folder / "config.pbtxt").read_text())
    with pytest.raises(SpecError, match="labels disagree"):
        read_repository_spec(folder.parent / "bad")
    with pytest.raises(BackendUnavailableError, match="expected grpc://"):
        parse_triton_url("grpc://127.0.0.1/model")


def test_unreachable_server_fails_within_seconds(repository):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="127.0.0.1"):
        Recognizer(f"grpc://127.0.0.1:{port}/reskd_r3d_18?timeout=2", fallback=False)
    # With the config from the local repository the client starts, and the first inference fails.
    _, folder, _ = repository
    with Recognizer(f"grpc://127.0.0.1:{port}/{folder.name}?repository={folder.parent}&timeout=2") as rec:
        with pytest.raises(BackendUnavailableError, match="inference failed"):
            rec.predict(np.zeros((8, 64, 64, 3), np.uint8))
    assert time.monotonic() - start < 10


def test_round_trip_through_a_stand_in_server_equals_local_onnx(repository, clip_dir):
    onnx_path, folder, _ = repository
    servicer, server, port = start_standin(onnx_path, folder)
    try:
        with Recognizer(f"grpc://127.0.0.1:{port}/{folder.name}") as remote, Recognizer(onnx_path) as local:
            assert remote.backend_name == "triton" and remote.spec == local.spec
            for name in ("h264.mp4", "vp9_odd.webm"):
                got, want = remote.probabilities(clip_dir / name), local.probabilities(clip_dir / name)
                np.testing.assert_allclose(got, want, atol=1e-6)
        assert servicer.batch_sizes == [2, 1, 2, 1]  # 3 clips per video, split at the config's max_batch_size 2
    finally:
        server.stop(None)
