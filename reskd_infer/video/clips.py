"""The one entry from a video (a file, or frames in memory) to its sampled clips: NVDEC on a GPU where it
can run, the CPU decoder otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reskd_infer.spec import ModelSpec
from reskd_infer.video.decode import decode_guard, frames_from_array, read_clips
from reskd_infer.video.gpu_decode import nvdec_unavailable, read_clips_nvdec


def load_clips(video: str | Path | np.ndarray | Sequence[np.ndarray], spec: ModelSpec,
               rng: np.random.Generator | None = None, timings: dict[str, float] | None = None,
               device: str | None = None) -> np.ndarray:
    """A file path or in-memory frames -> the sampled clips (num_clips, T, H, W, 3) uint8, short side
    resized to ``spec.resize_short``. With a CUDA ``device`` where NVDEC decoding can run (torchcodec,
    the ``gpu`` extra), files are decoded on the GPU and a CUDA tensor comes back; otherwise the CPU."""
    if isinstance(video, (str, Path)):
        if device is not None and str(device).startswith("cuda"):
            if nvdec_unavailable(device) is None:
                return read_clips_nvdec(video, spec, device, rng)
        return decode_guard(video, lambda: read_clips(video, spec, rng, timings))
    return frames_from_array(video, spec, rng)
