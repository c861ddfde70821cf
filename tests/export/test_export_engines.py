"""TensorRT plans and their fallbacks, ONNX Runtime providers, reskd-export, Triton repositories.

No GPU exists where these tests were written: TensorRT building and inference are
covered by the ``gpu`` tests, which skip here. The compatibility check reads only the
sidecar, so it is tested directly, and through the Recognizer with the TensorRT
backend's runtime probe answering as a machine with TensorRT would.
"""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.backends import base as backend_base
from reskd_infer.backends.onnxruntime_ import (
    CPU_EP,
    CUDA_EP,
    TRT_EP,
    check_gpu_session,
    choose_providers,
    tensorrt_ep_options,
)
from reskd_infer.backends.openvino_ import openvino_missing
from reskd_infer.backends.tensorrt_ import TensorRTBackend
from reskd_infer.cli.export import EXIT_TRT_MISSING
from reskd_infer.errors import BackendUnavailableError, EngineIncompatibleError
from reskd_infer.export import export_model
from reskd_infer.export.tensorrt import (
    TRT_API_NAMES,
    check_engine_compatibility,
    missing_trt_names,
    parse_batch,
    tensorrt_missing,
    write_sidecar,
)
from reskd_infer.export.triton import config_pbtxt, write_triton_repository
from reskd_infer.export.verify import FP16_TOLERANCE, FP32_TOLERANCE, compare, format_table
from reskd_infer.io.artifacts import candidate_artifacts, read_sidecar

NO_TRT = tensorrt_missing()
ONNX_CPU = "onnxruntime" if openvino_missing() else "openvino"  # the CPU engine preferred for .onnx here
BUILT = {"version": "10.13.3.9", "gpu_name": "NVIDIA L4", "compute_capability": "8.9", "precision": "fp16"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, clip_dir):
    torch.manual_seed(0)
    spec = ModelSpec(arch="r3d_18", class_names=["walk", "run", "jump"], input_size=32, crop_size=64, num_frames=4,
                     frame_interval=2)
    root = tmp_path_factory.mktemp("engines")
    ckpt = save_checkpoint(build_model(spec), spec, root / "student.ckpt")
    result = export_model(ckpt, root / "out", fp16=False, batch=(1, 2, 4), verify_clips=[clip_dir / "h264.mp4"],
                          triton_dir=root / "triton")
    return spec, ckpt, result


def foreign_plan(folder: Path, spec: ModelSpec, **built) -> Path:
    """A plan file with a sidecar saying another machine built it (the bytes are never deserialized here)."""
    plan = folder / "model.plan"
    plan.write_bytes(b"serialized engine from another machine")
    write_sidecar(plan, {"spec": spec.to_dict(), "tensorrt": {**BUILT, **built},
                         "fallback": ["model.onnx", "model.ckpt"]})
    return plan


# ---- the compatibility check ---------------------------------------------------------------------
def test_compatible_engine_passes():
    check_engine_compatibility({"tensorrt": BUILT}, "10.13.3.9", {"name": "NVIDIA L4", "compute_capability": "8.9"})
    check_engine_compatibility({"tensorrt": BUILT}, "10.13.3", {"name": "NVIDIA L40S", "compute_capability": "8.9"})
    check_engine_compatibility({"tensorrt": BUILT}, None, None)  # nothing known: nothing judged


def test_other_tensorrt_version_is_named():
    with pytest.raises(EngineIncompatibleError) as info:
        check_engine_compatibility({"tensorrt": BUILT}, "11.4.0", None, plan="runs/model.plan")
    message = str(info.value)
    assert "runs/model.plan" in message and "10.13.3.9" in message and "11.4.0" in message


def test_other_gpu_architecture_is_named():
    with pytest.raises(EngineIncompatibleError) as info:
        check_engine_compatibility({"tensorrt": BUILT}, "10.13.3.9",
                                   {"name": "NVIDIA H100", "compute_capability": "9.0"}, plan="m.plan")
    message = str(info.value)
    assert "NVIDIA L4" in message and "8.9" in message and "NVIDIA H100" in message and "9.0" in message


def test_sidecar_without_tensorrt_section_is_refused():
    with pytest.raises(EngineIncompatibleError, match="no TensorRT version"):
        check_engine_compatibility({"spec": {}}, "10.13.3", None, plan="m.plan")


def test_batch_profile_parsing():
    assert parse_batch("1,8,32") == (1, 8, 32) and parse_batch("4") == (4, 4, 4) and parse_batch([2, 2, 8]) == (2, 2, 8)
    for bad in ("8,4,2", "0,1,2", "1,2"):
        with pytest.raises(Exception, match="MIN,OPT,MAX"):
            parse_batch(bad)


# ---- the Recognizer's fallback -------------------------------------------------------------------
class ForeignRuntimeTensorRT(TensorRTBackend):
    """The real TensorRT backend, whose environment probe answers as a machine with TensorRT 11.4 on an H100."""

    @classmethod
    def available(cls, device="auto"):
        return None

    @classmethod
    def runtime_environment(cls, device="auto"):
        return "11.4.0", {"name": "NVIDIA H100", "compute_capability": "9.0"}


def test_incompatible_plan_falls_back_to_what_the_sidecar_names(exported, tmp_path, monkeypatch, clip_dir):
    spec, _, result = exported
    folder = tmp_path / "copy"
    shutil.copytree(result.folder, folder)
    plan = foreign_plan(folder, spec)
    assert [p.name for p, _ in candidate_artifacts(plan)] == ["model.plan", "model.onnx", "model.ckpt"]
    monkeypatch.setitem(backend_base._BACKENDS, "tensorrt", ForeignRuntimeTensorRT)

    with pytest.warns(RuntimeWarning, match=r"10\.13\.3\.9.*11\.4\.0"):
        rec = Recognizer(plan)
    assert rec.backend_name == ONNX_CPU and rec.backend.path.name == "model.onnx"
    with Recognizer(result.onnx_path) as direct:
        assert rec.predict(clip_dir / "h264.mp4") == direct.predict(clip_dir / "h264.mp4")
    rec.close()

    with pytest.raises(EngineIncompatibleError, match=r"TensorRT 10\.13\.3\.9.*TensorRT 11\.4\.0"):
        Recognizer(plan, fallback=False)

    # the GPU named in the sidecar differs but the version matches
    foreign_plan(folder, spec, version="11.4.0")
    with pytest.raises(EngineIncompatibleError, match=r"NVIDIA L4 \(compute capability 8\.9\).*NVIDIA H100"):
        Recognizer(plan, fallback=False)

    # an export folder listing the plan falls back the same way
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts"]["tensorrt"] = "model.plan"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match="compute capability"):
        with Recognizer(folder) as rec:
            assert rec.backend_name == ONNX_CPU


@pytest.mark.skipif(NO_TRT is None, reason="TensorRT and a GPU are present: the unavailable path is not reachable")
def test_plan_without_tensorrt_falls_back_or_raises(exported, tmp_path):
    spec, _, result = exported
    folder = tmp_path / "copy"
    shutil.copytree(result.folder, folder)
    plan = foreign_plan(folder, spec)
    with pytest.warns(RuntimeWarning, match="tensorrt"):
        with Recognizer(plan) as rec:
            assert rec.backend_name == ONNX_CPU
    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        Recognizer(plan, fallback=False)
    (folder / "model.onnx").unlink()  # the sidecar's next fallback: the checkpoint
    with pytest.warns(RuntimeWarning):
        with Recognizer(plan) as rec:
            assert rec.backend_name == "torch"
    assert read_sidecar(plan)["fallback"] == ["model.onnx", "model.ckpt"]


# ---- ONNX Runtime providers ------------------------------------------------------------------------
def test_provider_preference():
    assert choose_providers([CPU_EP], "auto") == [CPU_EP]
    assert choose_providers([TRT_EP, CUDA_EP, CPU_EP], "auto") == [TRT_EP, CUDA_EP, CPU_EP]
    assert choose_providers([CPU_EP, CUDA_EP], "cuda:0") == [CUDA_EP, CPU_EP]
    assert choose_providers([TRT_EP, CUDA_EP, CPU_EP], "cpu") == [CPU_EP]
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        choose_providers([CPU_EP], "cuda")


def test_onnxruntime_session_is_configured(exported):
    from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend

    _, _, result = exported
    backend = OnnxRuntimeBackend(result.onnx_path, device="cpu", threads=1)
    assert backend.providers == [CPU_EP] and backend.input_device == torch.device("cpu")
    assert backend.input_name == "video" and backend.output_name == "logits"
    x = np.random.default_rng(0).standard_normal((5, *backend.spec.input_shape)).astype(np.float32)
    assert backend.infer(x).shape == (5, 3)  # dynamic batch
    assert np.allclose(backend.infer(torch.from_numpy(x)), backend.infer(x))


def test_a_gpu_provider_that_did_not_start_is_reported():
    check_gpu_session("m.onnx", "auto", [CUDA_EP, CPU_EP], [CUDA_EP, CPU_EP])  # nothing lost: silent
    with pytest.raises(BackendUnavailableError, match=r"m\.onnx: requested .*CUDAExecutionProvider.*libcudnn"):
        check_gpu_session("m.onnx", "cuda:0", [TRT_EP, CUDA_EP, CPU_EP], [CPU_EP], "libcudnn.so.9 not found")
    with pytest.warns(RuntimeWarning, match="runs on \\['CPUExecutionProvider'\\]"):
        check_gpu_session("m.onnx", "auto", [TRT_EP, CUDA_EP, CPU_EP], [CPU_EP])
    with pytest.warns(RuntimeWarning, match="TensorrtExecutionProvider"):  # CUDA still runs: a warning only
        check_gpu_session("m.onnx", "cuda", [TRT_EP, CUDA_EP, CPU_EP], [CUDA_EP, CPU_EP])


def test_tensorrt_provider_gets_the_export_profile_and_cache_folders(exported, tmp_path, monkeypatch):
    spec, _, result = exported
    options = tensorrt_ep_options(result.onnx_path, spec, 1)
    shape = "x".join(map(str, spec.input_shape))
    assert options["device_id"] == "1"
    assert [options[f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")] == \
        [f"video:{b}x{shape}" for b in (1, 2, 4)]  # the manifest's batch profile
    cache = Path(options["trt_engine_cache_path"])
    assert cache.parent == result.folder and cache.is_dir() and options["trt_timing_cache_path"] == str(cache)
    # a model whose folder cannot hold a cache: the user cache directory, never the working directory
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    options = tensorrt_ep_options(blocker / "model.onnx", spec, 0, profile=(1, 8, 32))
    assert Path(options["trt_engine_cache_path"]).is_relative_to(tmp_path / "xdg" / "reskd-infer")
    assert options["trt_profile_max_shapes"] == f"video:32x{shape}"


# ---- the command -----------------------------------------------------------------------------------
def test_export_help_explains_every_flag():
    exe = f"{sys.prefix}/bin/reskd-export"
    text = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120).stdout
    for flag in ("--student", "--onnx", "--trt", "--fp16", "--fp32", "--batch", "--opset", "--workspace-gb",
                 "--timing-cache", "--triton", "--verify-clip", "--json", "-o"):
        assert flag in text, flag


@pytest.mark.skipif(NO_TRT is None, reason="TensorRT and a GPU are present here")
def test_trt_without_gpu_writes_onnx_then_fails_clearly(exported, tmp_path, clip_dir):
    _, ckpt, _ = exported
    out = tmp_path / "out"
    exe = f"{sys.prefix}/bin/reskd-export"
    proc = subprocess.run([exe, "--student", str(ckpt), "--trt", "--batch", "1,2,4", "--verify-clip",
                           str(clip_dir / "mjpeg.avi"), "--quiet", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_TRT_MISSING, proc.stderr
    assert "TensorRT engine not built" in proc.stderr and "pip install" in proc.stderr
    assert "tensorrt" in proc.stderr and "GPU" in proc.stderr
    assert "onnx fp32 vs pytorch" in proc.stdout and "onnx fp16 vs onnx fp32" in proc.stdout  # the table
    assert "PASSED" in proc.stdout
    assert (out / "model.onnx").is_file() and (out / "model.fp16.onnx").is_file()
    assert not (out / "model.plan").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert "tensorrt" not in manifest["artifacts"] and "not installed" in manifest["tensorrt_problem"]
    with Recognizer(out) as rec:  # the folder still serves
        assert rec.backend_name == ONNX_CPU


def test_export_cli_json_and_failure(exported, tmp_path, capsys):
    from reskd_infer.cli.export import main

    _, ckpt, _ = exported
    assert main(["--student", str(ckpt), "--fp32", "--batch", "1,2,4", "--no-real-clips", "--json",
                 "-o", str(tmp_path / "out")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["onnx"].endswith("model.onnx") and doc["onnx_fp16"] is None
    assert main(["--student", str(tmp_path / "nope.ckpt"), "-o", str(tmp_path / "x")]) == 2  # a missing input is a bad argument
    assert "nope.ckpt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--student", str(ckpt), "--batch", "8,1", "-o", str(tmp_path / "y")])


# ---- Triton ------------------------------------------------------------------------------------------
def parse_triton_config(text: str):
    model_config_pb2 = pytest.importorskip(
        "tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] (the [dev] extra) ships Triton's schema")
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2.ModelConfig())  # raises on any unknown field or bad value


def test_triton_repository_parses_against_tritons_schema(exported):
    spec, _, result = exported
    folder = result.triton_path
    assert (folder / "1" / "model.onnx").read_bytes() == result.onnx_path.read_bytes()
    assert (folder / "labels.txt").read_text().split() == list(spec.class_names)
    config = parse_triton_config((folder / "config.pbtxt").read_text())
    assert config.name == folder.name == "reskd_r3d_18" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 4
    assert [i.name for i in config.input] == ["video"] and list(config.input[0].dims) == [3, 4, 32, 32]
    assert [o.name for o in config.output] == ["logits"] and list(config.output[0].dims) == [3]
    assert config.output[0].label_filename == "labels.txt"
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert ModelSpec.from_json(config.parameters["reskd_spec"].string_value) == spec


def test_triton_plan_config_records_the_tensorrt_that_built_it(exported, tmp_path):
    spec, _, _ = exported
    config = parse_triton_config(config_pbtxt("student", "tensorrt_plan", spec, 32, (8, 32), engine=BUILT))
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 32
    assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU
    assert config.parameters["tensorrt_version"].string_value == "10.13.3.9"
    assert config.parameters["compute_capability"].string_value == "8.9"
    with pytest.raises(Exception, match="platform"):
        config_pbtxt("student", "pytorch_libtorch", spec, 32)
    with pytest.raises(Exception, match="TensorRT version"):
        config_pbtxt("student", "tensorrt_plan", spec, 32)
    plan = foreign_plan(tmp_path, spec)  # the repository reads the version from the plan's sidecar
    folder = write_triton_repository(tmp_path / "repo", plan, spec, max_batch_size=4, preferred_batch_sizes=(2, 4))
    config = parse_triton_config((folder / "config.pbtxt").read_text())
    assert config.parameters["tensorrt_version"].string_value == "10.13.3.9"
    assert config.parameters["gpu_name"].string_value == "NVIDIA L4"
    assert (folder / "1" / "model.plan").read_bytes() == plan.read_bytes()


# ---- TensorRT itself ---------------------------------------------------------------------------------
def test_every_tensorrt_name_used_exists():
    trt = pytest.importorskip("tensorrt", reason="the tensorrt package is not installed here (no NVIDIA GPU)")
    assert missing_trt_names(trt) == [], f"names missing from TensorRT {trt.__version__}"
    assert len(TRT_API_NAMES) > 30


def ort_cuda_missing() -> str | None:
    import onnxruntime as ort

    if not torch.cuda.is_available():
        return "needs an NVIDIA GPU"
    if CUDA_EP not in ort.get_available_providers():
        return f"this onnxruntime has no CUDA provider ({ort.get_available_providers()}): install reskd-infer[gpu]"
    return None


def assert_agrees_with_cpu_fp32(candidate: Recognizer, reference: Recognizer, videos, tolerance) -> None:
    """The candidate's logits against the CPU FP32 checkpoint on the served tensors, by export/verify.py's rule
    (max abs diff, cosine, no top-1 change beyond a near tie): random 3-class weights make exact top-1 flaky."""
    inputs = [(Path(v).name, reference.preprocess(v).numpy()) for v in videos]
    report = compare(f"{candidate.backend_name} vs cpu fp32", ("torch cpu fp32", reference.backend.infer),
                     (candidate.backend_name, candidate.backend.infer), inputs, tolerance)
    assert report.passed, format_table([report])


@pytest.mark.gpu
@pytest.mark.skipif(NO_TRT is not None, reason=f"needs TensorRT and an NVIDIA GPU: {NO_TRT}")
@pytest.mark.parametrize("fp16", [False, True])
def test_gpu_engine_build_and_inference(exported, tmp_path, clip_dir, fp16):
    _, ckpt, _ = exported
    cache = tmp_path / "timing.cache"
    result = export_model(ckpt, tmp_path / "out", trt=True, fp16=fp16, batch=(2, 4, 4), timing_cache=cache,
                          verify_clips=[clip_dir / "h264.mp4"])
    assert result.plan_path.is_file() and cache.is_file() and result.passed
    sidecar = read_sidecar(result.plan_path)
    assert sidecar["tensorrt"]["precision"] == ("fp16" if fp16 else "fp32") and sidecar["tensorrt"]["tf32"] == fp16
    assert sidecar["tensorrt"]["profile"]["min"][0] == 2 and sidecar["tensorrt"]["profile"]["max"][0] == 4
    assert sidecar["fallback"] == ["model.onnx", "model.ckpt"]
    videos = [clip_dir / name for name in ("h264.mp4", "vp9_odd.webm", "mjpeg.avi")]
    with Recognizer(result.folder) as engine, Recognizer(ckpt, device="cpu") as reference:
        assert engine.backend_name == "tensorrt" and engine.backend.input_device.type == "cuda"
        assert_agrees_with_cpu_fp32(engine, reference, videos, FP16_TOLERANCE if fp16 else FP32_TOLERANCE)
        assert engine.backend.infer(reference.preprocess(videos[0])[:1].numpy()).shape == (1, 3)  # below MIN: padded
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(engine.predict_batch([clip_dir / "h264.mp4"] * 6)) == 6  # above the profile max: split


@pytest.mark.gpu
@pytest.mark.skipif(ort_cuda_missing() is not None, reason=str(ort_cuda_missing()))
def test_gpu_onnxruntime_io_binding(exported, clip_dir):
    _, ckpt, result = exported
    videos = [clip_dir / name for name in ("h264.mp4", "vp9_odd.webm")]
    with Recognizer(result.onnx_path, device="cuda") as rec, Recognizer(ckpt, device="cpu") as reference:
        assert rec.backend.input_device.type == "cuda" and CUDA_EP in rec.backend.providers
        assert_agrees_with_cpu_fp32(rec, reference, videos, FP32_TOLERANCE)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_gpu_preprocessing_matches_cpu(exported, clip_dir):
    _, ckpt, _ = exported
    with Recognizer(ckpt, device="cuda") as gpu, Recognizer(ckpt, device="cpu") as cpu:
        for name in ("h264.mp4", "vp9_odd.webm", "mjpeg.avi"):
            on_gpu = gpu.preprocess(clip_dir / name)
            assert on_gpu.device.type == "cuda"
            torch.testing.assert_close(on_gpu.cpu(), cpu.preprocess(clip_dir / name), atol=1e-3, rtol=1e-4)
