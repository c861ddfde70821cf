"""Hinton's logit KD against a hand computation (issue 26): the total-equals-its-parts checks elsewhere
pass even without the T^2 factor."""

from __future__ import annotations

import math

import pytest
import torch

from reskd_infer.train.losses import logit_kd_loss


def test_logit_kd_matches_a_hand_computation_with_its_t_squared_factor():
    # Student [0, 0] against teacher [2, 0] at T = 2: T^2 KL(softmax([1, 0]) || softmax([0, 0])).
    p = [math.e / (math.e + 1), 1 / (math.e + 1)]
    expected = 4 * sum(pi * math.log(pi / 0.5) for pi in p)
    assert expected == pytest.approx(0.44378, abs=1e-5)
    got = logit_kd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), temperature=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_logit_kd_is_a_mean_over_clips_and_zero_when_they_agree():
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    teacher = torch.tensor([[2.0, 0.0], [1.0, -1.0]])
    pair = logit_kd_loss(student, teacher, temperature=2.0).item()
    assert pair == pytest.approx(logit_kd_loss(student[:1], teacher[:1], temperature=2.0).item() / 2, rel=1e-6)
    assert logit_kd_loss(teacher, teacher, temperature=3.0).item() == pytest.approx(0.0, abs=1e-7)
