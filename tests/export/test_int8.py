"""INT8 export (issue 27): NNCF/OpenVINO and ONNX Runtime QDQ artifacts, the agreement gate, serving and refusals.

Real encoded clips (PyAV), a real small model (tsn_r18 at 32 px, its classifier scaled so clips get distinct
answers), real NNCF, ONNX Runtime and OpenVINO sessions.
"""

import json
import shutil
import warnings

import numpy as np
import onnx
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.backends.openvino_ import openvino_missing
from reskd_infer.cli.export import main as export_main
from reskd_infer.errors import EXIT_REFUSED, EXIT_USAGE, ArtifactError, BackendUnavailableError, ExportError
from reskd_infer.export import export_model
from reskd_infer.export.calibration import clips_digest, draw_clip_sets
from reskd_infer.io.artifacts import artifact_precision, read_manifest, read_spec
from reskd_infer.io.digests import file_sha256

pytest.importorskip("nncf")
pytestmark = pytest.mark.skipif(bool(openvino_missing()), reason="OpenVINO is not installed")

SPEC = ModelSpec(arch="tsn_r18", class_names=["a", "b", "c", "d", "e"], input_size=32, num_frames=4)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """12 tinted textured clips (three looks) and 4 blank ones, with calibration and verification lists."""
    from trainkit import class_frames
    from videogen import write_video

    root = tmp_path_factory.mktemp("int8clips")
    for i in range(12):
        write_video(root / f"x{i}.mp4", class_frames(i % 3, 6, 48, seed=i))
    for i in range(4):
        write_video(root / f"blank{i}.mp4", np.full((6, 48, 64, 3), 128, np.uint8))
    (root / "calib.txt").write_text("".join(f"x{i}.mp4\n" for i in range(6)))
    (root / "verify.txt").write_text("".join(f"x{i}.mp4\n" for i in range(6, 12)))
    (root / "blank.txt").write_text("".join(f"blank{i}.mp4\n" for i in range(4)))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(SPEC)
    model.head.fc.weight.data *= 20  # decisive answers: random weights alone give near ties
    return save_checkpoint(model, SPEC, tmp_path_factory.mktemp("int8ckpt") / "r18.ckpt")


@pytest.fixture(scope="module")
def exported(checkpoint, clips, tmp_path_factory):
    """One INT8 export shared by the serving tests (the gate lowered: random weights leave near ties)."""
    folder = tmp_path_factory.mktemp("int8export") / "out"
    result = export_model(checkpoint, folder, fp16=False, verify_clips=(), int8=True, calib=clips / "calib.txt",
                          int8_verify=clips / "verify.txt", int8_min_agreement=0.5)
    return folder, result


def test_int8_artifacts_load_and_predict_through_recognizer_on_both_cpu_backends(exported, clips):
    folder, result = exported
    assert result.openvino_int8_path == folder / "openvino" / "model.int8.xml"
    assert result.onnx_int8_path == folder / "model.int8.onnx"
    with Recognizer(folder, device="cpu") as auto:  # exported with --int8: the folder serves INT8, no flag again
        assert auto.backend_name == "openvino" and auto.backend.precision == "int8"
        assert auto.backend.path == result.openvino_int8_path
        auto_top = auto.predict(clips / "x7.mp4", topk=1)[0]
    with Recognizer(folder, backend="onnxruntime", device="cpu") as ort:
        assert ort.backend.path == result.onnx_int8_path and ort.backend.precision == "int8"
        ort_top = ort.predict(clips / "x7.mp4", topk=1)[0]
    with Recognizer(folder, device="cpu", precision="fp32") as fp32:
        assert fp32.backend.path == folder / "model.onnx" and fp32.backend.precision == "fp32"
        fp32_probs = fp32.probabilities(clips / "x7.mp4")
    for top in (auto_top, ort_top):
        assert top.label in SPEC.class_names and 0.0 < top.score <= 1.0
    # The file given directly: its own metadata says INT8; the spec travels with it.
    assert artifact_precision(result.onnx_int8_path) == "int8" and artifact_precision(folder / "model.onnx") == "fp32"
    assert read_spec(result.openvino_int8_path) == SPEC and read_spec(result.onnx_int8_path) == SPEC
    with Recognizer(result.openvino_int8_path, device="cpu") as direct:
        probs = direct.probabilities(clips / "x7.mp4")
    assert probs.shape == fp32_probs.shape and np.isclose(probs.sum(), 1.0, atol=1e-4)
    with pytest.raises(BackendUnavailableError, match="not an INT8"):
        Recognizer(folder / "model.onnx", precision="int8")


def test_manifest_records_digests_clip_lists_versions_and_settings(exported, clips):
    folder, result = exported
    manifest = read_manifest(folder)
    assert manifest["artifacts"]["onnx_int8"] == "model.int8.onnx"
    assert manifest["artifacts"]["openvino_int8"] == "openvino/model.int8.xml"
    for name in ("model.int8.onnx", "openvino/model.int8.xml", "openvino/model.int8.bin"):
        assert manifest["sha256"][name] == file_sha256(folder / name)
    record = manifest["int8"]
    sets = draw_clip_sets(clips / "calib.txt", verify_list=clips / "verify.txt")
    assert record["clips"]["calibration"]["sha256"] == clips_digest(sets.calibration)
    assert record["clips"]["verification"]["sha256"] == clips_digest(sets.verification)
    assert record["clips"]["calibration"]["clips"] == 6 and record["clips"]["disjoint"] is True
    assert record["versions"]["nncf"] and record["versions"]["onnxruntime"] and record["versions"]["openvino"]
    ort, ov = record["engines"]["onnxruntime"], record["engines"]["openvino"]
    assert ort["attempts"][-1]["settings"]["per_channel"] is True and ort["attempts"][-1]["settings"]["format"] == "QDQ"
    assert ov["attempts"][-1]["settings"]["api"].startswith("nncf.quantize")
    for engine in (ort, ov):
        assert engine["used"] == engine["attempts"][-1]["mode"] and engine["agreement"] >= 0.5
        assert engine["verification_clips"] == 6 and engine["speedup_vs_fp32_batch1"] > 0
    assert json.loads(json.dumps(result.to_dict()))["int8"]["engines"].keys() == {"openvino", "onnxruntime"}


def test_calibration_never_sees_a_verification_clip(clips, tmp_path):
    # The calibration list also names two verification clips: they are held out of calibration.
    (tmp_path / "calib.txt").write_text("".join(f"{clips}/x{i}.mp4\n" for i in range(12)))
    (tmp_path / "verify.txt").write_text(f"{clips}/x3.mp4\n{clips}/x9.mp4\n")
    sets = draw_clip_sets(tmp_path / "calib.txt", count=128, verify_list=tmp_path / "verify.txt")
    assert {p.name for p in sets.verification} == {"x3.mp4", "x9.mp4"}
    assert {p.name for p in sets.calibration} == {f"x{i}.mp4" for i in range(12)} - {"x3.mp4", "x9.mp4"}
    # Without a verification list, verification clips are held out of the same list by the seeded draw.
    drawn = draw_clip_sets(tmp_path / "calib.txt", count=8, seed=3)
    assert len(drawn.calibration) == 8 and len(drawn.verification) == 4
    assert not {p.name for p in drawn.calibration} & {p.name for p in drawn.verification}
    assert drawn.calibration == draw_clip_sets(tmp_path / "calib.txt", count=8, seed=3).calibration
    assert drawn.calibration != draw_clip_sets(tmp_path / "calib.txt", count=8, seed=4).calibration
    with pytest.raises(ExportError, match="no verification clip"):
        draw_clip_sets(tmp_path / "calib.txt", count=12)


def test_the_gate_refuses_calibration_on_blank_frames_with_the_figure(checkpoint, clips, tmp_path, capsys):
    out = tmp_path / "out"
    code = export_main(["--student", str(checkpoint), "-o", str(out), "--fp32", "--no-real-clips", "--quiet",
                        "--int8", "--calib", str(clips / "blank.txt"), "--int8-verify", str(clips / "verify.txt"),
                        "--int8-engines", "onnxruntime", "--json"])
    captured = capsys.readouterr()
    err, doc = captured.err, json.loads(captured.out)  # stdout is the JSON alone (the quantizers print elsewhere)
    assert code == EXIT_REFUSED == 3
    assert doc["error"]["type"] == "Int8RefusedError" and doc["onnx_int8"] is None
    assert "INT8 refused" in err and "< 99.0%" in err and "worst clips: x" in err
    assert "default " in err and "keep_ends " in err  # every fallback was tried, each with its figure
    # Nothing INT8 is left or listed; the FP32 artifacts are written, verified and served.
    assert not (out / "model.int8.onnx").exists()
    manifest = read_manifest(out)
    assert set(manifest["artifacts"]) == {"checkpoint", "onnx"}
    assert manifest["int8"]["engines"]["onnxruntime"]["file"] is None
    assert manifest["int8"]["engines"]["onnxruntime"]["agreement"] < 0.99
    with Recognizer(out, device="cpu") as rec:
        assert rec.backend.path == out / "model.onnx"
    with pytest.raises(BackendUnavailableError, match="reskd-export --int8"):
        Recognizer(out, precision="int8")


def test_int8_without_calibration_clips_is_a_usage_error(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--student", str(checkpoint), "-o", str(tmp_path / "out"), "--int8"])
    assert exit_info.value.code == EXIT_USAGE and "--calib" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_damaged_int8_artifact_is_refused_with_the_file_named(exported, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(exported[0], folder)
    weights = folder / "openvino" / "model.int8.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model.int8.bin: corrupt or replaced"):
        Recognizer(folder, fallback=False)
    with warnings.catch_warnings(record=True) as caught:  # with fallback: the next INT8 artifact, said aloud
        warnings.simplefilter("always")
        with Recognizer(folder, device="cpu") as rec:
            assert rec.backend.path == folder / "model.int8.onnx"
    assert any("model.int8.bin" in str(w.message) for w in caught)
    truncated = tmp_path / "model.int8.onnx"
    truncated.write_bytes((folder / "model.int8.onnx").read_bytes()[:300])
    with pytest.raises(ArtifactError, match="model.int8.onnx"):
        Recognizer(truncated)
    xml = folder / "openvino" / "model.int8.xml"
    xml.write_text(xml.read_text()[:200])
    with pytest.raises(ArtifactError, match="model.int8.xml: not a readable OpenVINO IR"):
        Recognizer(xml)


def test_the_qdq_graph_keeps_float_io_and_per_channel_weights(exported):
    proto = onnx.load(str(exported[1].onnx_int8_path))
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    scales = {i.name: i for i in proto.graph.initializer}
    per_channel = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in scales
                   and len(scales[n.input[1]].dims) == 1 and scales[n.input[1]].dims[0] > 1]
    assert per_channel  # weight scales are vectors, one per output channel



def test_reskd_bench_gives_int8_rows_beside_fp32(exported, capsys):
    from reskd_infer.cli.bench import main as bench_main

    folder = exported[0]
    assert bench_main([str(folder), "--backends", "openvino,onnxruntime", "--precision", "fp32,int8",
                       "--rounds", "1", "--warmup", "0", "--json"]) == 0
    cases = json.loads(capsys.readouterr().out)["cases"]
    ran = {(c["backend"], c["precision"], c["artifact"]) for c in cases}
    assert ran == {("openvino", "fp32", str(folder)), ("openvino", "int8", str(folder)),
                   ("onnxruntime", "fp32", str(folder)), ("onnxruntime", "int8", str(folder))}
    assert all(c["engine"]["median_ms"] > 0 for c in cases)
