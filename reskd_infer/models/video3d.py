"""3D models from torchvision: R3D-18, MC3-18, R(2+1)D-18 and Video Swin-T.

All pool adaptively, so they run at 224, 112 and 64 px. torchvision's s3d is
left out: its fixed (2, 7, 7) average pool fails below 224 px.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import video as tv_video

from reskd_infer.models.base import PooledLinearHead, VideoModel
from reskd_infer.models.registry import register_arch


class VideoResNetModel(VideoModel):
    """torchvision VideoResNet (stem, four stages) with a pooled linear head."""

    def __init__(self, net: tv_video.resnet.VideoResNet, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.stem, self.layer1, self.layer2 = net.stem, net.layer1, net.layer2
        self.layer3, self.layer4 = net.layer3, net.layer4
        self.num_classes = num_classes
        self.feature_dim = net.fc.in_features
        self.head = PooledLinearHead(self.feature_dim, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def classifier(self) -> nn.Linear:
        return self.head.fc


class Swin3DModel(VideoModel):
    """torchvision Video Swin Transformer; features returned channels-first."""

    def __init__(self, net: tv_video.swin_transformer.SwinTransformer3d, num_classes: int):
        super().__init__()
        self.patch_embed, self.pos_drop = net.patch_embed, net.pos_drop
        self.features, self.norm = net.features, net.norm
        self.num_classes = num_classes
        self.feature_dim = net.num_features
        self.head = PooledLinearHead(self.feature_dim, num_classes, dropout=0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(self.patch_embed(x))  # (N, T, H, W, C)
        x = self.norm(self.features(x))
        return x.permute(0, 4, 1, 2, 3)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def classifier(self) -> nn.Linear:
        return self.head.fc


_DENSE = dict(family="3d", default_input_size=112, default_num_frames=8, default_sampling="dense", default_frame_interval=4)


@register_arch("r3d_18", **_DENSE)
def r3d_18(num_classes: int, num_frames: int = 8) -> VideoResNetModel:
    """R3D-18: ResNet-18 with full 3x3x3 convolutions."""
    return VideoResNetModel(tv_video.r3d_18(weights=None), num_classes)


@register_arch("mc3_18", **_DENSE)
def mc3_18(num_classes: int, num_frames: int = 8) -> VideoResNetModel:
    """MC3-18: 3D convolutions in the first stages, 2D after (mixed convolutions)."""
    return VideoResNetModel(tv_video.mc3_18(weights=None), num_classes)


@register_arch("r2plus1d_18", **_DENSE)
def r2plus1d_18(num_classes: int, num_frames: int = 8) -> VideoResNetModel:
    """R(2+1)D-18: each 3D convolution factored into a spatial and a temporal one."""
    return VideoResNetModel(tv_video.r2plus1d_18(weights=None), num_classes)


@register_arch("swin3d_t", family="3d", default_input_size=224, default_num_frames=16, default_sampling="dense",
               default_frame_interval=2, min_frames=2)
def swin3d_t(num_classes: int, num_frames: int = 16) -> Swin3DModel:
    """Video Swin Transformer tiny (patch 2x4x4, window 8x7x7)."""
    return Swin3DModel(tv_video.swin3d_t(weights=None), num_classes)
