"""2D models applied per frame: TSN (temporal averaging) and TSM (temporal shift) ResNets.

Frames of a clip are folded into the batch, run through a torchvision ResNet
trunk, and unfolded again so the feature map is (N, C, T, H, W) like the 3D models'.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet

from reskd_infer.models.base import PooledLinearHead, VideoModel
from reskd_infer.models.registry import register_arch


def _resnet_trunk(net: resnet.ResNet) -> nn.Sequential:
    return nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )


class TemporalShift(nn.Module):
    """Shift 1/fold_div of the channels one frame back and 1/fold_div one frame forward.

    Written out of place with slicing and concatenation: an in-place shift is
    frozen into a constant when traced, and the ONNX graph then silently
    differs from PyTorch.
    """

    def __init__(self, num_frames: int, fold_div: int = 8):
        super().__init__()
        self.num_frames = num_frames
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        x = x.reshape(-1, self.num_frames, c, h, w)
        fold = c // self.fold_div
        zeros = torch.zeros_like(x[:, :1, :fold])
        left = torch.cat([x[:, 1:, :fold], zeros], dim=1)  # frame t takes frame t+1's channels
        right = torch.cat([zeros, x[:, :-1, fold : 2 * fold]], dim=1)  # frame t takes frame t-1's
        out = torch.cat([left, right, x[:, :, 2 * fold :]], dim=2)
        return out.reshape(nt, c, h, w)


class _ShiftedConv(nn.Module):
    """A residual branch's first conv, preceded by a temporal shift (TSM's residual shift)."""

    def __init__(self, conv: nn.Conv2d, num_frames: int):
        super().__init__()
        self.shift = TemporalShift(num_frames)
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.shift(x))


class FrameModel(VideoModel):
    """A per-frame 2D trunk whose feature maps are stacked along time (TSN consensus = mean)."""

    def __init__(self, trunk: nn.Module, feature_dim: int, num_classes: int, num_frames: int, dropout: float = 0.5):
        super().__init__()
        self.trunk = trunk
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.head = PooledLinearHead(feature_dim, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        maps = self.trunk(frames)
        _, c2, h2, w2 = maps.shape
        return maps.reshape(n, t, c2, h2, w2).transpose(1, 2)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def classifier(self) -> nn.Linear:
        return self.head.fc


def _frame_resnet(depth: int, num_classes: int, num_frames: int, shift: bool) -> FrameModel:
    net = {18: resnet.resnet18, 50: resnet.resnet50}[depth](weights=None)
    if shift:
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in layer:
                block.conv1 = _ShiftedConv(block.conv1, num_frames)
    return FrameModel(_resnet_trunk(net), net.fc.in_features, num_classes, num_frames)


@register_arch("tsn_r18", family="2d", default_num_frames=8)
def tsn_r18(num_classes: int, num_frames: int = 8) -> FrameModel:
    """TSN with a ResNet-18 trunk: each sampled frame classified alone, scores averaged."""
    return _frame_resnet(18, num_classes, num_frames, shift=False)


@register_arch("tsn_r50", family="2d", default_num_frames=8)
def tsn_r50(num_classes: int, num_frames: int = 8) -> FrameModel:
    """TSN with a ResNet-50 trunk (the paper's 2D student)."""
    return _frame_resnet(50, num_classes, num_frames, shift=False)


@register_arch("tsm_r50", family="2d", default_num_frames=8)
def tsm_r50(num_classes: int, num_frames: int = 8) -> FrameModel:
    """TSM ResNet-50: 1/8 of channels shifted each way in time at every residual branch."""
    return _frame_resnet(50, num_classes, num_frames, shift=True)
