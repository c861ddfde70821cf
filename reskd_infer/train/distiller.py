"""Who teaches, and with what loss: decided once per run, then asked for every step's loss.

:func:`build_distiller` loads the teacher (frozen: eval mode, no gradient), resolves the
distillation mode from the two widths and builds the :class:`ResKDLoss`. With no teacher, or
``--no-kd``, or every weight 0, the :class:`Distiller` has no teacher and its loss is the task loss.
Also here: gradient clipping that keeps the classifier's own norm, and the warning that catches an
objective out of balance.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from reskd_infer.io.checkpoint import load_checkpoint
from reskd_infer.spec import ModelSpec
from reskd_infer.train.config import TrainConfig, TrainError
from reskd_infer.train.losses import ResKDLoss, resolve_kd_mode
from reskd_infer.video.preprocess import normalize, to_model_resolution

IMBALANCE_CHECK_STEP = 300  # the imbalance warning looks at the steps before this one (or the run's end)
IMBALANCE_RATIO = 20.0
IMBALANCE_CLIP = 0.2
# The ratio is judged only while the task loss is above this share of its start: a bounded KD term (the
# pooled default at w 10 sits near 13 late in training) is many times any task loss that is being learnt.
# On the trend benchmark the default's students, the best of every arm, ended 250 steps at 21-40x with
# their task loss at 0.42-0.62 of its start (plain students 0.43-0.68): a task that has fallen by a quarter
# trains; a starved one (the paper's weight on this backbone) stays near its start.
TASK_FALLEN = 0.75


def model_input(crops: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """A training crop batch as the network of ``spec`` sees it: the runtime's bilinear down-sampling and
    normalization (the teacher and the student both go through this, from the same crop)."""
    return normalize(to_model_resolution(crops, spec.input_size), spec)


@dataclass(frozen=True)
class KDWarmup:
    """The feature-level weight's ramp: ``start`` x the weight at step 0, rising linearly to the full weight
    at step ``steps`` (0 steps: the full weight throughout)."""

    steps: int = 0
    start: float = 1.0

    def scale(self, step: int) -> float:
        if step >= self.steps:
            return 1.0
        return self.start + (1.0 - self.start) * step / self.steps


class TeacherOutputs(NamedTuple):
    """The teacher's outputs on a batch, computed beforehand (unlabelled training on cached targets): its
    last feature map (None: logit KD only) and its logits."""

    features: torch.Tensor | None
    logits: torch.Tensor


@dataclass
class Distiller:
    """The objective of a run: the task loss, plus distillation from ``teacher`` when there is one.

    ``labelled`` False (unlabelled data): no task loss, the teacher's outputs are the only targets; they
    come from ``teacher`` on each batch, or ready-made as the batch's :class:`TeacherOutputs`.
    """

    loss_fn: ResKDLoss
    teacher: nn.Module | None = None
    teacher_spec: ModelSpec | None = None
    kd_mode: str | None = None  # "feature" or "logit" when distilling, else None
    warmup: KDWarmup = KDWarmup()
    labelled: bool = True

    @property
    def active(self) -> bool:
        return self.teacher_spec is not None and self.kd_mode is not None

    def __call__(self, student: nn.Module, features: torch.Tensor, logits: torch.Tensor, crops: torch.Tensor,
                 target: torch.Tensor | TeacherOutputs, step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of training step ``step`` (0-based, for the weight's ramp) and its parts; the teacher sees
        ``crops`` at its own resolution, no gradient."""
        if not self.active:
            return self.loss_fn(logits, target)
        teacher = target if isinstance(target, TeacherOutputs) else self.teacher_outputs(crops)
        classifiers = (student.classifier(), self.teacher.classifier() if self.teacher is not None else None)
        if self.labelled:
            return self.loss_fn(logits, target, features, teacher.features, *classifiers, teacher.logits,
                                kd_scale=self.warmup.scale(step))
        kd, parts = self.loss_fn.distillation(logits, features, teacher.features, *classifiers, teacher.logits,
                                              kd_scale=self.warmup.scale(step))
        return kd, {"task": 0.0, "kd": float(kd.detach()), **parts}

    @torch.no_grad()
    def teacher_outputs(self, crops: torch.Tensor) -> TeacherOutputs:
        """The frozen teacher on ``crops`` at its own resolution (logits only when a logit term needs them)."""
        assert self.teacher is not None and self.teacher_spec is not None
        features = self.teacher.forward_features(model_input(crops, self.teacher_spec))
        needs_logits = self.loss_fn.logit_weight > 0 or not self.labelled  # unlabelled runs calibrate on them
        return TeacherOutputs(features, self.teacher.forward_head(features) if needs_logits else None)

    def provenance(self, cfg: TrainConfig) -> dict[str, Any]:
        """What the checkpoint's spec records about the teacher and the objective."""
        if not self.active:
            return {}
        assert self.teacher_spec is not None
        checkpoint = str(cfg.distill.teacher) if cfg.distill.teacher else None  # None: outputs cached beforehand
        return {"teacher": {"arch": self.teacher_spec.arch, "checkpoint": checkpoint,
                            "input_size": self.teacher_spec.input_size},
                "teacher_arch": self.teacher_spec.arch, "teacher_input_size": self.teacher_spec.input_size,
                "w_kd": self.loss_fn.kd_weight, "kd_warmup_steps": self.warmup.steps,
                "kd_warmup_from": self.warmup.start, "kd_mode": self.kd_mode, "temperature": cfg.distill.temperature,
                "kd_loss": cfg.distill.kd_loss,
                "w_logit": cfg.distill.w_logit, "clip_mode": cfg.optim.clip_mode, "clip_grad": cfg.optim.clip_grad,
                "preset": cfg.distill.preset or None}

    def banner(self) -> str:
        if not self.active:
            return "loss: task only"
        assert self.teacher_spec is not None
        fn = self.loss_fn
        ramp = (f" (from {fn.kd_weight * self.warmup.start:g} over {self.warmup.steps} steps)"
                if self.warmup.steps else "")
        task = "task + " if self.labelled else "no labels: "
        return (f"teacher {self.teacher_spec.arch} @ {self.teacher_spec.input_size}px, loss: {task}"
                f"{fn.kd_weight:g}{ramp} x {fn.kd_loss if self.kd_mode == 'feature' else 'logit-map KL'}"
                + (f" + {fn.logit_weight:g} x logit KD (T {fn.temperature:g})" if fn.logit_weight > 0 else ""))


def load_teacher(path: str, device: torch.device) -> tuple[nn.Module, ModelSpec]:
    """The teacher checkpoint, frozen: eval mode (fixed BatchNorm statistics, no dropout), no gradient."""
    teacher, spec = load_checkpoint(path, map_location=device)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, spec


def build_distiller(cfg: TrainConfig, student: nn.Module, teacher: nn.Module | None,
                    teacher_spec: ModelSpec | None, steps_per_epoch: int = 1, teacher_width: int | None = None,
                    ) -> Distiller:
    """Decide once whether and how this run distils (``steps_per_epoch`` turns the ramp's epochs into steps).

    ``teacher_width``: the width of cached teacher maps, when the teacher itself is not loaded (its outputs
    come with the batches); training is then unlabelled, as with ``--unlabelled``."""
    kd_mode = None
    width = teacher.feature_dim if teacher is not None else teacher_width
    if width is not None and teacher_spec is not None and (cfg.wants_distillation or teacher is None):
        try:
            kd_mode = resolve_kd_mode(cfg.distill.kd_mode, student.feature_dim, width)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
    mode = kd_mode or "feature"
    loss_fn = ResKDLoss(kd_weight=cfg.kd_weight(mode), temperature=cfg.distill.temperature, mode=mode,
                        multi_label=cfg.data.multi_label, kd_loss=cfg.distill.kd_loss, logit_weight=cfg.distill.w_logit,
                        multi_label_loss=cfg.data.multi_label_loss)
    if kd_mode is None:
        return Distiller(loss_fn)
    warmup = KDWarmup(int(round(cfg.kd_warmup(mode) * steps_per_epoch)), cfg.distill.kd_warmup_from)
    labelled = not cfg.data.unlabelled and teacher is not None
    return Distiller(loss_fn, teacher, teacher_spec, kd_mode, warmup, labelled)


def clip_gradients(model: nn.Module, max_norm: float, mode: str) -> tuple[float, float]:
    """Clip gradient norms; returns the factors (<= 1) applied to the backbone and to the classifier.

    "separate": the classifier's gradient is clipped on its own norm, so a large distillation gradient in
    the backbone (the feature terms send the classifier none) never scales down its cross-entropy
    gradient. "global": one norm over every parameter (the authors' recipe).
    """
    if max_norm <= 0:
        return 1.0, 1.0
    if mode == "global":
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        factor = min(1.0, max_norm / (norm + 1e-6))
        return factor, factor
    head_ids = {id(p) for p in model.classifier().parameters()}
    trunk = [p for p in model.parameters() if id(p) not in head_ids and p.grad is not None]
    head = [p for p in model.classifier().parameters() if p.grad is not None]
    factors = []
    for group in (trunk, head):
        norm = float(torch.nn.utils.clip_grad_norm_(group, max_norm)) if group else 0.0
        factors.append(min(1.0, max_norm / (norm + 1e-6)))
    return factors[0], factors[1]


class ImbalanceMonitor:
    """Prints one warning when, early in a distillation run, the KD term dwarfs the task loss or
    clipping throttles every step (the symptoms of a weight that suits another backbone)."""

    def __init__(self, check_step: int, active: bool, window: int = 50):
        self.check_step = check_step
        self.active = active
        self.window = window
        self.recent: list[dict[str, Any]] = []
        self.first: dict[str, float] | None = None
        self.warned = False

    def observe(self, steps: list[dict[str, Any]], report: bool) -> None:
        """Feed one epoch's per-step records; warns (once, if ``report``) when the check step passes."""
        if not self.active or not steps:
            return
        if self.first is None:
            head = steps[: min(10, len(steps))]
            self.first = {k: round(statistics.fmean(r[k] for r in head), 4) for k in ("task", "kd", "kd_ratio", "clip")}
        for record in steps:
            self.recent = (self.recent + [record])[-self.window:]
            if record["step"] == self.check_step and not self.warned:
                self.warned = True
                message = self.message()
                if message and report:
                    print(message, file=sys.stderr, flush=True)

    def message(self) -> str | None:
        """The warning line for the recent steps, or None when the objective is balanced."""
        ratio = statistics.fmean(r["kd_ratio"] for r in self.recent)
        clip = statistics.fmean(r["clip"] for r in self.recent)
        task = statistics.fmean(r["task"] for r in self.recent)
        # A large ratio only starves the task while the task loss has not fallen: once it has (below half its
        # start), a KD term 20x a small task loss is a task already learnt, not a weight to change.
        task_stalled = self.first is None or task > TASK_FALLEN * self.first["task"]
        if (ratio <= IMBALANCE_RATIO or not task_stalled) and clip >= IMBALANCE_CLIP:
            return None
        return (f"reskd-train: warning: after {self.check_step} steps the distillation term is {ratio:.1f}x the "
                f"task loss and gradient clipping scales the backbone by {clip:.2f}: the task barely trains. "
                "Lower --w-kd (or use the default --kd-loss pooled instead of --preset paper / "
                "--kd-loss mse), or raise --clip-grad.")
