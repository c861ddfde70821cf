import json

import pytest

from reskd_infer import ModelSpec, list_archs
from reskd_infer.errors import ReskdError, SpecError


def test_defaults_follow_the_architecture():
    spec = ModelSpec(arch="r2plus1d_18", class_names=["a", "b", "c"], input_size=112, num_frames=8)
    assert spec.sampling == "dense" and spec.frame_interval == 4
    assert spec.crop_size == 112 and spec.resize_short == 128
    assert spec.num_classes == 3 and spec.input_shape == (3, 8, 112, 112)
    assert spec.mean == (123.675, 116.28, 103.53)
    tsn = ModelSpec(arch="tsn_r50", class_names=["x"])
    assert (tsn.sampling, tsn.frame_interval, tsn.input_size, tsn.num_frames) == ("segments", 1, 224, 8)
    assert tsn.resize_short == 256 and tsn.crop_size == 224


def test_student_sees_the_teachers_crop():
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], input_size=112, crop_size=224)
    assert spec.resize_short == 256 and spec.crop_size == 224 and spec.input_size == 112


@pytest.mark.parametrize("arch", list_archs())
def test_json_round_trip(arch):
    spec = ModelSpec(arch=arch, class_names=["walk", "run"], input_size=64, num_frames=4,
                     provenance={"teacher": {"arch": arch, "input_size": 128}, "kd_weight": 100.0})
    text = spec.to_json()
    data = json.loads(text)
    assert data["schema"] == "reskd-infer/model-spec" and data["version"] == 1
    again = ModelSpec.from_json(text)
    assert again == spec and again.provenance == spec.provenance


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(arch="resnet9000", class_names=["a"]), "unknown architecture"),
        (dict(arch="r3d_18", class_names=[]), "empty"),
        (dict(arch="r3d_18", class_names="abc"), "list of strings"),
        (dict(arch="r3d_18", class_names=["a", "a"]), "duplicates"),
        (dict(arch="r3d_18", class_names=["a"], input_size=8), "input_size"),
        (dict(arch="r3d_18", class_names=["a"], num_frames=-1), "num_frames"),
        (dict(arch="r3d_18", class_names=["a"], sampling="random"), "sampling"),
        (dict(arch="r3d_18", class_names=["a"], std=(1.0, 0.0, 1.0)), "std"),
        (dict(arch="r3d_18", class_names=["a"], mean=(1.0, 2.0)), "mean"),
        (dict(arch="r3d_18", class_names=["a"], crop_size=224, resize_short=200), "resize_short"),
        (dict(arch="swin3d_t", class_names=["a"], num_frames=1), "at least 2 frames"),
        (dict(arch="r3d_18", class_names=["a"], provenance={"x": object()}), "JSON"),
    ],
)
def test_invalid_specs_raise_spec_error(kwargs, message):
    with pytest.raises(SpecError, match=message) as info:
        ModelSpec(**kwargs)
    assert isinstance(info.value, ReskdError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"schema": "other", "arch": "r3d_18", "class_names": ["a"]}', "not a reskd-infer"),
        ('{"version": 99, "arch": "r3d_18", "class_names": ["a"]}', "newer"),
        ('{"arch": "r3d_18", "class_names": ["a"], "colour": 1}', "unknown fields"),
        ('{"class_names": ["a"]}', "arch"),
    ],
)
def test_invalid_json_raises_spec_error(text, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec.from_json(text)


def test_spec_is_frozen_and_replace_keeps_validation():
    spec = ModelSpec(arch="r3d_18", class_names=["a"])
    with pytest.raises(AttributeError):
        spec.arch = "mc3_18"  # type: ignore[misc]
    assert spec.replace(num_clips=3).num_clips == 3
    with pytest.raises(SpecError):
        spec.replace(num_clips=0)
