"""A small registry of architectures: name -> builder and the spec defaults it implies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

# ImageNet's RGB mean and std on 0..255: the default normalization of every architecture (ModelSpec.mean/std).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ArchInfo:
    """What the registry knows about one architecture."""

    name: str
    builder: Callable[..., nn.Module]
    family: str  # "2d" (per-frame backbone + temporal averaging) or "3d"
    default_input_size: int = 224
    default_num_frames: int = 8
    default_sampling: str = "segments"
    default_frame_interval: int = 1
    min_frames: int = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # The centre crop its pretrained weights were made for (as timm's ``_cfg``), the short side resized to
    # crop * 256 / 224 first, the spec's default ratio; 0: no pretrained weights.
    pretrained_crop: int = 0
    description: str = ""


_REGISTRY: dict[str, ArchInfo] = {}


def register_arch(name: str, **info: object) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(num_classes, num_frames) -> VideoModel`` under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        _REGISTRY[name] = ArchInfo(name=name, builder=builder, description=(builder.__doc__ or "").strip().split("\n")[0], **info)  # type: ignore[arg-type]
        return builder

    return wrap


def get_arch_info(name: str) -> ArchInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def list_archs() -> list[str]:
    """Names of every registered architecture."""
    return sorted(_REGISTRY)
