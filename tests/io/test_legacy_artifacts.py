"""Artifacts written before the redesign (main 95829fc, tests/fixtures/legacy_0_1/make_fixture.py) still load
and predict the same: a checkpoint, an export folder and its ONNX files, and every zoo architecture's
state-dict layout (names, shapes, dtypes), so any checkpoint of a zoo arch written then loads now."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from torch import nn

from reskd_infer import ModelSpec, Recognizer, build_model
from reskd_infer.models import list_archs, register_arch, registry
from reskd_infer.models.tsn import FrameModel

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_0_1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def _legacy_tiny(num_classes: int, num_frames: int = 2) -> FrameModel:
    """A two-layer frame model: small enough to keep as a test fixture (the same as the fixture's)."""
    trunk = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    return FrameModel(trunk, 8, num_classes, num_frames, dropout=0.0)


@pytest.fixture
def legacy_arch(monkeypatch):
    """The fixture's architecture, registered for one test only: a copy of the registry is patched in, so
    tests that iterate over the zoo never see it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_arch("legacy_tiny", family="2d", default_num_frames=2, default_input_size=32)(_legacy_tiny)

ARTIFACTS = {"checkpoint": "tiny.safetensors", "folder": "tiny_export", "onnx": "tiny_export/model.onnx",
             "onnx_fp16": "tiny_export/model.fp16.onnx"}


@pytest.mark.parametrize("name", sorted(ARTIFACTS))
def test_artifacts_written_before_the_redesign_predict_the_same(name, tmp_path, legacy_arch):
    folder = tmp_path / "legacy"
    shutil.copytree(FIXTURE, folder)
    expected = EXPECTED["predictions"][name]
    with Recognizer(str(folder / ARTIFACTS[name]),
                    backend="onnxruntime" if name.startswith("onnx") else "auto") as rec:
        assert rec.backend_name == expected["backend"]
        got = [[p.label, p.score] for p in rec.predict(str(folder / "clip.mp4"), topk=3)]
    assert [label for label, _ in got] == [label for label, _ in expected["top"]]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected["top"]], abs=2e-6)


@pytest.mark.parametrize("arch", sorted(EXPECTED["state_dict_layouts"]))
def test_zoo_state_dict_layouts_are_unchanged(arch):
    assert "legacy_tiny" not in list_archs()
    sd = build_model(ModelSpec(arch=arch, class_names=["x", "y"])).state_dict()
    text = "\n".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in sd.items())
    layout = EXPECTED["state_dict_layouts"][arch]
    assert (len(sd), hashlib.sha256(text.encode()).hexdigest()) == (layout["keys"], layout["sha256"])
