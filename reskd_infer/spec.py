"""ModelSpec: the one self-describing contract every reskd-infer artifact carries.

A spec says everything needed to turn a raw video into the model's input tensor
(frame sampling, resize, crop, normalization, layout) and to read the output
(class names), plus where the model came from (provenance). Checkpoints, ONNX
files (``metadata_props``) and TensorRT sidecars all embed the same JSON form,
so no user ever passes the same setting twice.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from reskd_infer.errors import SpecError
from reskd_infer.models.registry import get_arch_info
from reskd_infer.version import __version__

SPEC_SCHEMA = "reskd-infer/model-spec"
SPEC_VERSION = 1

SAMPLING_SEGMENTS = "segments"  # TSN: split the video into num_frames segments, one frame each
SAMPLING_DENSE = "dense"  # 3D CNNs: num_frames consecutive frames every frame_interval frames
LAYOUT = "NCTHW"

# Eval resize ratio of the paper's test pipeline: short side 256, centre crop 224.
EVAL_RESIZE_RATIO = 256 / 224


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a model that its artifacts must carry.

    Only ``arch`` and ``class_names`` are required; the rest defaults from the
    architecture's registry entry (frame count, sampling, normalization).

    Preprocessing (see :func:`reskd_infer.video.preprocess.frames_to_tensor`):
    resize the short side to ``resize_short``, centre crop ``crop_size`` (``num_crops`` 3: also
    both ends of the long side; multi-view testing), and if
    ``crop_size != input_size`` resize the crop bilinearly to ``input_size``
    (this is how a ResKD student sees the teacher's crop down-sampled), then
    ``(x - mean) / std`` on RGB 0..255.
    """

    arch: str
    class_names: tuple[str, ...]
    input_size: int = 0  # 0: the architecture's default
    num_frames: int = 0  # 0: the architecture's default
    sampling: str = ""  # "segments" or "dense"; "": the architecture's default
    frame_interval: int = 0  # dense sampling only; 0: the architecture's default
    num_clips: int = 1  # clips per video at test time; class probabilities are averaged
    num_crops: int = 1  # test crops per clip: 1 (centre) or 3 (both ends and centre of the long side)
    keyframe_sampling: bool = False  # segments only: take each segment's keyframe nearest its centre (docs/video.md)
    crop_size: int = 0  # 0: same as input_size
    resize_short: int = 0  # 0: round(crop_size * 256 / 224)
    resize_antialias: bool = True  # antialiased short-side resize (the crop->input resize never is)
    mean: tuple[float, float, float] = ()  # type: ignore[assignment]
    std: tuple[float, float, float] = ()  # type: ignore[assignment]
    layout: str = LAYOUT
    multi_label: bool = False
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:

        set_ = object.__setattr__  # frozen dataclass: fill defaults once, here
        if not isinstance(self.arch, str) or not self.arch:
            raise SpecError("ModelSpec.arch must be a non-empty string")
        try:
            info = get_arch_info(self.arch)
        except KeyError as exc:
            raise SpecError(str(exc.args[0])) from None
        names = self.class_names
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise SpecError("ModelSpec.class_names must be a list of strings")
        names = tuple(names)
        if not names:
            raise SpecError("ModelSpec.class_names is empty: a model needs at least one class")
        if not all(isinstance(n, str) and n for n in names):
            raise SpecError("ModelSpec.class_names must all be non-empty strings")
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise SpecError(f"ModelSpec.class_names has duplicates: {dupes}")
        set_(self, "class_names", names)
        set_(self, "input_size", self.input_size or info.default_input_size)
        set_(self, "num_frames", self.num_frames or info.default_num_frames)
        set_(self, "sampling", self.sampling or info.default_sampling)
        if not self.frame_interval:
            set_(self, "frame_interval", info.default_frame_interval if self.sampling == SAMPLING_DENSE else 1)
        set_(self, "crop_size", self.crop_size or self.input_size)
        set_(self, "resize_short", self.resize_short or round(self.crop_size * EVAL_RESIZE_RATIO))
        set_(self, "mean", tuple(float(v) for v in (self.mean or info.mean)))
        set_(self, "std", tuple(float(v) for v in (self.std or info.std)))
        set_(self, "provenance", dict(self.provenance or {}))
        self._validate(info)

    def _validate(self, info: Any) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise SpecError(f"ModelSpec.{name} must be an integer >= {minimum}, got {value!r}")

        positive_int("input_size", 16)
        positive_int("num_frames")
        positive_int("frame_interval")
        positive_int("num_clips")
        if self.num_crops not in (1, 3):
            raise SpecError(f"ModelSpec.num_crops must be 1 (centre crop) or 3 (three crops), got {self.num_crops!r}")
        positive_int("crop_size", 16)
        positive_int("resize_short", 16)
        if self.sampling not in (SAMPLING_SEGMENTS, SAMPLING_DENSE):
            raise SpecError(f"ModelSpec.sampling must be 'segments' or 'dense', got {self.sampling!r}")
        if self.keyframe_sampling and self.sampling != SAMPLING_SEGMENTS:
            raise SpecError("ModelSpec.keyframe_sampling needs segment sampling (it picks one frame per segment)")
        if self.resize_short < self.crop_size:
            raise SpecError(
                f"ModelSpec.resize_short ({self.resize_short}) is smaller than crop_size ({self.crop_size})"
            )
        if self.num_frames < info.min_frames:
            raise SpecError(f"{self.arch} needs at least {info.min_frames} frames, got {self.num_frames}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise SpecError(f"ModelSpec.{name} must have 3 values (R, G, B), got {value!r}")
        if any(s <= 0 for s in self.std):
            raise SpecError(f"ModelSpec.std must be positive, got {self.std!r}")
        if self.layout != LAYOUT:
            raise SpecError(f"ModelSpec.layout must be {LAYOUT!r}, got {self.layout!r}")
        try:
            json.dumps(self.provenance)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"ModelSpec.provenance must be JSON-serializable: {exc}") from None

    # ---- derived ---------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of one clip, without the batch dimension: (C, T, H, W)."""
        return (3, self.num_frames, self.input_size, self.input_size)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (defaults that depended on them are not recomputed)."""
        return replace(self, **changes)

    def with_provenance(self, **entries: Any) -> ModelSpec:
        return replace(self, provenance={**self.provenance, **entries})

    # ---- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return {"schema": SPEC_SCHEMA, "version": SPEC_VERSION, **data}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        if not isinstance(data, dict):
            raise SpecError(f"a model spec must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        schema = data.pop("schema", SPEC_SCHEMA)
        version = data.pop("version", SPEC_VERSION)
        if schema != SPEC_SCHEMA:
            raise SpecError(f"not a reskd-infer model spec (schema {schema!r})")
        if not isinstance(version, int) or version > SPEC_VERSION:
            raise SpecError(
                f"model spec version {version!r} is newer than this reskd-infer understands "
                f"({SPEC_VERSION}): upgrade reskd-infer"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"model spec has unknown fields {unknown}")
        if "arch" not in data or "class_names" not in data:
            raise SpecError("model spec needs at least 'arch' and 'class_names'")
        for key in ("class_names", "mean", "std"):
            if key in data and isinstance(data[key], list):
                data[key] = tuple(data[key])
        try:
            return cls(**data)
        except TypeError as exc:
            raise SpecError(f"invalid model spec: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"model spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def library_versions(*modules: str) -> dict[str, str]:
    """Provenance: reskd-infer's version and each named module's ``__version__`` (imported on demand)."""

    versions = {"reskd_infer": __version__}
    for name in modules:
        versions[name] = str(importlib.import_module(name).__version__)
    return versions
