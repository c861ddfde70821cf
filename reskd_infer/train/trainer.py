"""The trainer: teachers, ResKD students and plain low-resolution baselines, on one CPU or many GPUs.

A run is set up once (:func:`setup_run`: data, specs, the student, the :class:`~.distiller.Distiller`
that decides whether and how this run distils, the optimizer and the resumable
:class:`~.state.TrainState`), then a small loop trains an epoch, evaluates, and saves.

* teacher / plain supervised training (no ``teacher``): the task loss on the model's logits;
* ResKD (``teacher`` = a reskd checkpoint): the teacher (frozen, eval mode, no gradient) sees each
  training crop at its own resolution, the student sees the same crop bilinearly down-sampled, and the
  loss adds the distillation terms of :mod:`reskd_infer.train.losses`;
* the plain baseline (``no_kd``): like ResKD's data pipeline, without the teacher.

Distributed data parallel runs when launched by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on GPUs, Gloo
on CPUs, a :class:`~torch.utils.data.DistributedSampler`, and rank 0 alone logs and writes files.
``batch_size`` is per process.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from reskd_infer.errors import DatasetError, TrainingDivergedError
from reskd_infer.io.checkpoint import save_checkpoint, spec_from_checkpoint
from reskd_infer.io.digests import file_sha256, weights_digest
from reskd_infer.io.files import atomic_write
from reskd_infer.metrics import classification_metrics
from reskd_infer.models import build_model, get_arch_info, load_pretrained_weights
from reskd_infer.models.efficientnet_lite import IMAGENET_ARCHS, load_imagenet_weights
from reskd_infer.spec import EVAL_RESIZE_RATIO, SAMPLING_SEGMENTS, ModelSpec, library_versions
from reskd_infer.train.config import (
    BN_MOMENTUM_DEFAULTS,
    CLIP_MODES,
    PRESETS,
    TrainConfig,
    TrainError,
    resolve_config,
    resolve_options,
)
from reskd_infer.train.data import (
    BAD_CLIPS_FILE,
    BadClipLog,
    EvalClipDataset,
    ListLoader,
    TrainClipDataset,
    check_clips,
    infer_class_names,
    parse_list,
)
from reskd_infer.train.distiller import (
    IMBALANCE_CHECK_STEP,
    Distiller,
    ImbalanceMonitor,
    TeacherOutputs,
    build_distiller,
    clip_gradients,
    load_teacher,
    model_input,
)
from reskd_infer.train.distributed import DistInfo, init_distributed
from reskd_infer.train.divergence import DivergenceGuard
from reskd_infer.train.evaluation import evaluate, predict_dataset, primary_metric
from reskd_infer.train.state import STATE_FILE, TrainState
from reskd_infer.train.unlabelled import (
    CachedBatches,
    CachedViews,
    as_clips,
    calibrate_logit_scale,
    freeze_batchnorm,
    scale_classifier,
)
from reskd_infer.train.workdir import checkpoint_bytes, prepare_work_dir, trim_log
from reskd_infer.video import DECODER_NAME

METRICS_FILE = "metrics.jsonl"
CALIBRATION_BATCH = 32  # frames per forward pass of the logit-scale calibration on cached frames

__all__ = ["BN_MOMENTUM_DEFAULTS", "CLIP_MODES", "METRICS_FILE", "PRESETS", "STATE_FILE", "TrainConfig", "TrainError",
           "WarmupCosine", "build_specs", "clip_gradients", "evaluate", "param_groups", "precise_bn", "seed_everything",
           "train", "train_cached"]


# ---- schedule, optimizer, seeding --------------------------------------------------------------------
def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class WarmupCosine:
    """A picklable-free LR lambda (module-level class so the scheduler's state stays plain data)."""

    def __init__(self, total_steps: int, warmup_steps: int):
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.warmup_steps)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights of convolutions and linear layers; none on norms and biases (1-D tensors)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # Same results run to run (CPU: same thread count); warn_only keeps ops without a deterministic kernel usable.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# ---- specs, classes, initialization ----------------------------------------------------------------
def build_specs(cfg: TrainConfig, class_names: list[str]) -> tuple[ModelSpec, ModelSpec | None]:
    """The student's (or teacher-in-training's) spec and, with a teacher, the teacher's spec."""
    teacher_spec = spec_from_checkpoint(cfg.distill.teacher) if cfg.distill.teacher else None
    info = get_arch_info(cfg.model.arch)
    input_size = cfg.data.input_size or info.default_input_size
    extra: dict[str, Any] = {}
    if teacher_spec is not None:
        # The student sees the teacher's frames: same count and sampling, same crop.
        if cfg.data.num_frames and cfg.data.num_frames != teacher_spec.num_frames:
            raise TrainError(f"--num-frames {cfg.data.num_frames} differs from the teacher's {teacher_spec.num_frames} "
                             f"({cfg.distill.teacher}): the student must see the teacher's frames")
        extra.update(num_frames=teacher_spec.num_frames, sampling=teacher_spec.sampling,
                     frame_interval=teacher_spec.frame_interval)
        crop = cfg.data.crop_size or teacher_spec.input_size
        if teacher_spec.multi_label != cfg.data.multi_label:
            kind = "multi" if teacher_spec.multi_label else "single"
            raise TrainError(f"teacher {cfg.distill.teacher} is {kind}-label "
                             f"but --multi-label is {cfg.data.multi_label}")
    else:
        extra.update(num_frames=cfg.data.num_frames, frame_interval=cfg.data.frame_interval)
        crop = cfg.data.crop_size or input_size
    if cfg.data.keyframe_sampling and extra.get("sampling", info.default_sampling) != SAMPLING_SEGMENTS:
        raise TrainError(f"--keyframe-sampling needs segment (TSN-style) sampling; {cfg.model.arch} samples "
                         f"{extra.get('sampling', info.default_sampling)} clips")
    if crop < input_size:
        raise TrainError(f"crop size {crop} is smaller than the input size {input_size}: the student is meant "
                         "to see a down-sampled crop")
    spec = ModelSpec(arch=cfg.model.arch, class_names=tuple(class_names), input_size=input_size, crop_size=crop,
                     resize_short=round(crop * EVAL_RESIZE_RATIO), multi_label=cfg.data.multi_label,
                     keyframe_sampling=cfg.data.keyframe_sampling, **extra)
    if teacher_spec is not None and teacher_spec.num_classes != spec.num_classes:
        raise TrainError(f"teacher {cfg.distill.teacher} has {teacher_spec.num_classes} classes, the data has "
                         f"{spec.num_classes}: give --classes with the teacher's classes")
    return spec, teacher_spec


def class_names_for(cfg: TrainConfig) -> list[str]:
    """classes.txt's names (checked against the teacher's order), the teacher's, or 0..K-1 from the labels."""
    if cfg.data.unlabelled and not cfg.data.classes:
        return list(spec_from_checkpoint(str(cfg.distill.teacher)).class_names)  # no labels: the teacher's classes
    lists = [] if cfg.data.unlabelled else [parse_list(cfg.data.train_list, cfg.data.data_root, check_files=False)]
    if cfg.data.val_list:
        lists.append(parse_list(cfg.data.val_list, cfg.data.data_root, check_files=False))
    if cfg.data.classes:
        names = infer_class_names(lists, cfg.data.classes)
        if cfg.distill.teacher:
            check_class_order(names, cfg.data.classes, cfg.distill.teacher)
        return names
    if cfg.distill.teacher:
        return list(spec_from_checkpoint(cfg.distill.teacher).class_names)
    return infer_class_names(lists)


def check_class_order(names: list[str], classes_file: str, teacher: str) -> None:
    """The student's classes must be the teacher's, in the same order (logit KD and --init-from-teacher
    match classes by index)."""
    teacher_names = list(spec_from_checkpoint(teacher).class_names)
    if names != teacher_names:
        pairs = zip(names, teacher_names, strict=False)
        at = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(names), len(teacher_names)))
        mine = names[at] if at < len(names) else "(none)"
        theirs = teacher_names[at] if at < len(teacher_names) else "(none)"
        raise TrainError(f"{classes_file}: class names differ from the teacher's ({teacher}): at line {at + 1} "
                         f"{mine!r} vs {theirs!r}; give the teacher's classes in the teacher's order")


def init_student(model: nn.Module, cfg: TrainConfig, teacher: nn.Module | None) -> None:
    m = cfg.model
    chosen = [n for n, on in (("--weights", bool(m.weights)), ("--init-from-teacher", m.init_from_teacher),
                              ("--pretrained-imagenet", m.pretrained_imagenet)) if on]
    if len(chosen) > 1:
        raise TrainError(f"choose one initialization, got {' and '.join(chosen)}")
    if cfg.model.weights:
        load_pretrained_weights(model, cfg.model.weights)
    elif cfg.model.init_from_teacher:
        if teacher is None:
            raise TrainError("--init-from-teacher needs --teacher")
        teacher_arch = spec_from_checkpoint(str(cfg.distill.teacher)).arch
        if teacher_arch != cfg.model.arch:
            raise TrainError(f"--init-from-teacher needs the same architecture (teacher {teacher_arch}, "
                             f"student {cfg.model.arch})")
        model.load_state_dict(teacher.state_dict(), strict=True)
    elif cfg.model.pretrained_imagenet:
        if cfg.model.arch not in IMAGENET_ARCHS:
            raise TrainError(f"--pretrained-imagenet is only available for {' and '.join(IMAGENET_ARCHS)}, "
                             f"not {cfg.model.arch}")

        load_imagenet_weights(model)  # type: ignore[arg-type]
    set_bn_momentum(model, cfg.effective_bn_momentum())


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Set every BatchNorm's momentum (0 keeps the architecture's own)."""
    if momentum <= 0:
        return
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


@torch.no_grad()
def precise_bn(model: nn.Module, batches: Iterable[torch.Tensor], num_batches: int) -> int:
    """Re-estimate every BatchNorm's running statistics as a plain average over ``num_batches`` (shuffled)
    training batches at the student's resolution, stochastic depth off; returns the batches used.

    The batches must be shuffled: averaging per-batch variances of batches that each hold one shot
    under-estimates the variance (the spread between batches is lost)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in bns]
    drops = [(b, b.drop_connect) for b in model.modules() if hasattr(b, "drop_connect")]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    for b, _ in drops:
        b.drop_connect = 0.0
    was_training = model.training
    model.train()
    used = 0
    for x in batches:
        if used >= num_batches:
            break
        model.forward_features(x)
        used += 1
    model.train(was_training)
    for b, rate in drops:
        b.drop_connect = rate
    for m, momentum in saved:
        m.momentum = momentum
    return used


class FeaturesAndLogits(nn.Module):
    """``x -> (feature map, logits)`` in one forward, so DDP sees (and syncs) every parameter it uses.

    ``head`` False: the logits are not computed (None), for an objective that never reads them (unlabelled
    training without logit KD); the classifier's dropout then draws no random numbers either."""

    def __init__(self, model: nn.Module, head: bool = True):
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.model.forward_features(x)
        return features, self.model.forward_head(features) if self.head else None


# ---- the run -----------------------------------------------------------------------------------------
@dataclass
class Run:
    """Everything a run sets up once; the loop only reads it (and advances ``state``)."""

    cfg: TrainConfig
    d: DistInfo
    device: torch.device
    spec: ModelSpec
    train_set: TrainClipDataset | CachedBatches
    val_set: EvalClipDataset | None
    loader: DataLoader | CachedBatches
    sampler: DistributedSampler | None
    model: nn.Module  # the bare student
    net: nn.Module  # what the step calls: FeaturesAndLogits, DDP-wrapped under torchrun
    distiller: Distiller
    state: TrainState
    work: Path
    logit_scale: float | None = None  # unlabelled runs: the student's calibrated logit scale

    @property
    def use_amp(self) -> bool:
        return self.cfg.optim.amp and self.device.type == "cuda"

    def student_input(self, crops: torch.Tensor) -> torch.Tensor:
        return model_input(crops, self.spec)

    def banner(self) -> str:
        val = f", {len(self.val_set)} val clips" if self.val_set is not None else ""
        world = f" x {self.d.world} processes" if self.d.enabled else ""
        kind = "unlabelled " if not self.distiller.labelled else ""
        return (f"reskd-train: {self.cfg.model.arch} @ {self.spec.input_size}px (crop {self.spec.crop_size}) on "
                f"{self.device}{world}; {self.train_size()} {kind}train clips{val}, {self.spec.num_classes} "
                f"classes, {self.spec.num_frames} frames{' (keyframe sampling)' * self.spec.keyframe_sampling}; "
                f"{self.distiller.banner()}; {self.cfg.optim.epochs} epochs from epoch "
                f"{self.state.epoch}")

    def train_size(self) -> int:
        return self.train_set.size if isinstance(self.train_set, CachedBatches) else len(self.train_set)


def setup_run(cfg: TrainConfig, d: DistInfo, device: torch.device) -> Run:
    """Data, specs, models, the distiller, the optimizer and the (possibly resumed) state."""
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    work = Path(cfg.run.work_dir)
    spec, teacher_spec = build_specs(cfg, class_names_for(cfg))
    train_set, val_set = datasets(cfg, d, spec, work)
    teacher = load_teacher(cfg.distill.teacher, device)[0] if cfg.distill.teacher else None
    model = build_student(cfg, spec, teacher, d, work)
    model.to(device).train()
    net: nn.Module = FeaturesAndLogits(model)
    if d.enabled:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = DistributedSampler(train_set, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.run.seed,
                                 drop_last=True) if d.enabled else None
    gen = torch.Generator().manual_seed(cfg.run.seed)
    loader = ListLoader(train_set, batch_size=cfg.optim.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.data.workers,
                        # Drop a ragged last batch (BatchNorm dislikes tiny batches) unless it is the only one.
                        drop_last=len(train_set) // d.world > cfg.optim.batch_size,
                        pin_memory=device.type == "cuda", generator=gen if sampler is None else None,
                        persistent_workers=False)
    steps_per_epoch = max(1, len(loader))
    distiller = build_distiller(cfg, model, teacher, teacher_spec, steps_per_epoch)
    state = build_state(cfg, model, device, gen, steps_per_epoch)
    run = Run(cfg, d, device, spec, train_set, val_set, loader, sampler, model, net, distiller, state, work)
    if cfg.data.unlabelled:
        run.logit_scale = unlabelled_logit_scale(run)
    if cfg.run.resume:
        state.load(work / STATE_FILE)
    return run


def datasets(cfg: TrainConfig, d: DistInfo, spec: ModelSpec, work: Path) -> tuple[TrainClipDataset,
                                                                                  EvalClipDataset | None]:
    """The training set (its unreadable clips logged to bad_clips.txt and replaced) and the validation set."""
    labelled = not cfg.data.unlabelled
    bad_clips = BadClipLog(work / BAD_CLIPS_FILE,
                           len(parse_list(cfg.train_source, cfg.data.data_root, check_files=False, labelled=labelled)),
                           cfg.data.max_bad_clips)
    if d.is_main:
        prepare_work_dir(work)
        if not cfg.run.resume:
            bad_clips.path.unlink(missing_ok=True)
    train_set = TrainClipDataset(cfg.train_source, cfg.data.data_root, spec, seed=cfg.run.seed, flip=cfg.data.flip,
                                 bad_clips=bad_clips, labelled=labelled)
    val_set = EvalClipDataset(cfg.data.val_list, cfg.data.data_root, spec) if cfg.data.val_list else None
    if cfg.data.check_clips and d.is_main:
        check_clips(train_set, bad_clips, val_set, workers=cfg.data.workers, progress=cfg.log.progress)
    return train_set, val_set


def build_student(cfg: TrainConfig, spec: ModelSpec, teacher: nn.Module | None, d: DistInfo, work: Path) -> nn.Module:
    """The student, initialised as ``cfg`` says (its classifier frozen with ``freeze_head``)."""
    model = build_model(spec)
    init_student(model, cfg, teacher)
    if d.is_main:
        prepare_work_dir(work, checkpoint_bytes(model))  # fail now, not when the first epoch ends
    if cfg.model.freeze_head:
        model.classifier().requires_grad_(False)  # left out of the optimizer (param_groups skips it)
    return model


def build_state(cfg: TrainConfig, model: nn.Module, device: torch.device, gen: torch.Generator,
                steps_per_epoch: int) -> TrainState:
    """SGD over ``param_groups``, the warm-up/cosine schedule over every epoch's steps, the AMP scaler."""
    total_steps = steps_per_epoch * cfg.optim.epochs
    o = cfg.optim
    optimizer = torch.optim.SGD(param_groups(model, o.weight_decay), lr=o.lr, momentum=o.momentum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(total_steps, int(round(o.warmup_epochs * steps_per_epoch))))
    scaler = torch.amp.GradScaler("cuda", enabled=o.amp and device.type == "cuda")
    return TrainState(model, optimizer, scheduler, scaler, gen, total_steps)


def unlabelled_logit_scale(run: Run) -> float:
    """A fresh unlabelled run calibrates the student's logit scale over one pass of its training clips (epoch
    0's crops, in list order); a resumed one reads the scale its first part applied from last.ckpt.

    Under DDP rank 0 alone makes the pass and the others apply the scale it sends: every rank would find the same
    scale at world-size times the cost, and a rank that found another would fail the epoch's weight check."""
    cfg = run.cfg
    if not cfg.distill.logit_calibration:
        return 1.0
    if cfg.run.resume:
        return recorded_logit_scale(run.work)
    scale = 0.0
    if run.d.is_main:
        loader = ListLoader(run.train_set, batch_size=cfg.optim.batch_size, shuffle=False,
                            num_workers=cfg.data.workers, generator=torch.Generator().manual_seed(cfg.run.seed))
        batches = ((run.student_input(c.to(run.device)), run.distiller.teacher_outputs(c.to(run.device)).logits)
                   for c, _ in tqdm(loader, desc="calibrating the logit scale", leave=False, disable=not cfg.log.progress))
        scale = calibrate_logit_scale(run.model, batches)
    scale = run.d.broadcast_float(scale, run.device)
    if not run.d.is_main:
        scale_classifier(run.model, scale)
    run.model.train()
    return scale


def cached_logit_scale(cfg: TrainConfig, model: nn.Module, spec: ModelSpec, calibration: CachedViews,
                       work: Path) -> float:
    """:func:`unlabelled_logit_scale` on cached frames: fitted on ``calibration``'s frames and teacher logits
    (batches of :data:`CALIBRATION_BATCH`), or read back when resuming."""
    if not cfg.distill.logit_calibration:
        return 1.0
    if cfg.run.resume:
        return recorded_logit_scale(work)
    crops, n = calibration.crops, CALIBRATION_BATCH
    return calibrate_logit_scale(model, ((model_input(as_clips(crops[i:i + n].float()), spec),
                                          calibration.logits[i:i + n]) for i in range(0, len(crops), n)))


def recorded_logit_scale(work: Path) -> float:
    """The logit scale a run's first part applied (its last checkpoint's provenance)."""
    return float(spec_from_checkpoint(str(work / "last.ckpt")).provenance.get("logit_scale", 1.0))


def train_cached(cfg: TrainConfig, spec: ModelSpec, teacher_spec: ModelSpec, views: Sequence[CachedViews],
                 calibration: CachedViews | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Unlabelled training on cached teacher outputs: the trainer's loop on the frames of ``views`` (epoch
    ``e`` on ``views[e % len(views)]``), one process, no validation list; returns the trained student (eval
    mode) and :func:`train`'s result plus ``logit_scale`` and ``epochs`` (every epoch's record).

    ``spec`` is the student's (its ``crop_size`` the frames'), ``teacher_spec`` the teacher's that cached
    ``views``. ``calibration``: the frames and teacher logits the logit scale is fitted on (default
    ``views[0]``), when ``cfg.distill.logit_calibration``.
    """
    cfg = resolve_options(cfg, unlabelled=True)
    d = DistInfo(rank=0, world=1, local_rank=0)  # one process: the cached frames live in this one
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if cfg.run.device == "auto" else cfg.run.device)
    with restored_global_flags():
        return _train_cached(cfg, d, device, spec, teacher_spec, views, calibration)


def _train_cached(cfg: TrainConfig, d: DistInfo, device: torch.device, spec: ModelSpec, teacher_spec: ModelSpec,
                  views: Sequence[CachedViews], calibration: CachedViews | None) -> tuple[nn.Module, dict[str, Any]]:
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    work = Path(cfg.run.work_dir)
    if d.is_main:
        prepare_work_dir(work)
    model = build_student(cfg, spec, None, d, work)
    gen = torch.Generator().manual_seed(cfg.run.seed)
    loader = CachedBatches(views, cfg.optim.batch_size, gen)
    scale = cached_logit_scale(cfg, model, spec, calibration or views[0], work)
    model.to(device).train()
    width = views[0].features.shape[1] if views[0].features is not None else model.feature_dim
    distiller = build_distiller(cfg, model, None, teacher_spec, len(loader), teacher_width=width)
    if not distiller.active:
        raise TrainError("nothing to distil: give the feature term the teacher's maps or logit KD a weight")
    if distiller.loss_fn.kd_weight != 0 and any(v.features is None for v in views):
        raise ValueError("the feature term needs the teacher's maps (give them, or a feature weight of 0)")
    state = build_state(cfg, model, device, gen, len(loader))
    net = FeaturesAndLogits(model, head=distiller.loss_fn.logit_weight > 0)
    run = Run(cfg, d, device, spec, loader, None, loader, None, model, net, distiller, state, work, logit_scale=scale)
    if cfg.run.resume:
        state.load(work / STATE_FILE)
    result = _train(run)
    return model.eval(), {**result, "logit_scale": scale}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train as ``cfg`` says; returns ``{"best": path, "last": path, "metrics": {...}, "work_dir": path}``.

    ``metrics`` are the best evaluation's (``{"top1","top5"}`` or ``{"mAP"}``, plus
    ``epoch``), or empty without a validation list. Under ``torchrun`` every rank
    calls this; only rank 0 writes files, every rank returns the same paths.
    """
    cfg = resolve_config(cfg)
    d, device = init_distributed(cfg.run.device)
    try:
        with restored_global_flags():
            return _train(setup_run(cfg, d, device))
    finally:
        if d.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


@contextmanager
def restored_global_flags() -> Iterator[None]:
    """--deterministic switches global torch flags: put them back afterwards (a run may sit inside a larger program)."""
    saved_flags = (torch.are_deterministic_algorithms_enabled(),
                   torch.is_deterministic_algorithms_warn_only_enabled(),
                   torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved_flags[0], warn_only=saved_flags[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved_flags[2], saved_flags[3]


def _train(run: Run) -> dict[str, Any]:
    cfg, d = run.cfg, run.d
    if d.is_main:
        run.work.mkdir(parents=True, exist_ok=True)
        if not cfg.run.resume:
            (run.work / METRICS_FILE).unlink(missing_ok=True)
        else:  # a run killed after logging an epoch but before saving its state redoes that epoch
            trim_log(run.work / METRICS_FILE, run.state.epoch)
        config_text = json.dumps(cfg.to_dict(), indent=2, default=str) + "\n"
        atomic_write(run.work / "config.json", lambda tmp: Path(tmp).write_text(config_text))
        print(run.banner(), file=sys.stderr, flush=True)
    # The imbalance warning weighs distillation against the task loss: an unlabelled run has none.
    monitor = ImbalanceMonitor(min(IMBALANCE_CHECK_STEP, run.state.total_steps),
                               active=run.distiller.active and run.distiller.labelled)
    guard = DivergenceGuard(run.spec.num_classes, active=cfg.run.divergence_guard and run.distiller.labelled
                            and not run.spec.multi_label)
    end_epoch = min(cfg.optim.epochs, cfg.run.stop_after_epoch) if cfg.run.stop_after_epoch else cfg.optim.epochs
    records: list[dict[str, Any]] = []
    for epoch in range(run.state.epoch, end_epoch):
        stats, steps = train_one_epoch(run, epoch, guard)
        check_divergence(run, guard, epoch)
        monitor.observe(steps, d.is_main)
        if cfg.model.precise_bn > 0 and epoch + 1 == cfg.optim.epochs:
            precise_bn(run.model, (run.student_input(c.to(run.device)) for c, _ in run.loader), cfg.model.precise_bn)
        record: dict[str, Any] = {"epoch": epoch + 1, **stats, **sync_ranks(run, epoch)}
        metrics = evaluate_epoch(run, epoch)
        record.update({f"val_{k}": v for k, v in metrics.items()})
        run.state.epoch = epoch + 1
        improved = run.state.record_eval(primary_metric(metrics), metrics) if metrics else False
        if d.is_main:
            save_epoch(run, record, steps, metrics, improved, monitor)
        d.barrier()
        records.append({**record, "steps": steps})
    return {"best": str(run.work / "best.ckpt"), "last": str(run.work / "last.ckpt"),
            "metrics": run.state.best_metrics, "work_dir": str(run.work), "spec": run.spec.to_dict(),
            "epochs_done": end_epoch, "epochs": records}


def train_one_epoch(run: Run, epoch: int, guard: DivergenceGuard | None = None,
                    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One pass over the training data; the epoch's mean loss parts and its per-step records (each one fed to
    ``guard``)."""

    cfg = run.cfg
    run.train_set.set_epoch(epoch)
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    run.net.train()
    if cfg.model.freeze_bn:
        freeze_batchnorm(run.model)
    totals = {"loss": 0.0, "task": 0.0, "kd": 0.0}
    steps: list[dict[str, Any]] = []
    seen = 0
    start = time.time()
    bar = tqdm(run.loader, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
               disable=not (run.d.is_main and cfg.log.progress),
               leave=False, dynamic_ncols=True)
    for crops, target in bar:
        record = train_step(run, crops.to(run.device, non_blocking=True), to_device(target, run.device))
        record = {"step": epoch * len(run.loader) + len(steps) + 1, "epoch": epoch + 1, **record}
        steps.append(record)
        if guard is not None:
            guard.observe(record)
        n = int(crops.shape[0])
        seen += n
        for key in totals:
            totals[key] += record[key] * n
        bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
    bar.close()
    if seen == 0:
        raise DatasetError(f"{cfg.train_source}: no training batch (fewer samples than --batch-size per process?)")
    out: dict[str, Any] = {k: v / seen for k, v in totals.items()}
    out.update(lr=steps[-1]["lr"], clip=round(statistics.fmean(r["clip"] for r in steps), 4),
               time_s=round(time.time() - start, 3), samples=seen)
    every = cfg.log.log_every
    return out, [r for r in steps if every and r["step"] % every == 0]


def train_step(run: Run, crops: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    """Forward, loss, backward, clip, optimizer and schedule step; the step's record for metrics.jsonl."""
    state = run.state
    autocast = torch.autocast("cuda", dtype=torch.float16) if run.use_amp else nullcontext()
    with autocast:
        features, logits = run.net(run.student_input(crops))
        loss, parts = run.distiller(run.model, features, logits, crops, target, step=state.scheduler.last_epoch)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    state.scaler.unscale_(state.optimizer)
    clip, clip_head = clip_gradients(run.model, run.cfg.optim.clip_grad, run.cfg.optim.clip_mode)
    lr = state.optimizer.param_groups[0]["lr"]  # the rate this step used (logged)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    ratio = round(parts["kd"] / max(parts["task"], 1e-8), 4) if run.distiller.labelled else None  # no task: no ratio
    return {"loss": float(loss.detach()), "task": parts["task"], "kd": parts["kd"], "kd_ratio": ratio,
            "clip": round(clip, 4),
            "clip_head": round(clip_head, 4), "lr": lr, **{k: v for k, v in parts.items() if k.startswith("kd_")}}


def check_divergence(run: Run, guard: DivergenceGuard, epoch: int) -> None:
    """After an epoch: raise TrainingDivergedError (before anything of the epoch is saved) when the guard fired.
    Ranks see different batches, so rank 0's guard decides for all of them (no rank is left waiting)."""
    if not guard.active or not run.d.broadcast_float(float(guard.reason is not None), run.device):
        return
    kept = f"last.ckpt is epoch {epoch}'s" if epoch else "no checkpoint was written"
    raise TrainingDivergedError(f"{run.work}: training diverged in epoch {epoch + 1}/{run.cfg.optim.epochs} "
                                f"({guard.reason or 'on rank 0'}); nothing of this epoch was saved ({kept}). "
                                "Lower --lr, or pass --no-divergence-guard to train on")


def to_device(target: torch.Tensor | TeacherOutputs, device: torch.device) -> torch.Tensor | TeacherOutputs:
    """A batch's labels, or its cached teacher outputs, on ``device``."""
    if isinstance(target, TeacherOutputs):
        return TeacherOutputs(*(None if t is None else t.to(device, non_blocking=True) for t in target))
    return target.to(device, non_blocking=True)


def sync_ranks(run: Run, epoch: int) -> dict[str, Any]:
    """Under DDP: rank 0's BatchNorm statistics everywhere, then a check that every rank holds the same weights."""
    if not run.d.enabled:
        return {}
    # Parameters must already agree bit for bit (DDP all-reduces gradients and nothing else moves them);
    # BatchNorm running statistics are per rank: take rank 0's. Then check every rank holds the same
    # weights: a cheap guard against silent divergence (a rank skipping a step, unsynced state).
    model = run.model
    params = weights_digest(dict(model.named_parameters()))
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
    digests: list[Any] = [None] * run.d.world
    dist.all_gather_object(digests, (params, weights_digest(model.state_dict())))
    if len(set(digests)) != 1:
        raise TrainError(f"epoch {epoch + 1}: the {run.d.world} ranks' weights differ after synchronization "
                         f"(parameter and state digests per rank: {digests})")
    return {"rank_param_sha256": [p for p, _ in digests], "rank_state_sha256": [s for _, s in digests]}


def evaluate_epoch(run: Run, epoch: int) -> dict[str, Any]:
    """Validation metrics every --eval-every epochs and after the last; {} otherwise."""
    cfg = run.cfg
    if run.val_set is None or not ((epoch + 1) % max(1, cfg.run.eval_every) == 0 or epoch + 1 == cfg.optim.epochs):
        return {}
    batch = cfg.run.eval_batch_size or cfg.optim.batch_size
    probs, targets = predict_dataset(run.model, run.val_set, run.device, batch, cfg.data.workers, run.d)
    return classification_metrics(probs, targets, run.spec.multi_label)


def save_epoch(run: Run, record: dict[str, Any], steps: list[dict[str, Any]], metrics: dict[str, Any],
               improved: bool, monitor: ImbalanceMonitor) -> None:
    """Rank 0: last/best checkpoints, metrics.jsonl, the epoch line, the resumable state."""
    epoch = run.state.epoch
    prov = provenance(run, {**metrics, "epoch": epoch} if metrics else {}, epoch)
    if monitor.first:
        prov["kd_start"] = monitor.first
    out_spec = run.spec.replace(provenance=prov)
    save_checkpoint(run.model, out_spec, run.work / "last.ckpt")
    if improved or run.val_set is None:
        save_checkpoint(run.model, out_spec, run.work / "best.ckpt")
    with open(run.work / METRICS_FILE, "a", encoding="utf-8") as fh:
        for line in (*steps, record):
            fh.write(json.dumps(line) + "\n")
    # One line per epoch on stderr, with or without --progress (stdout stays for the command's JSON result).
    shown = {k: v for k, v in record.items() if k in ("loss", "task", "kd", "clip", "lr") or k.startswith("val_")}
    print(f"epoch {epoch}/{run.cfg.optim.epochs} " + " ".join(f"{k} {v:.4g}" for k, v in shown.items()),
          file=sys.stderr, flush=True)
    run.state.save(run.work / STATE_FILE)


def provenance(run: Run, metrics: dict[str, Any], epoch: int) -> dict[str, Any]:
    """The checkpoint spec's record of how it was trained (the objective and its settings included)."""
    cfg = run.cfg
    prov: dict[str, Any] = {
        "trained_by": "reskd-train",
        "mode": mode_name(run),
        "dataset": cfg.log.dataset or Path(cfg.train_source).name,
        "train_list": str(cfg.train_source),
        "val_list": str(cfg.data.val_list) if cfg.data.val_list else None,
        "epochs": cfg.optim.epochs,
        "epoch": epoch,
        "seed": cfg.run.seed,
        "lr": cfg.optim.lr,
        "batch_size": cfg.optim.batch_size,
        "metrics": metrics,
        "versions": library_versions("torch", "torchvision", "av"),
        "decoder": DECODER_NAME,
        "init": ("imagenet" if cfg.model.pretrained_imagenet else str(cfg.model.weights) if cfg.model.weights
                 else "teacher" if cfg.model.init_from_teacher else "random"),
        "bn_momentum": cfg.effective_bn_momentum() or None,
        "flip": cfg.data.flip,
        "precise_bn": cfg.model.precise_bn,
        **run.distiller.provenance(cfg),
    }
    if not run.distiller.labelled:
        prov.update(unlabelled_provenance(run))
    prov.update(cfg.log.extra_provenance)
    return prov


def mode_name(run: Run) -> str:
    """How the run learnt: "unlabelled" (the teacher's outputs only), "reskd", "plain" or "supervised"."""
    if run.distiller.active:
        return "reskd" if run.distiller.labelled else "unlabelled"
    return "plain" if run.cfg.distill.no_kd else "supervised"


def unlabelled_provenance(run: Run) -> dict[str, Any]:
    """What an unlabelled run adds: the digests of its teacher file and list, the student's logit scale, the
    BatchNorm and classifier treatment."""
    cfg = run.cfg
    return {"unlabelled_list": cfg.data.unlabelled or None,
            "unlabelled_list_sha256": file_sha256(cfg.data.unlabelled) if cfg.data.unlabelled else None,
            "teacher_sha256": file_sha256(cfg.distill.teacher) if cfg.distill.teacher else None,
            "logit_scale": run.logit_scale, "logit_calibration": cfg.distill.logit_calibration,
            "freeze_bn": cfg.model.freeze_bn, "freeze_head": cfg.model.freeze_head}
