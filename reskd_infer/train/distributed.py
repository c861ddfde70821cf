"""Process-group helpers: one process (CPU or one GPU) or many under ``torchrun``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from reskd_infer.train.config import TrainError


@dataclass
class DistInfo:
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

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_float(self, value: float, device: torch.device) -> float:
        """Rank 0's ``value`` on every rank (itself when there is one process)."""
        if not self.enabled:
            return value
        buf = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(buf, src=0)
        return float(buf.item())


def init_distributed(device_request: str) -> tuple[DistInfo, torch.device]:
    """Read torchrun's environment, pick the device, start the process group when there are several ranks."""
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
    info = DistInfo(rank=rank, world=world, local_rank=local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        info.initialized_here = True
    return info, device


class ShardSampler(Sampler[int]):
    """Rank r evaluates indices r, r + world, ...: every sample exactly once over all ranks."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
