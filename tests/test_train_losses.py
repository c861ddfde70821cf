"""The ResKD objective against values worked out by hand, gradient flow, and alignment for every zoo pair."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from reskd_infer import ModelSpec, build_model, list_archs
from reskd_infer.train.losses import (
    ResKDLoss,
    align_features,
    dense_logit_kd_loss,
    feature_mse_loss,
    resolve_kd_mode,
    task_loss,
)


def test_feature_mse_upsamples_bilinearly_in_space_and_time_by_hand():
    # Student map: 1 channel, 1 frame, 1x2 pixels [0, 2]. Bilinear (align_corners=False) to width 4
    # samples source x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped 0, 0.25, 0.75, 1
    # -> values 0, 0.5, 1.5, 2; in time the single frame is repeated for the teacher's 2 frames.
    student = torch.tensor([0.0, 2.0]).reshape(1, 1, 1, 1, 2)
    teacher = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]).reshape(1, 1, 2, 1, 4)
    up = align_features(student, (2, 1, 4))
    assert torch.allclose(up, torch.tensor([0.0, 0.5, 1.5, 2.0]).expand(2, 4).reshape(1, 1, 2, 1, 4))
    # frame 1: ((0-1)^2 + (0.5-1)^2 + (1.5-1)^2 + (2-1)^2) / 4 = 0.625
    # frame 2: (0 + 0.25 + 2.25 + 4) / 4 = 1.625 -> mean 1.125
    loss = feature_mse_loss(student, teacher)
    assert loss.item() == pytest.approx(1.125, abs=1e-6)


def test_total_loss_is_ce_plus_weighted_feature_mse():
    student = torch.tensor([0.0, 2.0]).reshape(1, 1, 1, 1, 2)
    teacher = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]).reshape(1, 1, 2, 1, 4)
    logits = torch.tensor([[2.0, 0.0]])
    target = torch.tensor([1])
    ce = -math.log(1 / (1 + math.e**2))  # -log softmax([2, 0])[1]
    total, parts = ResKDLoss(kd_weight=100.0, mode="feature")(logits, target, student, teacher)
    assert parts["task"] == pytest.approx(ce, rel=1e-6)
    assert parts["kd"] == pytest.approx(1.125, rel=1e-6)
    assert total.item() == pytest.approx(ce + 100 * 1.125, rel=1e-6)


def _linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def test_logit_map_kl_with_temperature_2_by_hand():
    # Widths differ (student 1 channel, teacher 2). One position each.
    # student logits = [2, 0] -> /T = [1, 0]; teacher logits = [0, 2] -> /T = [0, 1].
    # p_t = [1, e] / (1 + e), p_s = [e, 1] / (1 + e): log(p_t/p_s) = [-1, +1]
    # KL(p_t || p_s) = (-1 + e) / (1 + e); times T^2 = 4.
    student = torch.full((1, 1, 1, 1, 1), 2.0)
    teacher = torch.tensor([0.0, 2.0]).reshape(1, 2, 1, 1, 1)
    s_fc = _linear([[1.0], [0.0]], [0.0, 0.0])
    t_fc = _linear([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    kl = dense_logit_kd_loss(student, teacher, s_fc, t_fc, temperature=2.0)
    assert kl.item() == pytest.approx(4 * (math.e - 1) / (math.e + 1), rel=1e-6)


def test_logit_map_kl_averages_over_positions_after_upsampling():
    # Student 1 position upsampled to the teacher's 2; teacher positions agree with the student at one
    # and are the hand example above at the other: mean of 0 and 4 (e - 1) / (e + 1).
    student = torch.full((1, 1, 1, 1, 1), 2.0)
    teacher = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).T.reshape(1, 2, 1, 1, 2)
    s_fc = _linear([[1.0], [0.0]], [0.0, 0.0])
    t_fc = _linear([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    kl = dense_logit_kd_loss(student, teacher, s_fc, t_fc, temperature=2.0)
    assert kl.item() == pytest.approx(0.5 * 4 * (math.e - 1) / (math.e + 1), rel=1e-6)


def test_bce_for_multi_label():
    logits = torch.tensor([[0.0, 2.0]])
    target = torch.tensor([[1.0, 0.0]])
    expected = (math.log(2) + math.log(1 + math.e**2)) / 2  # -log sigmoid(0), -log(1 - sigmoid(2))
    assert task_loss(logits, target, multi_label=True).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode", ["feature", "logit"])
def test_gradients_reach_the_student_never_the_teacher(mode):
    torch.manual_seed(0)
    spec_s = ModelSpec(arch="tsn_r18", class_names=("a", "b", "c"), input_size=32, num_frames=2)
    spec_t = ModelSpec(arch="tsn_r18", class_names=("a", "b", "c"), input_size=64, num_frames=2)
    student, teacher = build_model(spec_s), build_model(spec_t)
    teacher.eval()
    clip = torch.randn(2, 3, 2, 64, 64)
    # The teacher deliberately keeps requires_grad=True: the loss itself must not let gradient through.
    t_feat = teacher.forward_features(clip)
    s_feat = student.forward_features(torch.nn.functional.interpolate(clip.flatten(1, 2), size=32).reshape(2, 3, 2, 32, 32))
    logits = student.forward_head(s_feat)
    loss, parts = ResKDLoss(kd_weight=100.0, mode=mode)(logits, torch.tensor([0, 2]), s_feat, t_feat,
                                                         student.classifier(), teacher.classifier())
    assert parts["kd"] > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    student_grads = [p.grad for p in student.trunk.parameters()]
    assert all(g is not None for g in student_grads)
    assert sum(float(g.abs().sum()) for g in student_grads) > 0


def test_feature_mode_refuses_unequal_widths():
    assert resolve_kd_mode("auto", 512, 2048) == "logit"
    assert resolve_kd_mode("auto", 512, 512) == "feature"
    with pytest.raises(ValueError, match="equal widths"):
        resolve_kd_mode("feature", 512, 2048)
    with pytest.raises(ValueError, match="equal batch and width"):
        feature_mse_loss(torch.zeros(1, 4, 1, 2, 2), torch.zeros(1, 8, 1, 4, 4))


def _feature_shape(arch: str, size: int, frames: int = 4) -> tuple[tuple[int, ...], int]:
    spec = ModelSpec(arch=arch, class_names=("a", "b", "c"), input_size=size, num_frames=frames)
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = build_model(spec)
        out = model.forward_features(torch.empty(2, 3, frames, size, size))
    return tuple(out.shape), model.feature_dim


@pytest.fixture(scope="module")
def feature_shapes():
    return {(arch, size): _feature_shape(arch, size) for arch in list_archs() for size in (32, 64)}


def test_alignment_for_every_zoo_pair_teacher_at_twice_the_resolution(feature_shapes):
    archs = list_archs()
    assert len(archs) >= 8
    checked = 0
    for t_arch, s_arch in itertools.product(archs, archs):
        t_shape, t_width = feature_shapes[(t_arch, 64)]
        s_shape, s_width = feature_shapes[(s_arch, 32)]
        mode = resolve_kd_mode("auto", s_width, t_width)
        s_feat = torch.randn(s_shape, requires_grad=True)
        t_feat = torch.randn(t_shape)
        assert align_features(s_feat, t_shape[2:]).shape == (2, s_width, *t_shape[2:])
        s_fc, t_fc = nn.Linear(s_width, 3), nn.Linear(t_width, 3)
        loss, parts = ResKDLoss(mode=mode)(torch.randn(2, 3), torch.tensor([0, 1]), s_feat, t_feat, s_fc, t_fc)
        loss.backward()
        assert math.isfinite(parts["kd"]) and parts["kd"] > 0, (t_arch, s_arch)
        assert s_feat.grad is not None and s_feat.grad.shape == s_shape
        if mode == "logit":
            assert t_fc.weight.grad is None and s_fc.weight.grad is not None
        checked += 1
    assert checked == len(archs) ** 2
