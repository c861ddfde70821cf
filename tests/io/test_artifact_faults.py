"""Damaged artifacts: truncated or corrupted checkpoints, ONNX models and plans, manifests that lie, ONNX
external data outside the model's folder. Each is a clear ReskdError naming the file, never a crash inside
a native library, and --no-fallback holds for export folders."""

import json
import shutil
import warnings

import onnx
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.errors import ArtifactError, BackendUnavailableError, CheckpointError, ReskdError
from reskd_infer.export import export_model
from reskd_infer.io.digests import file_sha256
from videogen import textured_frames

FRAMES = textured_frames(4, 40, 56, seed=5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    spec = ModelSpec(arch="tsn_r18", class_names=["a", "b", "c"], input_size=32, crop_size=48, num_frames=2)
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(spec), spec, root / "m.ckpt")
    export_model(ckpt, root / "exp", verify_clips=(), progress=False)
    return root / "exp"


@pytest.fixture
def copy(folder, tmp_path):
    out = tmp_path / "exp"
    shutil.copytree(folder, out)
    return out


def _edit_manifest(path, edit):
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_manifest_records_every_artifacts_sha256(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["sha256"]) == set(manifest["artifacts"].values())
    assert all(manifest["sha256"][n] == file_sha256(folder / n) for n in manifest["sha256"])


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.5, 0.999])
def test_truncated_checkpoint(folder, tmp_path, fraction):
    data = (folder / "model.ckpt").read_bytes()
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"cut\.ckpt: (empty file|corrupt or truncated|not a checkpoint)"):
        Recognizer(bad)


@pytest.mark.parametrize("where", [-10, -5000, 200])
def test_bit_flipped_checkpoint_is_refused_not_served(folder, tmp_path, where):
    data = bytearray((folder / "model.ckpt").read_bytes())
    data[where] ^= 0x40
    bad = tmp_path / "flip.ckpt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flip\.ckpt: corrupt"):
        Recognizer(bad)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.99])
def test_truncated_onnx(folder, tmp_path, fraction):
    data = (folder / "model.onnx").read_bytes()
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ArtifactError, match=r"cut\.onnx: .*(not a readable ONNX model|cannot load)"):
        Recognizer(bad)


def test_garbage_onnx_and_plan_name_the_file(tmp_path):
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ArtifactError, match=r"noise\.onnx"):
        Recognizer(bad)
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\x00" * 100)
    with pytest.raises(ArtifactError, match=r"model\.plan\.json: TensorRT sidecar .* not found"):
        Recognizer(plan)
    (tmp_path / "model.plan.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"model\.plan\.json: unreadable TensorRT sidecar"):
        Recognizer(plan)


def test_corrupt_onnx_in_a_folder_falls_back_or_fails_with_no_fallback(copy):
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights: only the manifest's digest can tell
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.onnx: corrupt or replaced"):
        Recognizer(copy, fallback=False)
    with pytest.warns(RuntimeWarning, match=r"model\.onnx: corrupt or replaced.*falling back to model\.ckpt"):
        rec = Recognizer(copy)
    assert rec.backend_name == "torch" and rec.predict(FRAMES, topk=1)


def test_corrupt_plan_in_a_folder_is_caught_before_tensorrt(copy):
    (copy / "model.plan").write_bytes(b"\x13" * 64)
    _edit_manifest(copy, lambda m: (m["artifacts"].__setitem__("tensorrt", "model.plan"),
                                    m["sha256"].__setitem__("model.plan", "0" * 64)))
    with pytest.raises(ArtifactError, match=r"model\.plan: corrupt or replaced"):
        Recognizer(copy, fallback=False)
    with pytest.warns(RuntimeWarning, match="falling back to model.onnx"):
        assert Recognizer(copy).backend.path.name == "model.onnx"  # OpenVINO or ONNX Runtime, whichever is preferred


@pytest.mark.parametrize("name", ["../m.ckpt", "/etc/passwd", "sub/../../m.ckpt", "", 7, "..", "sub\\model.ckpt"])
def test_manifest_paths_must_stay_inside_the_folder(copy, name):
    _edit_manifest(copy, lambda m: m["artifacts"].__setitem__("checkpoint", name))
    with pytest.raises(ArtifactError, match=r"manifest\.json: artifact 'checkpoint' is .*expected a file name"):
        Recognizer(copy)


def test_manifest_spec_that_lies_is_refused(copy):
    _edit_manifest(copy, lambda m: m["spec"].__setitem__("class_names", ["x", "y", "z"]))
    with pytest.raises(ArtifactError, match=r"manifest\.json: its model spec disagrees .*class_names"):
        Recognizer(copy, fallback=False)
    with pytest.raises(BackendUnavailableError, match="disagrees"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Recognizer(copy)  # every artifact disagrees with it: nothing is served


@pytest.mark.parametrize("text, problem", [
    ("{", "unreadable export manifest"), ("[]", "must be a JSON object"),
    ('{"spec": {}}', "no 'artifacts' mapping"), ('{"artifacts": {}}', "lists no artifact"),
])
def test_broken_manifests(copy, text, problem):
    (copy / "manifest.json").write_text(text)
    with pytest.raises(ArtifactError, match=rf"manifest\.json: .*{problem}"):
        Recognizer(copy)


def test_manifest_with_an_invalid_spec(copy):
    _edit_manifest(copy, lambda m: m["spec"].__setitem__("input_size", -3))
    with pytest.raises(ReskdError, match=r"manifest\.json: invalid model spec"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Recognizer(copy, fallback=False)


def _with_external_data(folder, tmp_path, location):
    model = onnx.load(str(folder / "model.onnx"))
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.bin",
                    size_threshold=0)
    model = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(tmp_path / "ext.onnx"))
    return tmp_path / "ext.onnx"


def test_onnx_external_data_inside_the_folder_is_served(folder, tmp_path):
    path = _with_external_data(folder, tmp_path, "ext.bin")
    with Recognizer(path) as rec:
        assert rec.backend.path == path and len(rec.predict(FRAMES)) == 3


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../x.bin"])
def test_onnx_external_data_outside_the_folder_is_refused(folder, tmp_path, location):
    (tmp_path / "inner").mkdir()
    path = _with_external_data(folder, tmp_path / "inner", location)
    with pytest.raises(ArtifactError, match=r"ext\.onnx: tensor .* outside the model's folder; refused"):
        Recognizer(path)


def test_onnx_external_data_missing(folder, tmp_path):
    path = _with_external_data(folder, tmp_path, "gone.bin")
    with pytest.raises(ArtifactError, match=r"ext\.onnx: tensor .*'gone\.bin', which is missing"):
        Recognizer(path)
