"""Labelled clips whose class is what moves *and* how: a Fashion-MNIST garment x a motion, over real photographs.

Each clip (8 frames by default, 112 px) shows one real Fashion-MNIST item moving over a crop of a real
photograph (``data/photos``) that pans slowly and carries per-frame grain. The class is garment x motion,
for example ``sandal/clockwise``. The motions come in pairs that are each other's time reversal:

- ``clockwise`` / ``anticlockwise``: the item turns 25-40 degrees per frame while drifting;
- ``approaching`` / ``receding``: the item grows (or shrinks) about twofold while drifting.

The second motion of a pair is rendered as the first one's clip played backwards, so both classes of a
pair have exactly the same distribution of single frames: no frame, nor any order-blind pooling of
frames (TSN's average), tells them apart; only frame order does. The garment pair ``sandal`` /
``sneaker`` differs in straps and holes that blur away at low resolution: the task needs time *and* detail.

Three disjoint splits, disjoint in both item and background: train clips take Fashion-MNIST train images
over ``TRAIN_PHOTOS``; validation and test take disjoint slices of Fashion-MNIST test images, over
``VAL_PHOTOS`` and ``TEST_PHOTOS`` (different photo files; near-duplicate pairs such as ``aero1``/``aero3``
or ``leuvenA``/``leuvenB`` are left out or kept inside one split). Written as H.264 MP4s with lists::

    OUT/classes.txt  OUT/train.txt  OUT/val.txt  OUT/test_fresh.txt  OUT/manifest.json

(the test list carries the protocol's name for a sealed test split, ``benchmarks.protocol.SPLIT_FILES``).

    python -m demo.motion_clips --out clips/ --per-class-train 40 --per-class-val 20 --per-class-test 40
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from demo.assets import DEFAULT_DATA_DIR, FASHION_CLASSES, fashion_mnist, photo
from demo.fashion_clips import _check_request, _plan, _resize
from reskd_infer.errors import DatasetError
from reskd_infer.video.encode import CRF, FPS, write_mp4

DEFAULT_GARMENTS = ("sandal", "sneaker")
# Each forward motion and its time reversal (rendered as the forward clip played backwards).
MOTION_PAIRS = {"clockwise": "anticlockwise", "approaching": "receding"}
REVERSED = {back: fwd for fwd, back in MOTION_PAIRS.items()}
DEFAULT_MOTIONS = ("clockwise", "anticlockwise", "approaching", "receding")
SPLITS = ("train", "val", "test")
LIST_FILES = {"train": "train.txt", "val": "val.txt", "test": "test_fresh.txt"}

# Colour photographs split by file. Pairs of near-duplicates (aero1/aero3, leuvenA/B, graf1/3, aloeL/R,
# left/right, rubberwhale1/2, motorcycle_left/right, scenetext0N) are either unused or inside one split.
TRAIN_PHOTOS = tuple(f"mate/{n}.jpg" for n in (
    "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm", "TwoWings",
    "Wood", "YellowFlower")) + tuple(f"opencv/{n}" for n in (
        "apple.jpg", "board.jpg", "butterfly.jpg", "home.jpg", "messi5.jpg", "orange.jpg", "squirrel_cls.jpg",
        "starry_night.jpg", "stuff.jpg", "leuvenA.jpg", "leuvenB.jpg", "scenetext01.jpg", "scenetext03.jpg"))
VAL_PHOTOS = ("opencv/baboon.jpg", "opencv/building.jpg", "opencv/fruits.jpg", "opencv/smarties.png",
              "skimage/chelsea.png", "sklearn/flower.jpg")
TEST_PHOTOS = ("skimage/astronaut.png", "skimage/coffee.png", "skimage/rocket.jpg", "sklearn/china.jpg",
               "opencv/HappyFish.jpg", "opencv/alphamat_plant.jpg")
SPLIT_PHOTOS = {"train": TRAIN_PHOTOS, "val": VAL_PHOTOS, "test": TEST_PHOTOS}

PAD = 6  # zero border around the 28x28 item so its corners survive rotation (28 + 2 * 6 = 40)
TURN_DEGREES = (25.0, 40.0)  # rotation per frame
ROTATING_SIDES = (44, 60)  # item side (px of its 28 px box) while rotating
APPROACH_SIDES = ((24, 32), (56, 66))  # item side at the far end and at the near end of an approach


def _load_photo(name: str, data_dir: str | Path) -> np.ndarray:
    with Image.open(photo(name, data_dir)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def _photo_background(img: np.ndarray, rng: np.random.Generator, size: int, frames: int) -> np.ndarray:
    """A random crop of a photograph panning slowly in a random direction, with per-frame grain: (T, S, S, 3)."""
    margin = 16
    big = size + 2 * margin
    h, w, _ = img.shape
    side = int(rng.uniform(0.3, 0.7) * min(h, w))
    side = max(min(side, h, w), min(h, w, big))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    tex = _resize(img[y0:y0 + side, x0:x0 + side], big)
    tex = tex * rng.uniform(0.7, 1.1) + rng.uniform(-15, 15)  # exposure jitter
    pan = rng.uniform(-1.0, 1.0, size=2) * (2 * margin) / max(1, frames - 1) / 2
    out = np.empty((frames, size, size, 3), np.float32)
    for t in range(frames):
        oy, ox = (np.array([margin, margin]) + pan * (t - (frames - 1) / 2)).round().astype(int)
        oy, ox = min(max(oy, 0), big - size), min(max(ox, 0), big - size)
        out[t] = tex[oy:oy + size, ox:ox + size]
    out += rng.normal(0.0, 4.0, size=out.shape).astype(np.float32)
    return out


def _item_alpha(image: np.ndarray, side: float, angle: float) -> np.ndarray:
    """The item's opacity (its grey level), resized so the 28 px box is ``side`` px and turned ``angle`` degrees
    (counter-clockwise on screen); the box is padded first so no corner is cut: a square of side * 40 / 28."""
    # Stretched so the item's brightest pixels are opaque: some sandals are drawn faintly (peak grey about 100).
    # The square root keeps the item mostly opaque over a busy photograph while its texture still shows.
    stretched = (image.astype(np.float32) / max(float(np.percentile(image, 99)), 1.0)).clip(0.0, 1.0) ** 0.5
    padded = np.pad(stretched, PAD)
    box = max(2, int(round(side * padded.shape[0] / image.shape[0])))
    alpha = torch.from_numpy(_resize(padded, box))[None, None]
    if angle:
        rad = math.radians(angle)
        theta = torch.tensor([[[math.cos(rad), math.sin(rad), 0.0], [-math.sin(rad), math.cos(rad), 0.0]]])
        grid = F.affine_grid(theta, list(alpha.shape), align_corners=False)
        alpha = F.grid_sample(alpha, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return np.clip(alpha[0, 0].numpy(), 0.0, 1.0)


def _forward_motion(motion: str, rng: np.random.Generator, frames: int) -> list[tuple[float, float]]:
    """(item side, angle) per frame of a forward motion (``clockwise`` or ``approaching``)."""
    if motion == "clockwise":
        side = rng.uniform(*ROTATING_SIDES)
        start, step = rng.uniform(0, 360), rng.uniform(*TURN_DEGREES)
        return [(side, start - step * t) for t in range(frames)]  # negative angle: clockwise on screen
    far, near = rng.uniform(*APPROACH_SIDES[0]), rng.uniform(*APPROACH_SIDES[1])
    angle = rng.uniform(-20, 20)
    return [(far * (near / far) ** (t / max(1, frames - 1)), angle) for t in range(frames)]


def render_motion_clip(image: np.ndarray, background: np.ndarray, motion: str, rng: np.random.Generator,
                       frames: int = 8, size: int = 112) -> tuple[np.ndarray, dict[str, Any]]:
    """One clip (T, size, size, 3) uint8 RGB: the 28x28 item doing ``motion`` over a crop of ``background``.

    A reversed motion (``anticlockwise``, ``receding``) is its forward motion rendered and played backwards.
    The item is tinted with a random colour that contrasts with the crop (its grey level is its opacity, as in
    ``demo.fashion_clips``) and drifts in a straight line between two random positions that keep it inside the canvas.
    """
    if image.shape != (28, 28):
        raise ValueError(f"expected a 28x28 Fashion-MNIST image, got {image.shape}")
    forward = REVERSED.get(motion, motion)
    if forward not in MOTION_PAIRS:
        raise ValueError(f"unknown motion {motion!r}; choose from {', '.join(DEFAULT_MOTIONS)}")
    poses = _forward_motion(forward, rng, frames)
    alphas = [_item_alpha(image, side, angle) for side, angle in poses]
    biggest = max(a.shape[0] for a in alphas)
    if biggest > size:
        raise ValueError(f"canvas {size} px is too small for an item box of {biggest} px")
    lo, hi = biggest / 2, size - biggest / 2
    start, end = rng.uniform(lo, hi, size=2), rng.uniform(lo, hi, size=2)
    bg = _photo_background(background, rng, size, frames)
    corners = []
    for t, alpha in enumerate(alphas):
        centre = start + (t / max(1, frames - 1)) * (end - start)
        corners.append((centre - alpha.shape[0] / 2).round().astype(int))
    # A tint that stands out from the photograph where the item passes: dark on bright, bright on dark.
    under = np.mean([bg[t, y:y + a.shape[0], x:x + a.shape[1]].mean() for t, ((y, x), a) in
                     enumerate(zip(corners, alphas, strict=True))])
    colour = (rng.uniform(170, 255, size=3) if under < 128 else rng.uniform(0, 60, size=3)).astype(np.float32)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t, ((y, x), alpha) in enumerate(zip(corners, alphas, strict=True)):
        a = alpha[..., None]
        canvas = bg[t]
        patch = canvas[y:y + a.shape[0], x:x + a.shape[1]]
        canvas[y:y + a.shape[0], x:x + a.shape[1]] = a * colour * (0.75 + 0.25 * a) + (1.0 - a) * patch
        out[t] = np.clip(canvas, 0, 255).astype(np.uint8)
    if forward != motion:
        out = out[::-1].copy()
    return out, {"motion": motion, "sides": [round(s, 1) for s, _ in poses],
                 "angles": [round(a % 360, 1) for _, a in poses]}


def class_names(garments: Sequence[str], motions: Sequence[str]) -> list[str]:
    """``garment/motion`` for every pair, garment-major (label = garment index * len(motions) + motion index)."""
    return [f"{g}/{m}" for g in garments for m in motions]


def _check_motions(motions: tuple[str, ...]) -> None:
    unknown = [m for m in motions if m not in DEFAULT_MOTIONS]
    if unknown or not motions or len(set(motions)) != len(motions):
        raise DatasetError(f"motions must be distinct names from {', '.join(DEFAULT_MOTIONS)}, got {list(motions)}")


def make_motion_clips(out_dir: str | Path, data_dir: str | Path = DEFAULT_DATA_DIR,
                      garments: Sequence[str] = DEFAULT_GARMENTS, motions: Sequence[str] = DEFAULT_MOTIONS,
                      per_class_train: int = 40, per_class_val: int = 20, per_class_test: int = 40,
                      frames: int = 8, size: int = 112, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Write the garment x motion clips, their lists and manifest into ``out_dir``; returns a summary.

    Every motion class of a garment draws its own Fashion-MNIST images (train split for training clips; disjoint
    slices of the test split for validation and test). Raises :class:`DatasetError` when Fashion-MNIST or a
    photograph is missing (``make data`` fetches them).
    """
    garments, motions = tuple(garments), tuple(motions)
    _check_request(garments, size, frames, (per_class_train, per_class_val, per_class_test))
    _check_motions(motions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = class_names(garments, motions)
    # One draw of garment images per split of Fashion-MNIST, dealt out to the motion classes in turn.
    per_split = {"train": {"train": per_class_train * len(motions)},
                 "test": {"val": per_class_val * len(motions), "test": per_class_test * len(motions)}}
    jobs = _plan(garments, per_split, np.random.default_rng(seed), data_dir)
    images = {s: fashion_mnist(s, data_dir)[0] for s in {j[1] for j in jobs}}
    photos = {s: [_load_photo(p, data_dir) for p in SPLIT_PHOTOS[s]] for s in SPLITS}
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    manifest: list[dict[str, Any]] = []
    counters: dict[tuple[str, int], int] = {}
    for split, source, garment, idx in tqdm(jobs, desc="motion clips", leave=False, disable=not progress):
        n = counters.get((split, garment), 0)
        counters[(split, garment)] = n + 1
        motion = n % len(motions)
        label = garment * len(motions) + motion
        rng = np.random.default_rng([seed, SPLITS.index(split), label, n])
        bg_index = int(rng.integers(len(photos[split])))
        clip, info = render_motion_clip(images[source][idx], photos[split][bg_index], motions[motion], rng,
                                        frames, size)
        rel = f"{split}/{garments[garment]}_{motions[motion]}/{n // len(motions):04d}.mp4"
        write_mp4(out / rel, clip)
        lines[split].append(f"{rel} {label}")
        manifest.append({"path": rel, "split": split, "label": label, "class": names[label],
                         "source_split": source, "source_index": idx,
                         "background": SPLIT_PHOTOS[split][bg_index], **info})
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in names))
    for split in SPLITS:
        if lines[split]:
            (out / LIST_FILES[split]).write_text("".join(f"{line}\n" for line in lines[split]))
    settings = {"garments": list(garments), "motions": list(motions), "classes": names,
                "per_class_train": per_class_train, "per_class_val": per_class_val, "per_class_test": per_class_test,
                "frames": frames, "size": size, "seed": seed, "fps": FPS, "codec": "libx264 yuv420p", "crf": CRF,
                "photos": {s: list(SPLIT_PHOTOS[s]) for s in SPLITS}}
    (out / "manifest.json").write_text(json.dumps({"settings": settings, "clips": manifest}, indent=1) + "\n")
    return {"out_dir": str(out), **{f"num_{s}": len(lines[s]) for s in SPLITS}, **settings}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.motion_clips", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (clips, lists, classes.txt, manifest.json)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="folder holding fashion-mnist/ and photos/")
    p.add_argument("--garments", default=",".join(DEFAULT_GARMENTS),
                   help=f"comma-separated Fashion-MNIST classes (from: {','.join(FASHION_CLASSES)})")
    p.add_argument("--motions", default=",".join(DEFAULT_MOTIONS), help="comma-separated motions")
    p.add_argument("--per-class-train", type=int, default=40, help="training clips per garment x motion class")
    p.add_argument("--per-class-val", type=int, default=20, help="validation clips per class")
    p.add_argument("--per-class-test", type=int, default=40, help="test clips per class (test_fresh.txt)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip")
    p.add_argument("--size", type=int, default=112, help="canvas side in pixels (even)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same clips)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    try:
        info = make_motion_clips(args.out, args.data_dir, [g.strip() for g in args.garments.split(",") if g.strip()],
                                 [m.strip() for m in args.motions.split(",") if m.strip()], args.per_class_train,
                                 args.per_class_val, args.per_class_test, args.frames, args.size, args.seed,
                                 progress=not args.json)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2) if args.json else
          f"{info['num_train']} train + {info['num_val']} val + {info['num_test']} test clips of "
          f"{len(info['classes'])} classes in {info['out_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
