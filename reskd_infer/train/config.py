"""The trainer's configuration: every ``reskd-train`` option, presets, and the checks run once up front."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from reskd_infer.errors import ReskdError
from reskd_infer.train.losses import (
    DEFAULT_KD_WARMUP_EPOCHS,
    DEFAULT_W_KD,
    KD_LOSSES,
    KD_MODES,
    LOGIT_MAP_W_KD,
    MULTI_LABEL_LOSSES,
)

PRESETS: dict[str, dict[str, Any]] = {
    # The authors' recipe: raw feature MSE at weight 100, one global gradient norm, no logit KD.
    "paper": {"kd_loss": "mse", "w_kd": 100.0, "kd_warmup_epochs": 0.0, "w_logit": 0.0, "clip_mode": "global"},
}
# BatchNorm momentum per backbone when --bn-momentum is 0. Lite0 carries TF's 0.01 (decay 0.99, made for
# long ImageNet runs): a fine-tuning of a few hundred steps would leave its running statistics mostly
# ImageNet's at 224 px, so the trainer uses PyTorch's 0.1; the others keep their own (0.1).
BN_MOMENTUM_DEFAULTS: dict[str, float] = {"tsn_effnet_lite0": 0.1}
CLIP_MODES = ("separate", "global")


class TrainError(ReskdError):
    """The training configuration is inconsistent (message says which options conflict)."""


@dataclass
class TrainConfig:
    """Every option of ``reskd-train``; field names are the command-line flags (``--train-list``...).

    ``input_size``/``num_frames``/``frame_interval`` of 0 take the architecture's default
    (with a teacher, frames and sampling come from the teacher's spec). ``crop_size`` is
    the resolution the augmented crop is made at: 0 means the teacher's input size with
    a teacher, else ``input_size``; give the plain baseline the teacher's size so it
    sees exactly the ResKD student's pipeline minus the distillation.
    """

    arch: str = "tsn_r18"
    train_list: str = ""
    val_list: str | None = None
    unlabelled: str | None = None  # a list of videos / frame folders without labels: adapt to the teacher (no task loss)
    data_root: str | None = None
    classes: str | None = None
    input_size: int = 0
    num_frames: int = 0
    frame_interval: int = 0
    keyframe_sampling: bool = False  # decode-aware TSN sampling, recorded in the spec (docs/video.md)
    crop_size: int = 0
    epochs: int = 30
    batch_size: int = 8
    eval_batch_size: int = 0  # 0: same as batch_size
    lr: float = 0.01
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    clip_grad: float = 20.0
    clip_mode: str = "separate"  # "separate": the classifier is clipped on its own norm; "global": one norm
    preset: str = ""  # "paper": kd_loss mse, w_kd 100, w_logit 0, clip_mode global (the authors' recipe)
    kd_loss: str = "pooled"
    w_kd: float | None = None  # None: the term's default weight (see kd_weight)
    kd_warmup_epochs: float | None = None  # the feature weight ramps from kd_warmup_from x w_kd up to w_kd over
    # these epochs; None: the term's default (see kd_warmup)
    kd_warmup_from: float = 0.3
    w_logit: float = 1.0
    kd_mode: str = "auto"
    temperature: float = 2.0
    teacher: str | None = None
    no_kd: bool = False
    weights: str | None = None
    init_from_teacher: bool = False
    pretrained_imagenet: bool = False
    seed: int = 0
    workers: int = 2
    eval_every: int = 1
    work_dir: str = "runs/train"
    resume: bool = False
    stop_after_epoch: int = 0  # stop (as if interrupted) after this epoch; the schedule still spans `epochs`
    device: str = "auto"
    deterministic: bool = False
    multi_label: bool = False
    multi_label_loss: str = "soft_ce"
    flip: bool = True
    freeze_bn: bool | None = None  # BatchNorm kept in eval mode while training; None: on with --unlabelled
    freeze_head: bool = False  # the classifier keeps its weights; only the backbone trains
    logit_calibration: bool = True  # --unlabelled: first scale the student's logits to the teacher's (one scalar)
    bn_momentum: float = 0.0  # 0: the backbone's default (see BN_MOMENTUM_DEFAULTS)
    precise_bn: int = 0  # re-estimate BatchNorm statistics over this many training batches after training
    log_every: int = 1  # per-step records in metrics.jsonl every N steps (0: none)
    amp: bool = True  # mixed precision, CUDA only
    dataset: str = ""  # dataset name for provenance (default: the train list's file name)
    progress: bool = True
    max_bad_clips: float = 0.01  # fraction of the training list that may be unreadable (logged, replaced)
    check_clips: bool = False  # decode every listed clip before training
    extra_provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @property
    def train_source(self) -> str:
        """The list the run trains on: --unlabelled's, else --train-list's."""
        return self.unlabelled or self.train_list

    @property
    def wants_distillation(self) -> bool:
        """A teacher is given, --no-kd is not, and some distillation term has a weight."""
        return bool(self.teacher) and not self.no_kd and (self.w_kd is None or self.w_kd > 0 or self.w_logit > 0)

    def kd_weight(self, mode: str = "feature") -> float:
        """--w-kd, or the default weight of the feature-level term that ``mode`` ("feature"/"logit") uses."""
        if self.w_kd is not None:
            return self.w_kd
        return LOGIT_MAP_W_KD if mode == "logit" else DEFAULT_W_KD[self.kd_loss]

    def kd_warmup(self, mode: str = "feature") -> float:
        """--kd-warmup-epochs, or the default ramp of the feature-level term ``mode`` uses (the logit-map KL
        of unequal widths has none)."""
        if self.kd_warmup_epochs is not None:
            return self.kd_warmup_epochs
        return 0.0 if mode == "logit" else DEFAULT_KD_WARMUP_EPOCHS[self.kd_loss]

    def effective_bn_momentum(self) -> float:
        """--bn-momentum, or the backbone's default (0: keep the architecture's own)."""
        return self.bn_momentum or BN_MOMENTUM_DEFAULTS.get(self.arch, 0.0)


_CHOICES = {"kd_mode": KD_MODES, "kd_loss": KD_LOSSES, "clip_mode": CLIP_MODES,
            "multi_label_loss": MULTI_LABEL_LOSSES}


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Apply ``preset`` and check the options that need no file: a new, consistent config (or TrainError)."""
    if bool(cfg.train_list) == bool(cfg.unlabelled):
        raise TrainError("a training list is required: --train-list (labelled) or --unlabelled (no labels), not both")
    if cfg.unlabelled and (not cfg.teacher or cfg.no_kd):
        raise TrainError("--unlabelled learns from the teacher's outputs: give --teacher (and no --no-kd)")
    return resolve_options(cfg, unlabelled=bool(cfg.unlabelled))


def resolve_options(cfg: TrainConfig, unlabelled: bool) -> TrainConfig:
    """:func:`resolve_config` without the data sources (unlabelled training on cached teacher outputs has none)."""
    if cfg.freeze_bn is None:
        cfg = dataclasses.replace(cfg, freeze_bn=unlabelled)
    if cfg.preset:
        if cfg.preset not in PRESETS:
            raise TrainError(f"--preset must be one of {', '.join(PRESETS)}, got {cfg.preset!r}")
        cfg = dataclasses.replace(cfg, **PRESETS[cfg.preset])
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise TrainError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, "
                             f"got {getattr(cfg, name)!r}")
    if cfg.no_kd and cfg.teacher and not cfg.init_from_teacher:
        raise TrainError("--no-kd with --teacher: the teacher would be unused (drop one; --teacher with "
                         "--init-from-teacher --no-kd only initializes from it)")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise TrainError("--epochs and --batch-size must be at least 1")
    if not 0 <= cfg.max_bad_clips < 1:
        raise TrainError(f"--max-bad-clips must be a fraction in [0, 1), got {cfg.max_bad_clips}")
    if (cfg.kd_warmup_epochs or 0) < 0 or not 0 <= cfg.kd_warmup_from <= 1:
        raise TrainError("--kd-warmup-epochs must be 0 or more and --kd-warmup-from a fraction in [0, 1], got "
                         f"{cfg.kd_warmup_epochs} and {cfg.kd_warmup_from}")
    if cfg.precise_bn < 0 or cfg.log_every < 0:
        raise TrainError("--precise-bn and --log-every must be 0 or more")
    return cfg
