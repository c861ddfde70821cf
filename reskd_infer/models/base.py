"""The interface every zoo model implements."""

from __future__ import annotations

import torch
from torch import nn


class VideoModel(nn.Module):
    """A video classifier over clips shaped (N, C, T, H, W).

    ``forward_features`` returns the last feature map before pooling, always
    shaped (N, C', T', H', W') (2D models keep their per-frame maps on the T' axis),
    so cross-resolution distillation can align any teacher with any student by
    trilinear interpolation. ``forward_head`` pools and classifies it.
    """

    num_classes: int
    feature_dim: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classifier(self) -> nn.Linear:
        """The final linear layer (applied per position by the dense-logit KD variant)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class PooledLinearHead(nn.Module):
    """Global average over (T, H, W), dropout, linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=(2, 3, 4))
        return self.fc(self.dropout(pooled))
