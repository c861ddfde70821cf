"""The model zoo: ``build_model(spec)`` and the architecture registry."""

from .base import VideoModel
from .build import build_model, load_pretrained_weights
from .registry import ArchInfo, get_arch_info, list_archs, register_arch

__all__ = ["ArchInfo", "VideoModel", "build_model", "get_arch_info", "list_archs", "load_pretrained_weights", "register_arch"]
