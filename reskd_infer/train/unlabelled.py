"""Unlabelled distillation: a student adapted to footage without labels, the teacher's outputs as targets.

``reskd-train --teacher T --unlabelled LIST`` runs the trainer's own loop (optimizer, warm-up/cosine
schedule, clipping, resume, bad-clip handling) with the :class:`~.distiller.Distiller` minus its task
loss: the feature term plus logit KD. Two things differ from labelled training, both from the
label-free recipe measured on real footage (docs/benchmarks.md):

* the student's logit scale is first calibrated to the teacher's (:func:`calibrate_logit_scale`, one
  scalar dividing the classifier): fed frames at a fraction of its resolution, a network's logits are
  several times too large, and distilling from there flattens every answer;
* BatchNorm stays in eval mode (``--freeze-bn``, on by default here): its statistics are the ones the
  network is evaluated with, so the network trained is the network served.

The teacher's outputs may also be computed once and handed over (:class:`CachedViews`, for
:func:`~.trainer.train_cached`): the teacher is frozen, so caching its outputs on fixed frames is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reskd_infer.train.distiller import TeacherOutputs

# The grid of logit scales the calibration tries: log-spaced from 0.1 to 100.
CALIBRATION_SCALES = torch.logspace(-1, 2, 61)


def mean_kl(logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Mean KL(teacher || model) over the rows of two logit tensors (temperature 1)."""
    return float(F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(teacher_logits.float(), -1),
                          reduction="batchmean", log_target=True))


def fit_logit_scale(logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """The scale in :data:`CALIBRATION_SCALES` whose ``logits / scale`` are closest to the teacher's (mean KL).

    The KL is compared at 4 decimals, as the recipe always did: near-ties go to the smaller scale."""
    kls = torch.tensor([round(mean_kl(logits / s, teacher_logits), 4) for s in CALIBRATION_SCALES])
    return float(CALIBRATION_SCALES[int(kls.argmin())])


@torch.no_grad()
def scale_classifier(model: nn.Module, scale: float) -> None:
    """Divide the classifier's weight and bias by ``scale`` (its logits shrink by that factor), in place."""
    fc = model.classifier()
    fc.weight /= scale
    if fc.bias is not None:
        fc.bias /= scale


@torch.no_grad()
def calibrate_logit_scale(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Scale the classifier of ``model`` (in place, eval mode) so its logits on ``batches`` of
    ``(student input, teacher logits)`` are closest to the teacher's; returns the scale."""
    model.eval()
    logits, targets = [], []
    for x, teacher_logits in batches:
        logits.append(model.forward_head(model.forward_features(x)))
        targets.append(teacher_logits)
    scale = fit_logit_scale(torch.cat(logits), torch.cat(targets))
    scale_classifier(model, scale)
    return scale


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep every BatchNorm in eval mode (its running statistics) while the rest trains."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@dataclass(frozen=True)
class CachedViews:
    """One set of training frames with the teacher's outputs on exactly those frames.

    ``crops`` (N, 3, H, W) or (N, 3, T, H, W), any dtype (uint8 saves memory), at the teacher's crop;
    ``features`` the teacher's maps (None: logit KD only); ``logits`` (N, K)."""

    crops: torch.Tensor
    features: torch.Tensor | None
    logits: torch.Tensor

    def __post_init__(self) -> None:
        n = len(self.crops)
        if len(self.logits) != n or (self.features is not None and len(self.features) != n):
            raise ValueError("every view set needs one view, teacher map and teacher logit row per crop")


class CachedBatches:
    """The training batches of cached views: epoch ``e`` reads view set ``e % len(sets)`` in the order of one
    ``randperm`` of ``generator`` (the run's resumable shuffling generator); a last batch of one frame is
    skipped (BatchNorm in training mode needs two), but counted in the schedule's steps."""

    def __init__(self, sets: Sequence[CachedViews], batch_size: int, generator: torch.Generator):
        sizes = {len(s.crops) for s in sets}
        if len(sizes) != 1:
            raise ValueError("every view set needs one view, teacher map and teacher logit row per crop")
        self.sets, self.batch_size, self.generator = list(sets), batch_size, generator
        self.size = sizes.pop()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def view_set(self, epoch: int) -> int:
        """Which view set epoch ``epoch`` trains on."""
        return epoch % len(self.sets)

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, TeacherOutputs]]:
        views = self.sets[self.view_set(self.epoch)]
        order = torch.randperm(self.size, generator=self.generator)
        for i in range(0, self.size, self.batch_size):
            idx = order[i:i + self.batch_size]
            if len(idx) < 2:
                continue
            maps = views.features[idx] if views.features is not None else None
            yield as_clips(views.crops[idx].float()), TeacherOutputs(maps, views.logits[idx])


def as_clips(crops: torch.Tensor) -> torch.Tensor:
    """Frames (N, 3, H, W) as one-frame clips (N, 3, 1, H, W); clips pass unchanged."""
    return crops.unsqueeze(2) if crops.dim() == 4 else crops
