"""Label-free distillation of the real ImageNet Lite0 (the recipe of benchmarks/reskd_realfootage.py).

The real-footage failure: students distilled with BatchNorm in training mode lowered their training loss
while the network evaluated (eval mode, running statistics) moved *away* from the teacher (mean KL on
held-out footage 17.5 untouched, 23.8 after one epoch). The recipe now freezes BatchNorm at its ImageNet
statistics, so the network trained is the network evaluated: a few steps must bring it closer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import reskd_realfootage as rf  # noqa: E402

from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet  # noqa: E402


def test_frozen_batchnorm_distillation_brings_the_eval_mode_student_closer_to_the_teacher():
    torch.manual_seed(0)
    crops = rf.decode_clip("carphone_pristine.mp4", every=8)  # real frames, uint8 224 crops
    teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
    t_logits, t_maps = rf.run(teacher, crops, rf.TEACHER_SIZE, want_maps=True)
    before = rf.score(rf.run(teacher, crops, 56)[0], t_logits)["mean_kl"]
    args = argparse.Namespace(seed=0, lr=0.001, paper_lr=0.01, batch_size=8, epochs=2)
    student, info = rf.distill(56, crops, t_maps, t_logits, "default", args)
    after = rf.score(rf.run(student, crops, 56)[0], t_logits)["mean_kl"]
    assert not student.training and all(0 < e["clip"] <= 1 for e in info["per_epoch"])
    assert after < 0.8 * before, (before, after)
