"""reskd-infer: cross-resolution distilled video recognition, from training to TensorRT engines."""

from reskd_infer.errors import ReskdError
from reskd_infer.io.checkpoint import load_checkpoint, save_checkpoint
from reskd_infer.models import build_model, list_archs
from reskd_infer.runtime.recognizer import Recognizer
from reskd_infer.runtime.results import Prediction, VideoResult
from reskd_infer.spec import ModelSpec
from reskd_infer.version import __version__

__all__ = [
    "ModelSpec",
    "Prediction",
    "Recognizer",
    "ReskdError",
    "VideoResult",
    "__version__",
    "build_model",
    "list_archs",
    "load_checkpoint",
    "save_checkpoint",
]
