"""The model zoo: ``build_model(spec)`` and the architecture registry."""

# Each model file registers its architectures when imported.
from reskd_infer.models import efficientnet_lite, tsn, video3d  # noqa: E402, F401, I001
from reskd_infer.models.base import VideoModel
from reskd_infer.models.build import build_model, load_pretrained_weights
from reskd_infer.models.registry import ArchInfo, get_arch_info, list_archs, register_arch

__all__ = ["ArchInfo", "VideoModel", "build_model", "get_arch_info", "list_archs", "load_pretrained_weights", "register_arch"]
