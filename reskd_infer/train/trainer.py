"""The trainer: teachers, ResKD students and plain low-resolution baselines, on one CPU or many GPUs.

One loop serves the three modes:

* teacher / plain supervised training (no ``teacher``): the task loss on the model's logits;
* ResKD (``teacher`` = a reskd checkpoint): the teacher (frozen, eval mode, no gradient)
  sees each training crop at its own resolution, the student sees the same crop
  bilinearly down-sampled, and the loss adds ``w_kd`` x the feature-map MSE (or the
  dense logit-map KL when the widths differ), see :mod:`reskd_infer.train.losses`;
* the plain baseline (``no_kd``): like ResKD's data pipeline, without the teacher.

Distributed data parallel runs when launched by ``torchrun`` (``WORLD_SIZE`` > 1):
NCCL on GPUs, Gloo on CPUs, a :class:`~torch.utils.data.DistributedSampler`, and
rank 0 alone logs and writes files. ``batch_size`` is per process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..checkpoint import atomic_write, load_checkpoint, save_checkpoint, spec_from_checkpoint
from ..errors import CheckpointError, DatasetError, ReskdError
from ..models import build_model, get_arch_info, load_pretrained_weights
from ..spec import EVAL_RESIZE_RATIO, ModelSpec, library_versions
from ..video import DECODER_NAME
from ..video.preprocess import normalize, to_model_resolution
from .data import (
    BAD_CLIPS_FILE,
    BadClipLog,
    EvalClipDataset,
    ListLoader,
    TrainClipDataset,
    check_clips,
    infer_class_names,
    parse_list,
)
from .losses import KD_MODES, ResKDLoss, resolve_kd_mode
from .metrics import classification_metrics
from .workdir import checkpoint_bytes, prepare_work_dir, trim_log

STATE_FILE = "train_state.pt"  # resume state: model, optimizer, scheduler, scaler, epoch, RNG
METRICS_FILE = "metrics.jsonl"


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
    data_root: str | None = None
    classes: str | None = None
    input_size: int = 0
    num_frames: int = 0
    frame_interval: int = 0
    crop_size: int = 0
    epochs: int = 30
    batch_size: int = 8
    eval_batch_size: int = 0  # 0: same as batch_size
    lr: float = 0.01
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    clip_grad: float = 20.0
    w_kd: float = 100.0
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


# ---- distributed helpers ---------------------------------------------------------------------------
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_request: str) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_request in ("auto", "cuda") or device_request.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise TrainError(f"--device {device_request}: CUDA is not available here")
    if use_cuda:
        device = torch.device("cuda", local_rank) if device_request in ("auto", "cuda") else torch.device(device_request)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    info = _Dist(rank=rank, world=world, local_rank=local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        info.initialized_here = True
    return info, device


def _barrier(d: _Dist) -> None:
    if d.enabled:
        dist.barrier()


# ---- schedule and optimizer ------------------------------------------------------------------------
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


# ---- random state (weights_only-loadable) ----------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # numpy's state holds an ndarray, which weights_only loading refuses: store it as a tensor.
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


# ---- specs -----------------------------------------------------------------------------------------
def build_specs(cfg: TrainConfig, class_names: list[str]) -> tuple[ModelSpec, ModelSpec | None]:
    """The student's (or teacher-in-training's) spec and, with KD, the teacher's spec."""
    teacher_spec = None
    if cfg.teacher:
        teacher_spec = spec_from_checkpoint(cfg.teacher)
    info = get_arch_info(cfg.arch)
    input_size = cfg.input_size or info.default_input_size
    extra: dict[str, Any] = {}
    if teacher_spec is not None:
        # The student sees the teacher's frames: same count and sampling, same crop.
        if cfg.num_frames and cfg.num_frames != teacher_spec.num_frames:
            raise TrainError(f"--num-frames {cfg.num_frames} differs from the teacher's {teacher_spec.num_frames} "
                             f"({cfg.teacher}): the student must see the teacher's frames")
        extra.update(num_frames=teacher_spec.num_frames, sampling=teacher_spec.sampling,
                     frame_interval=teacher_spec.frame_interval)
        crop = cfg.crop_size or teacher_spec.input_size
        if teacher_spec.multi_label != cfg.multi_label:
            raise TrainError(f"teacher {cfg.teacher} is {'multi' if teacher_spec.multi_label else 'single'}-label "
                             f"but --multi-label is {cfg.multi_label}")
    else:
        extra.update(num_frames=cfg.num_frames, frame_interval=cfg.frame_interval)
        crop = cfg.crop_size or input_size
    if crop < input_size:
        raise TrainError(f"crop size {crop} is smaller than the input size {input_size}: the student is meant "
                         "to see a down-sampled crop")
    spec = ModelSpec(arch=cfg.arch, class_names=tuple(class_names), input_size=input_size, crop_size=crop,
                     resize_short=round(crop * EVAL_RESIZE_RATIO), multi_label=cfg.multi_label, **extra)
    if teacher_spec is not None and teacher_spec.num_classes != spec.num_classes:
        raise TrainError(f"teacher {cfg.teacher} has {teacher_spec.num_classes} classes, the data has "
                         f"{spec.num_classes}: give --classes with the teacher's classes")
    return spec, teacher_spec


def _provenance(cfg: TrainConfig, spec: ModelSpec, teacher_spec: ModelSpec | None, kd_mode: str | None,
                metrics: dict[str, Any], epoch: int) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "trained_by": "reskd-train",
        "mode": "reskd" if kd_mode else ("plain" if cfg.no_kd else "supervised"),
        "dataset": cfg.dataset or Path(cfg.train_list).name,
        "train_list": str(cfg.train_list),
        "val_list": str(cfg.val_list) if cfg.val_list else None,
        "epochs": cfg.epochs,
        "epoch": epoch,
        "seed": cfg.seed,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "metrics": metrics,
        "versions": library_versions("torch", "torchvision", "av"),
        "decoder": DECODER_NAME,
        "init": ("imagenet" if cfg.pretrained_imagenet else str(cfg.weights) if cfg.weights
                 else "teacher" if cfg.init_from_teacher else "random"),
    }
    if teacher_spec is not None and kd_mode:
        prov.update(teacher={"arch": teacher_spec.arch, "checkpoint": str(cfg.teacher),
                             "input_size": teacher_spec.input_size},
                    teacher_arch=teacher_spec.arch, teacher_input_size=teacher_spec.input_size,
                    w_kd=cfg.w_kd, kd_mode=kd_mode, temperature=cfg.temperature)
    prov.update(cfg.extra_provenance)
    return prov


# ---- model wrapper ---------------------------------------------------------------------------------
class FeaturesAndLogits(nn.Module):
    """``x -> (feature map, logits)`` in one forward, so DDP sees (and syncs) every parameter it uses."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(x)
        return features, self.model.forward_head(features)


def _init_student(model: nn.Module, cfg: TrainConfig, teacher_model: nn.Module | None,
                  teacher_spec: ModelSpec | None) -> None:
    chosen = [n for n, on in (("--weights", bool(cfg.weights)), ("--init-from-teacher", cfg.init_from_teacher),
                              ("--pretrained-imagenet", cfg.pretrained_imagenet)) if on]
    if len(chosen) > 1:
        raise TrainError(f"choose one initialization, got {' and '.join(chosen)}")
    if cfg.weights:
        load_pretrained_weights(model, cfg.weights)
    elif cfg.init_from_teacher:
        if teacher_spec is None or teacher_model is None:
            raise TrainError("--init-from-teacher needs --teacher")
        if teacher_spec.arch != cfg.arch:
            raise TrainError(f"--init-from-teacher needs the same architecture (teacher {teacher_spec.arch}, "
                             f"student {cfg.arch})")
        model.load_state_dict(teacher_model.state_dict(), strict=True)
    elif cfg.pretrained_imagenet:
        if cfg.arch != "tsn_effnet_lite0":
            raise TrainError(f"--pretrained-imagenet is only available for tsn_effnet_lite0, not {cfg.arch}")
        from ..models.efficientnet_lite import load_imagenet_weights

        load_imagenet_weights(model)  # type: ignore[arg-type]


# ---- evaluation ------------------------------------------------------------------------------------
class _ShardSampler(Sampler[int]):
    """Rank r evaluates indices r, r + world, ...: every sample exactly once over all ranks."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, base: torch.utils.data.Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        clips, target = self.base[i]
        return i, clips, target


@torch.no_grad()
def _predict_dataset(model: nn.Module, dataset: EvalClipDataset, device: torch.device, batch_size: int,
                     workers: int, d: _Dist | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (averaged over each video's clips, as the Recognizer does) and targets."""
    d = d or _Dist()
    loader = ListLoader(_Indexed(dataset), batch_size=batch_size, shuffle=False, num_workers=workers,
                        sampler=_ShardSampler(len(dataset), d.rank, d.world), persistent_workers=False)
    was_training = model.training
    model.eval()
    rows: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for idx, clips, target in loader:
        n, k = clips.shape[:2]
        logits = model(clips.flatten(0, 1).to(device, non_blocking=True)).float()
        probs = torch.sigmoid(logits) if dataset.spec.multi_label else torch.softmax(logits, dim=-1)
        probs = probs.reshape(n, k, -1).mean(dim=1).cpu()
        rows.extend(zip(idx.tolist(), probs, target, strict=True))
    model.train(was_training)
    if d.enabled:
        gathered: list[Any] = [None] * d.world
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    rows.sort(key=lambda r: r[0])
    return torch.stack([r[1] for r in rows]), torch.stack([r[2] for r in rows])


def evaluate(checkpoint: str | Path, val_list: str | Path, data_root: str | Path | None = None,
             classes: str | Path | None = None, batch_size: int = 8, workers: int = 2,
             device: str = "auto", **views: Any) -> dict[str, float]:
    """Evaluate any artifact on a list file through the Recognizer: see
    :func:`reskd_infer.train.evaluation.evaluate` (``num_clips``, ``three_crop``, ``backend``...)."""
    from .evaluation import evaluate as evaluate_artifact

    return evaluate_artifact(checkpoint, val_list, data_root, classes=classes, batch_size=batch_size,
                             workers=workers, device=device, **views)


# ---- training --------------------------------------------------------------------------------------
def _write_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _save_state(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume from (was the run started in this work dir?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - anything here means the file cannot be trusted
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__}: {exc})") from None


def _primary(metrics: dict[str, Any]) -> float:
    return float(metrics.get("mAP", metrics.get("top1", float("nan"))))


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train as ``cfg`` says; returns ``{"best": path, "last": path, "metrics": {...}, "work_dir": path}``.

    ``metrics`` are the best evaluation's (``{"top1","top5"}`` or ``{"mAP"}``, plus
    ``epoch``), or empty without a validation list. Under ``torchrun`` every rank
    calls this; only rank 0 writes files, every rank returns the same paths.
    """
    if not cfg.train_list:
        raise TrainError("a training list is required (--train-list)")
    if cfg.kd_mode not in KD_MODES:
        raise TrainError(f"--kd-mode must be one of {', '.join(KD_MODES)}, got {cfg.kd_mode!r}")
    if cfg.no_kd and cfg.teacher and not cfg.init_from_teacher:
        raise TrainError("--no-kd with --teacher: the teacher would be unused (drop one; --teacher with "
                         "--init-from-teacher --no-kd only initializes from it)")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise TrainError("--epochs and --batch-size must be at least 1")
    if not 0 <= cfg.max_bad_clips < 1:
        raise TrainError(f"--max-bad-clips must be a fraction in [0, 1), got {cfg.max_bad_clips}")
    d, device = _init_distributed(cfg.device)
    # --deterministic switches global torch flags: put them back afterwards (train() may run inside a larger program).
    saved_flags = (torch.are_deterministic_algorithms_enabled(),
                   torch.is_deterministic_algorithms_warn_only_enabled(),
                   torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        return _train(cfg, d, device)
    finally:
        torch.use_deterministic_algorithms(saved_flags[0], warn_only=saved_flags[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved_flags[2], saved_flags[3]
        if d.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: _Dist, device: torch.device) -> dict[str, Any]:
    work = Path(cfg.work_dir)
    seed_everything(cfg.seed, cfg.deterministic)

    # Data. Class names: classes.txt, the teacher's, or 0..K-1 from the labels.
    train_samples = parse_list(cfg.train_list, cfg.data_root, check_files=False)
    lists = [train_samples]
    if cfg.val_list:
        lists.append(parse_list(cfg.val_list, cfg.data_root, check_files=False))
    if cfg.classes:
        class_names = infer_class_names(lists, cfg.classes)
    elif cfg.teacher:
        class_names = list(spec_from_checkpoint(cfg.teacher).class_names)
    else:
        class_names = infer_class_names(lists)
    spec, teacher_spec = build_specs(cfg, class_names)
    bad_clips = BadClipLog(work / BAD_CLIPS_FILE, len(train_samples), cfg.max_bad_clips)
    if d.is_main:
        prepare_work_dir(work)
        if not cfg.resume:
            bad_clips.path.unlink(missing_ok=True)
    train_set = TrainClipDataset(cfg.train_list, cfg.data_root, spec, seed=cfg.seed, bad_clips=bad_clips)
    val_set = EvalClipDataset(cfg.val_list, cfg.data_root, spec) if cfg.val_list else None
    if cfg.check_clips and d.is_main:
        check_clips(train_set, bad_clips, val_set, workers=cfg.workers, progress=cfg.progress)

    # Models.
    teacher = None
    if cfg.teacher:
        teacher, _ = load_checkpoint(cfg.teacher, map_location=device)
        teacher.eval()  # frozen: fixed BN statistics, no dropout, no gradient
        for p in teacher.parameters():
            p.requires_grad_(False)
    model = build_model(spec)
    kd_mode = None
    if teacher is not None and not cfg.no_kd and cfg.w_kd > 0:
        try:
            kd_mode = resolve_kd_mode(cfg.kd_mode, model.feature_dim, teacher.feature_dim)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
    _init_student(model, cfg, teacher, teacher_spec)
    if kd_mode is None and not cfg.init_from_teacher:
        teacher = None  # not needed any more
    if d.is_main:
        prepare_work_dir(work, checkpoint_bytes(model))  # fail now, not when the first epoch ends
    model.to(device).train()
    net: nn.Module = FeaturesAndLogits(model)
    if d.enabled:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = ResKDLoss(kd_weight=cfg.w_kd, temperature=cfg.temperature, mode=kd_mode or "feature",
                        multi_label=cfg.multi_label)

    sampler = DistributedSampler(train_set, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True) if d.enabled else None
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = ListLoader(train_set, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.workers,
                        # Drop a ragged last batch (BatchNorm dislikes tiny batches) unless it is the only one.
                        drop_last=len(train_set) // d.world > cfg.batch_size,
                        pin_memory=device.type == "cuda", generator=gen if sampler is None else None,
                        persistent_workers=False)
    steps_per_epoch = max(1, len(loader))
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(total_steps, int(round(cfg.warmup_epochs * steps_per_epoch))))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, best_metric, best_metrics = 0, -math.inf, {}
    state_path = work / STATE_FILE
    if cfg.resume:
        state = _load_state(state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"])
        best_metric = float(state["best_metric"])
        best_metrics = dict(state["best_metrics"])
        gen.set_state(state["loader_generator"])
        _set_rng_state(state["rng"])
        if int(state["total_steps"]) != total_steps:
            raise TrainError(f"{state_path}: the run was planned for {state['total_steps']} steps, this "
                             f"configuration gives {total_steps}: resume with the same --epochs and data")
    if d.is_main:
        work.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:
            (work / METRICS_FILE).unlink(missing_ok=True)
        else:
            trim_log(work / METRICS_FILE, start_epoch)
        config_text = json.dumps(cfg.to_dict(), indent=2, default=str) + "\n"
        atomic_write(work / "config.json", lambda tmp: Path(tmp).write_text(config_text))

    last_path, best_path = work / "last.ckpt", work / "best.ckpt"
    end_epoch = min(cfg.epochs, cfg.stop_after_epoch) if cfg.stop_after_epoch else cfg.epochs
    for epoch in range(start_epoch, end_epoch):
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        stats = _train_one_epoch(net, model, teacher, teacher_spec, spec, loader, optimizer, scheduler, scaler,
                                 loss_fn, cfg, device, use_amp, epoch, d)
        record: dict[str, Any] = {"epoch": epoch + 1, **stats}
        if d.enabled:
            # Parameters must already agree bit for bit (DDP all-reduces gradients and nothing else moves them);
            # BatchNorm running statistics are per rank: take rank 0's. Then check every rank holds the same
            # weights: a cheap guard against silent divergence (a rank skipping a step, unsynced state).
            params = state_digest(dict(model.named_parameters()))
            for buf in model.buffers():
                dist.broadcast(buf, src=0)
            digests: list[Any] = [None] * d.world
            dist.all_gather_object(digests, (params, state_digest(model.state_dict())))
            record["rank_param_sha256"] = [p for p, _ in digests]
            record["rank_state_sha256"] = [s for _, s in digests]
            if len(set(digests)) != 1:
                raise TrainError(f"epoch {epoch + 1}: the {d.world} ranks' weights differ after synchronization "
                                 f"(parameter and state digests per rank: {digests})")
        metrics: dict[str, Any] = {}
        is_eval_epoch = val_set is not None and ((epoch + 1) % max(1, cfg.eval_every) == 0 or epoch + 1 == cfg.epochs)
        if is_eval_epoch:
            probs, targets = _predict_dataset(model, val_set, device, cfg.eval_batch_size or cfg.batch_size,
                                              cfg.workers, d)
            metrics = classification_metrics(probs, targets, spec.multi_label)
            record.update({f"val_{k}": v for k, v in metrics.items()})
        if d.is_main:
            improved = bool(metrics) and _primary(metrics) > best_metric
            if improved:
                best_metric, best_metrics = _primary(metrics), {**metrics, "epoch": epoch + 1}
            out_spec = spec.replace(provenance=_provenance(cfg, spec, teacher_spec, kd_mode,
                                                           {**metrics, "epoch": epoch + 1} if metrics else {},
                                                           epoch + 1))
            save_checkpoint(model, out_spec, last_path)
            if improved or (val_set is None):
                save_checkpoint(model, out_spec, best_path)
            _write_jsonl(work / METRICS_FILE, record)
            if cfg.progress:  # one line per epoch on stderr (stdout stays for the command's JSON result)
                shown = {k: v for k, v in record.items() if k in ("loss", "task", "kd", "lr") or k.startswith("val_")}
                print(f"epoch {epoch + 1}/{cfg.epochs} " + " ".join(f"{k} {v:.4g}" for k, v in shown.items()),
                      file=sys.stderr, flush=True)
            _save_state(state_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch + 1,
                "best_metric": best_metric, "best_metrics": best_metrics, "total_steps": total_steps,
                "loader_generator": gen.get_state(), "rng": _rng_state(),
            })
        else:
            if metrics and _primary(metrics) > best_metric:
                best_metric, best_metrics = _primary(metrics), {**metrics, "epoch": epoch + 1}
        _barrier(d)
    return {"best": str(best_path), "last": str(last_path), "metrics": best_metrics, "work_dir": str(work),
            "spec": spec.to_dict(), "epochs_done": end_epoch}


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _train_one_epoch(net: nn.Module, model: nn.Module, teacher: nn.Module | None, teacher_spec: ModelSpec | None,
                     spec: ModelSpec, loader: DataLoader, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
                     loss_fn: ResKDLoss, cfg: TrainConfig, device: torch.device, use_amp: bool, epoch: int,
                     d: _Dist) -> dict[str, float]:
    from tqdm import tqdm

    net.train()
    distill = teacher is not None and loss_fn.kd_weight > 0 and not cfg.no_kd
    totals = {"loss": 0.0, "task": 0.0, "kd": 0.0}
    seen = 0
    lr = optimizer.param_groups[0]["lr"]
    start = time.time()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (d.is_main and cfg.progress),
               leave=False, dynamic_ncols=True)
    autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
    for crops, target in bar:
        crops = crops.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        # Same preprocessing functions as evaluation and the runtime: bilinear down-sampling then normalize.
        student_in = normalize(to_model_resolution(crops, spec.input_size), spec)
        with autocast:
            features, logits = net(student_in)
            teacher_features = None
            if distill:
                with torch.no_grad():
                    teacher_in = normalize(to_model_resolution(crops, teacher_spec.input_size), teacher_spec)
                    teacher_features = teacher.forward_features(teacher_in)
            loss, parts = loss_fn(logits, target, features, teacher_features,
                                  model.classifier() if distill else None,
                                  teacher.classifier() if distill else None)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        lr = optimizer.param_groups[0]["lr"]  # the rate this step used (logged)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        n = int(crops.shape[0])
        seen += n
        totals["loss"] += float(loss.detach()) * n
        totals["task"] += parts["task"] * n
        totals["kd"] += parts["kd"] * n
        if d.is_main and cfg.progress:
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2e}")
    bar.close()
    if seen == 0:
        raise DatasetError(f"{cfg.train_list}: no training batch (fewer samples than --batch-size per process?)")
    out = {k: v / seen for k, v in totals.items()}
    out["lr"] = lr  # of the epoch's last step
    out["time_s"] = round(time.time() - start, 3)
    out["samples"] = seen
    return out
