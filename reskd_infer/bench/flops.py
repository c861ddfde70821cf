"""Forward FLOPs of one clip, counted by torch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode


def clip_gflops(model: torch.nn.Module, input_shape: Sequence[int]) -> float:
    """Forward FLOPs of one clip (multiply-add counted as 2), measured by torch's FLOP counter."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops() / 1e9
