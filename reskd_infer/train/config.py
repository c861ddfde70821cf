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
BN_MOMENTUM_DEFAULTS: dict[str, float] = {"tsn_effnet_lite0": 0.1, "tsm_effnet_lite0": 0.1}
CLIP_MODES = ("separate", "global")


class TrainError(ReskdError):
    """The training configuration is inconsistent (message says which options conflict)."""


@dataclass
class DataConfig:
    """What the run trains and evaluates on, and how clips become crops.

    ``input_size``/``num_frames``/``frame_interval`` of 0 take the architecture's default
    (with a teacher, frames and sampling come from the teacher's spec). ``crop_size`` is
    the resolution the augmented crop is made at: 0 means the teacher's input size with
    a teacher, else ``input_size``; give the plain baseline the teacher's size so it
    sees exactly the ResKD student's pipeline minus the distillation.
    """

    train_list: str = ""
    val_list: str | None = None
    unlabelled: str | None = None  # videos / frame folders without labels: learn the teacher's outputs (no task loss)
    data_root: str | None = None
    classes: str | None = None
    input_size: int = 0
    num_frames: int = 0
    frame_interval: int = 0
    keyframe_sampling: bool = False  # decode-aware TSN sampling, recorded in the spec (docs/video.md)
    crop_size: int = 0
    multi_label: bool = False
    multi_label_loss: str = "soft_ce"
    flip: bool = True
    workers: int = 2
    max_bad_clips: float = 0.01  # fraction of the training list that may be unreadable (logged, replaced)
    check_clips: bool = False  # decode every listed clip before training


@dataclass
class ModelConfig:
    """The network trained: its architecture, initialisation and BatchNorm treatment."""

    arch: str = "tsn_r18"
    weights: str | None = None
    init_from_teacher: bool = False
    pretrained_imagenet: bool = False
    bn_momentum: float = 0.0  # 0: the backbone's default (see BN_MOMENTUM_DEFAULTS)
    freeze_bn: bool | None = None  # BatchNorm kept in eval mode while training; None: on with --unlabelled
    freeze_head: bool = False  # the classifier keeps its weights; only the backbone trains
    precise_bn: int = 0  # re-estimate BatchNorm statistics over this many training batches after training


@dataclass
class OptimConfig:
    """SGD, its schedule and clipping."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 0.01
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    clip_grad: float = 20.0
    clip_mode: str = "separate"  # "separate": the classifier is clipped on its own norm; "global": one norm
    amp: bool = True  # mixed precision, CUDA only


@dataclass
class DistillConfig:
    """The teacher and the distillation objective."""

    teacher: str | None = None
    no_kd: bool = False
    preset: str = ""  # "paper": kd_loss mse, w_kd 100, w_logit 0, clip_mode global (the authors' recipe)
    kd_loss: str = "pooled"
    w_kd: float | None = None  # None: the term's default weight (see TrainConfig.kd_weight)
    kd_warmup_epochs: float | None = None  # the feature weight ramps from kd_warmup_from x w_kd up to w_kd over
    # these epochs; None: the term's default (see TrainConfig.kd_warmup)
    kd_warmup_from: float = 0.3
    w_logit: float = 1.0
    kd_mode: str = "auto"
    temperature: float = 2.0
    logit_calibration: bool = True  # --unlabelled: first scale the student's logits to the teacher's (one scalar)


@dataclass
class RunConfig:
    """Where and how the run executes: seed, device, work dir, resume, evaluation cadence."""

    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    work_dir: str = "runs/train"
    resume: bool = False
    stop_after_epoch: int = 0  # stop (as if interrupted) after this epoch; the schedule still spans `epochs`
    eval_every: int = 1
    eval_batch_size: int = 0  # 0: same as batch_size
    divergence_guard: bool = True  # stop a run whose task loss climbs back to chance (train/divergence.py)


@dataclass
class LogConfig:
    """What the run reports: progress, per-step records, provenance."""

    progress: bool = True
    log_every: int = 1  # per-step records in metrics.jsonl every N steps (0: none)
    dataset: str = ""  # dataset name for provenance (default: the train list's file name)
    extra_provenance: dict[str, Any] = field(default_factory=dict)


GROUPS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "distill": DistillConfig,
                           "run": RunConfig, "log": LogConfig}
# Every option's group: option names are unique across groups, and they are the flags (--train-list...).
FIELD_GROUP: dict[str, str] = {f.name: g for g, cls in GROUPS.items() for f in dataclasses.fields(cls)}


@dataclass(init=False)
class TrainConfig:
    """Every option of ``reskd-train``, in groups: ``cfg.data``, ``cfg.model``, ``cfg.optim``, ``cfg.distill``,
    ``cfg.run``, ``cfg.log``. Option names are the command-line flags (``train_list`` is ``--train-list``).

    Built from groups or from flat options (``TrainConfig(arch="tsn_r18", lr=0.02)``); a flat option also
    reads and writes through (``cfg.lr`` is ``cfg.optim.lr``), so code written for the flat form keeps working.
    """

    data: DataConfig
    model: ModelConfig
    optim: OptimConfig
    distill: DistillConfig
    run: RunConfig
    log: LogConfig

    def __init__(self, data: DataConfig | None = None, model: ModelConfig | None = None,
                 optim: OptimConfig | None = None, distill: DistillConfig | None = None, run: RunConfig | None = None,
                 log: LogConfig | None = None, **options: Any):
        given = {"data": data, "model": model, "optim": optim, "distill": distill, "run": run, "log": log}
        for name, cls in GROUPS.items():  # copies: a config never shares a group with another
            object.__setattr__(self, name, dataclasses.replace(given[name]) if given[name] is not None else cls())
        for name, value in options.items():
            if name not in FIELD_GROUP:
                raise TypeError(f"TrainConfig got an unexpected option {name!r}")
            setattr(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: a flat option name reads its group's field.
        group = FIELD_GROUP.get(name)
        if group is None:
            raise AttributeError(f"TrainConfig has no option {name!r}")
        return getattr(object.__getattribute__(self, group), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in GROUPS:
            object.__setattr__(self, name, value)
        elif name in FIELD_GROUP:
            setattr(getattr(self, FIELD_GROUP[name]), name, value)
        else:
            raise AttributeError(f"TrainConfig has no option {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The options by group (config.json)."""
        return dataclasses.asdict(self)

    def flat_dict(self) -> dict[str, Any]:
        """Every option by its flag name."""
        return {name: getattr(self, name) for name in FIELD_GROUP}

    def replace(self, **options: Any) -> TrainConfig:
        """A copy with some options (flat names or whole groups) changed."""
        return dataclasses.replace(self, **options)

    @classmethod
    def field_names(cls) -> list[str]:
        """Every option's flat name (the flags), group by group."""
        return list(FIELD_GROUP)

    @property
    def train_source(self) -> str:
        """The list the run trains on: --unlabelled's, else --train-list's."""
        return self.data.unlabelled or self.data.train_list

    @property
    def wants_distillation(self) -> bool:
        """A teacher is given, --no-kd is not, and some distillation term has a weight."""
        d = self.distill
        return bool(d.teacher) and not d.no_kd and (d.w_kd is None or d.w_kd > 0 or d.w_logit > 0)

    def kd_weight(self, mode: str = "feature") -> float:
        """--w-kd, or the default weight of the feature-level term that ``mode`` ("feature"/"logit") uses."""
        if self.distill.w_kd is not None:
            return self.distill.w_kd
        return LOGIT_MAP_W_KD if mode == "logit" else DEFAULT_W_KD[self.distill.kd_loss]

    def kd_warmup(self, mode: str = "feature") -> float:
        """--kd-warmup-epochs, or the default ramp of the feature-level term ``mode`` uses (the logit-map KL
        of unequal widths has none)."""
        if self.distill.kd_warmup_epochs is not None:
            return self.distill.kd_warmup_epochs
        return 0.0 if mode == "logit" else DEFAULT_KD_WARMUP_EPOCHS[self.distill.kd_loss]

    def effective_bn_momentum(self) -> float:
        """--bn-momentum, or the backbone's default (0: keep the architecture's own)."""
        return self.model.bn_momentum or BN_MOMENTUM_DEFAULTS.get(self.model.arch, 0.0)


_CHOICES = {"kd_mode": KD_MODES, "kd_loss": KD_LOSSES, "clip_mode": CLIP_MODES,
            "multi_label_loss": MULTI_LABEL_LOSSES}


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Apply ``preset`` and check the options that need no file: a new, consistent config (or TrainError)."""
    if bool(cfg.data.train_list) == bool(cfg.data.unlabelled):
        raise TrainError("a training list is required: --train-list (labelled) or --unlabelled (no labels), not both")
    if cfg.data.unlabelled and (not cfg.distill.teacher or cfg.distill.no_kd):
        raise TrainError("--unlabelled learns from the teacher's outputs: give --teacher (and no --no-kd)")
    return resolve_options(cfg, unlabelled=bool(cfg.data.unlabelled))


def resolve_options(cfg: TrainConfig, unlabelled: bool) -> TrainConfig:
    """:func:`resolve_config` without the data sources (unlabelled training on cached teacher outputs has none)."""
    if cfg.model.freeze_bn is None:
        cfg = dataclasses.replace(cfg, freeze_bn=unlabelled)
    if cfg.distill.preset:
        if cfg.distill.preset not in PRESETS:
            raise TrainError(f"--preset must be one of {', '.join(PRESETS)}, got {cfg.distill.preset!r}")
        cfg = dataclasses.replace(cfg, **PRESETS[cfg.distill.preset])
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise TrainError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, "
                             f"got {getattr(cfg, name)!r}")
    if cfg.distill.no_kd and cfg.distill.teacher and not cfg.model.init_from_teacher:
        raise TrainError("--no-kd with --teacher: the teacher would be unused (drop one; --teacher with "
                         "--init-from-teacher --no-kd only initializes from it)")
    if cfg.optim.epochs < 1 or cfg.optim.batch_size < 1:
        raise TrainError("--epochs and --batch-size must be at least 1")
    if not 0 <= cfg.data.max_bad_clips < 1:
        raise TrainError(f"--max-bad-clips must be a fraction in [0, 1), got {cfg.data.max_bad_clips}")
    if (cfg.distill.kd_warmup_epochs or 0) < 0 or not 0 <= cfg.distill.kd_warmup_from <= 1:
        raise TrainError("--kd-warmup-epochs must be 0 or more and --kd-warmup-from a fraction in [0, 1], got "
                         f"{cfg.distill.kd_warmup_epochs} and {cfg.distill.kd_warmup_from}")
    if cfg.model.precise_bn < 0 or cfg.log.log_every < 0:
        raise TrainError("--precise-bn and --log-every must be 0 or more")
    return cfg
