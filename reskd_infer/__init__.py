"""reskd-infer: cross-resolution distilled video recognition, from training to TensorRT engines."""

from .checkpoint import load_checkpoint, save_checkpoint
from .errors import ReskdError
from .models import build_model, list_archs
from .pipeline import VideoResult
from .recognizer import Prediction, Recognizer
from .spec import ModelSpec

__version__ = "0.1.0"

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
