"""Tiny labelled video sets for the training tests (real encoded clips written with PyAV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videogen import textured_frames, write_video


def class_frames(label: int, n: int, size: int, seed: int) -> np.ndarray:
    """Clips whose class is visible: a textured pattern tinted per class (red, green or blue)."""
    frames = textured_frames(n, size, size + 16, seed=seed).astype(np.float32) * 0.5
    frames[..., label % 3] += 120
    return frames.clip(0, 255).astype(np.uint8)


def make_video_set(root: Path, num_videos: int = 8, num_classes: int = 2, frames: int = 4, size: int = 48,
                   name: str = "train.txt", offset: int = 0) -> Path:
    """``num_videos`` H.264 clips in ``root/videos`` and a list file ``root/name`` (``videos/xN.mp4 label``)."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(offset, offset + num_videos):
        label = i % num_classes
        rel = f"videos/x{i}.mp4"
        if not (root / rel).exists():
            write_video(root / rel, class_frames(label, frames, size, seed=i))
        lines.append(f"{rel} {label}")
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path
