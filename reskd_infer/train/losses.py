"""The ResKD objective: task loss on the student's logits plus cross-resolution distillation.

* Same feature width (``"feature"``): ``w_kd * MSE(up(student_map), teacher_map)``, where ``up``
  is trilinear interpolation of the student's (N, C, T', h, w) map to the teacher's (T'', H, W)
  (for 2D models T' is the frame axis, so this is the paper's bilinear upsampling per frame).
* Different widths (``"logit"``): each network's own classifier is applied at every position
  of its map (the student's upsampled first), and
  ``w_kd * T^2 * KL(softmax(teacher / T) || softmax(student / T))`` is averaged over positions.
  The teacher's classifier is used frozen: no gradient ever reaches the teacher.
* Task loss: cross-entropy, or binary cross-entropy with logits for multi-label data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

KD_MODES = ("auto", "feature", "logit")


def align_features(student: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Trilinearly resize a (N, C, T, H, W) map to ``size`` = (T, H, W) (no-op if already there)."""
    if student.dim() != 5:
        raise ValueError(f"feature maps must be (N, C, T, H, W), got {tuple(student.shape)}")
    if tuple(student.shape[2:]) == tuple(size):
        return student
    return F.interpolate(student, size=tuple(size), mode="trilinear", align_corners=False)


def feature_mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between the upsampled student map and the (detached) teacher map, mean over all elements."""
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(f"feature MSE needs equal batch and width, got student {tuple(student.shape)} "
                         f"and teacher {tuple(teacher.shape)}: use the logit-map variant")
    aligned = align_features(student, teacher.shape[2:])
    return F.mse_loss(aligned.float(), teacher.detach().float())


def dense_logits(features: torch.Tensor, classifier: nn.Linear, frozen: bool = False) -> torch.Tensor:
    """Apply ``classifier`` at every position of a (N, C, T, H, W) map: (N, T, H, W, K)."""
    weight, bias = classifier.weight, classifier.bias
    if frozen:
        weight = weight.detach()
        bias = None if bias is None else bias.detach()
    return F.linear(features.permute(0, 2, 3, 4, 1), weight, bias)


def dense_logit_kd_loss(student: torch.Tensor, teacher: torch.Tensor, student_classifier: nn.Linear,
                        teacher_classifier: nn.Linear, temperature: float = 2.0) -> torch.Tensor:
    """``T^2 * KL(p_teacher || p_student)`` over the classes, averaged over every position and clip."""
    aligned = align_features(student, teacher.shape[2:])
    s_logits = dense_logits(aligned, student_classifier).float()
    with torch.no_grad():
        t_logits = dense_logits(teacher.detach(), teacher_classifier, frozen=True).float()
    if s_logits.shape != t_logits.shape:
        raise ValueError(f"student and teacher classify into different class counts "
                         f"({s_logits.shape[-1]} vs {t_logits.shape[-1]})")
    k = s_logits.shape[-1]
    log_p_s = F.log_softmax(s_logits.reshape(-1, k) / temperature, dim=-1)
    log_p_t = F.log_softmax(t_logits.reshape(-1, k) / temperature, dim=-1)
    # batchmean over the flattened rows = mean over positions of the per-position KL
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


def task_loss(logits: torch.Tensor, target: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """Cross-entropy on class indices, or BCE-with-logits on multi-hot targets."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return F.cross_entropy(logits.float(), target)


def resolve_kd_mode(mode: str, student_width: int, teacher_width: int) -> str:
    """"auto" -> "feature" when the widths agree, else "logit"; "feature" with unequal widths is an error."""
    if mode not in KD_MODES:
        raise ValueError(f"kd mode must be one of {KD_MODES}, got {mode!r}")
    if mode == "auto":
        return "feature" if student_width == teacher_width else "logit"
    if mode == "feature" and student_width != teacher_width:
        raise ValueError(f"feature-map distillation needs equal widths (student {student_width}, "
                         f"teacher {teacher_width}); use the logit-map variant (--kd-mode logit)")
    return mode


@dataclass
class ResKDLoss:
    """The full objective. ``mode`` is "feature" or "logit" (resolve "auto" with :func:`resolve_kd_mode`)."""

    kd_weight: float = 100.0
    temperature: float = 2.0
    mode: str = "feature"
    multi_label: bool = False

    def __call__(self, student_logits: torch.Tensor, target: torch.Tensor,
                 student_features: torch.Tensor | None = None, teacher_features: torch.Tensor | None = None,
                 student_classifier: nn.Linear | None = None,
                 teacher_classifier: nn.Linear | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts ({"task", "kd"}) as floats for logging; no teacher -> task loss only."""
        task = task_loss(student_logits, target, self.multi_label)
        if teacher_features is None or self.kd_weight == 0:
            return task, {"task": float(task.detach()), "kd": 0.0}
        if student_features is None:
            raise ValueError("distillation needs the student's feature map")
        if self.mode == "feature":
            kd = feature_mse_loss(student_features, teacher_features)
        elif self.mode == "logit":
            if student_classifier is None or teacher_classifier is None:
                raise ValueError("the logit-map variant needs both classifiers")
            kd = dense_logit_kd_loss(student_features, teacher_features, student_classifier, teacher_classifier,
                                     self.temperature)
        else:
            raise ValueError(f"unresolved kd mode {self.mode!r}")
        total = task + self.kd_weight * kd
        return total, {"task": float(task.detach()), "kd": float(kd.detach())}
