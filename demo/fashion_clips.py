"""Labelled video clips made from real Fashion-MNIST images (the project's shipped labelled data).

Each clip shows one real Fashion-MNIST item (28x28, upscaled to 40-56 px, tinted) moving along a
straight path over a square canvas whose background is a smooth random texture that pans slowly
and carries fresh per-frame noise, so the task needs the frames and not one clean picture.
Clips are written as real H.264 MP4s (PyAV, libx264, yuv420p) with Kinetics-style lists::

    OUT/classes.txt                       one class name per line (label index = line number)
    OUT/train.txt, OUT/val.txt            "relative/path.mp4 label" per line
    OUT/manifest.json                     per clip: split, source image index, label, item size, path

Training clips take images from Fashion-MNIST's train split, validation clips from its test split,
so no source image is shared. Everything is deterministic for a given seed. Default classes are
the garments that blur into each other at low resolution (t-shirt, pullover, coat, shirt).

    python -m demo.fashion_clips --out clips/ --per-class-train 60 --per-class-val 20
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from demo.assets import DEFAULT_DATA_DIR, FASHION_CLASSES, fashion_mnist
from reskd_infer.errors import DatasetError
from reskd_infer.video.encode import CRF, FPS, write_mp4

DEFAULT_CLASSES = ("t-shirt", "pullover", "coat", "shirt")
ITEM_SIZES = (40, 56)  # upscaled item side, drawn uniformly in this range per clip


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of a float (H, W[, C]) image to (size, size)."""
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    chw = x.dim() == 3
    x = x.permute(2, 0, 1)[None] if chw else x[None, None]
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return (y.permute(1, 2, 0) if chw else y[0]).numpy()


def _background(rng: np.random.Generator, size: int, frames: int) -> np.ndarray:
    """A smooth coloured random texture, panning a little per frame, with per-frame grain: (T, S, S, 3) float."""
    big = size + 32
    coarse = rng.random((big // 8, big // 8, 3)).astype(np.float32)
    fine = rng.random((big // 3, big // 3, 3)).astype(np.float32)
    base = 0.7 * _resize(coarse, big) + 0.3 * _resize(fine, big)
    tint = rng.uniform(0.35, 0.8, size=3).astype(np.float32)
    tex = 255.0 * (0.15 + 0.55 * base * tint / tint.max())
    dy, dx = rng.uniform(-2.0, 2.0, size=2)
    out = np.empty((frames, size, size, 3), np.float32)
    for t in range(frames):
        oy, ox = int(round(16 + dy * t)), int(round(16 + dx * t))
        oy, ox = min(max(oy, 0), big - size), min(max(ox, 0), big - size)
        out[t] = tex[oy:oy + size, ox:ox + size]
    out += rng.normal(0.0, 6.0, size=out.shape).astype(np.float32)
    return out


def render_clip(image: np.ndarray, rng: np.random.Generator, frames: int = 8, size: int = 112,
                item_sizes: tuple[int, int] = ITEM_SIZES) -> tuple[np.ndarray, dict[str, Any]]:
    """One clip (T, size, size, 3) uint8 RGB of a 28x28 uint8 item moving over a textured canvas.

    The item's grey level is its opacity (Fashion-MNIST items lie on black), coloured with a
    random bright tint; it moves in a straight line between two random positions.
    """
    if image.shape != (28, 28):
        raise ValueError(f"expected a 28x28 Fashion-MNIST image, got {image.shape}")
    side = int(rng.integers(item_sizes[0], item_sizes[1] + 1))
    side = min(side, size)
    alpha = np.clip(_resize(image.astype(np.float32) / 255.0, side), 0.0, 1.0)[..., None]
    colour = rng.uniform(150, 255, size=3).astype(np.float32)
    shade = 0.75 + 0.25 * alpha  # keep the item's internal texture visible through the tint
    item = colour * shade
    bg = _background(rng, size, frames)
    span = size - side
    start = rng.uniform(0, span, size=2)
    end = rng.uniform(0, span, size=2)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        f = t / max(1, frames - 1)
        y, x = (start + f * (end - start)).round().astype(int)
        canvas = bg[t]
        patch = canvas[y:y + side, x:x + side]
        canvas[y:y + side, x:x + side] = alpha * item + (1.0 - alpha) * patch
        out[t] = np.clip(canvas, 0, 255).astype(np.uint8)
    return out, {"item_size": side, "start": [float(v) for v in start], "end": [float(v) for v in end]}


def _pick(labels: np.ndarray, label: int, count: int, rng: np.random.Generator, split: str) -> np.ndarray:
    pool = np.flatnonzero(labels == label)
    if count > pool.size:
        raise DatasetError(f"Fashion-MNIST {split} split has {pool.size} images of class "
                           f"{FASHION_CLASSES[label]!r}, {count} requested")
    return rng.permutation(pool)[:count]


def _check_request(classes: tuple[str, ...], size: int, frames: int, counts: Sequence[int]) -> None:
    unknown = [c for c in classes if c not in FASHION_CLASSES]
    if unknown or not classes:
        raise DatasetError(f"unknown Fashion-MNIST classes {unknown}; choose from {', '.join(FASHION_CLASSES)}")
    if len(set(classes)) != len(classes):
        raise DatasetError(f"duplicate classes in {classes}")
    if size < 32 or size % 2:
        raise ValueError(f"canvas size must be an even number >= 32, got {size}")
    if frames < 1 or min(counts) < 0:
        raise ValueError("frames must be >= 1 and per-class counts >= 0")


def _plan(classes: tuple[str, ...], per_split: dict[str, dict[str, int]], rng: np.random.Generator,
          data_dir: str | Path) -> list[tuple[str, str, int, int]]:
    """(list split, source split, label, source image index) per clip; val and test take disjoint slices of
    one draw from Fashion-MNIST's test split, train clips come from its train split."""
    jobs: list[tuple[str, str, int, int]] = []
    for source, counts in per_split.items():
        if sum(counts.values()) == 0:
            continue
        _, labels = fashion_mnist(source, data_dir)
        picked = {label: _pick(labels, FASHION_CLASSES.index(name), sum(counts.values()), rng, source)
                  for label, name in enumerate(classes)}
        start = 0
        for split, count in counts.items():
            for label in range(len(classes)):
                jobs.extend((split, source, label, int(idx)) for idx in picked[label][start:start + count])
            start += count
    return jobs


def _render_all(jobs: list[tuple[str, str, int, int]], classes: tuple[str, ...], out: Path, seed: int, frames: int,
                size: int, item_sizes: tuple[int, int], data_dir: str | Path, progress: bool
                ) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Render and encode every planned clip; the list lines per split and the manifest entries."""
    images = {s: fashion_mnist(s, data_dir)[0] for s in {j[1] for j in jobs}}
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    manifest: list[dict[str, Any]] = []
    counters: dict[tuple[str, int], int] = {}
    for split, source, label, idx in tqdm(jobs, desc="fashion clips", leave=False, disable=not progress):
        n = counters.get((split, label), 0)
        counters[(split, label)] = n + 1
        clip_rng = np.random.default_rng([seed, ("train", "val", "test").index(split), label, n])
        clip, info = render_clip(images[source][idx], clip_rng, frames, size, item_sizes)
        rel = f"{split}/{classes[label]}/{n:04d}.mp4"
        write_mp4(out / rel, clip)
        lines[split].append(f"{rel} {label}")
        manifest.append({"path": rel, "split": split, "label": label, "class": classes[label],
                         "source_split": source, "source_index": idx, **info})
    return lines, manifest


def make_fashion_clips(out_dir: str | Path, data_dir: str | Path = DEFAULT_DATA_DIR,
                       classes: Sequence[str] = DEFAULT_CLASSES, per_class_train: int = 60,
                       per_class_val: int = 20, frames: int = 8, size: int = 112, seed: int = 0,
                       progress: bool = False, per_class_test: int = 0,
                       item_sizes: tuple[int, int] = ITEM_SIZES) -> dict[str, Any]:
    """Write labelled Fashion-MNIST clips and their lists into ``out_dir``.

    ``classes`` are Fashion-MNIST class names (see :data:`demo.assets.FASHION_CLASSES`);
    label indices follow their order here. Train clips come from the train split, validation
    clips (and ``per_class_test`` test clips, disjoint from them, listed in test.txt) from the test
    split. Returns a summary: paths of the lists, counts, classes, settings.
    Raises :class:`DatasetError` when Fashion-MNIST is missing (``make data`` fetches it).
    """
    classes = tuple(classes)
    _check_request(classes, size, frames, (per_class_train, per_class_val, per_class_test))
    item_sizes = (min(item_sizes[0], size), min(item_sizes[1], size))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_split = {"train": {"train": per_class_train}, "test": {"val": per_class_val, "test": per_class_test}}
    jobs = _plan(classes, per_split, np.random.default_rng(seed), data_dir)
    lines, manifest = _render_all(jobs, classes, out, seed, frames, size, item_sizes, data_dir, progress)
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for split in ("train", "val", "test"):
        if split == "test" and not lines["test"]:
            continue
        (out / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines[split]))
    settings = {"classes": list(classes), "per_class_train": per_class_train, "per_class_val": per_class_val,
                "per_class_test": per_class_test,
                "frames": frames, "size": size, "seed": seed, "item_sizes": list(item_sizes), "fps": FPS,
                "codec": "libx264 yuv420p", "crf": CRF}
    (out / "manifest.json").write_text(json.dumps({"settings": settings, "clips": manifest}, indent=1) + "\n")
    return {"out_dir": str(out), "train_list": str(out / "train.txt"), "val_list": str(out / "val.txt"),
            "classes_file": str(out / "classes.txt"), "num_train": len(lines["train"]),
            "num_val": len(lines["val"]), "num_test": len(lines["test"]), **settings}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.fashion_clips", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (clips, train.txt, val.txt, classes.txt)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="folder holding fashion-mnist/ (make data)")
    p.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                   help=f"comma-separated class names, or 'all' (from: {','.join(FASHION_CLASSES)})")
    p.add_argument("--per-class-train", type=int, default=60, help="training clips per class")
    p.add_argument("--per-class-val", type=int, default=20, help="validation clips per class")
    p.add_argument("--frames", type=int, default=8, help="frames per clip")
    p.add_argument("--size", type=int, default=112, help="canvas side in pixels (even)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same clips)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    classes = FASHION_CLASSES if args.classes == "all" else tuple(c.strip() for c in args.classes.split(",") if c)
    try:
        info = make_fashion_clips(args.out, args.data_dir, classes, args.per_class_train, args.per_class_val,
                                  args.frames, args.size, args.seed, progress=not args.json)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['num_train']} train + {info['num_val']} val clips of {len(classes)} classes in {info['out_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
