"""Attention modules: global (non-local) self-attention, squeeze-and-excitation, CBAM."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GlobalAttention(nn.Module):
    """Non-local self-attention over all spatial positions (SAGAN style).

    ``attn = softmax(q^T k)`` is an (HW x HW) map; ``out = gamma * (v attn^T) + x``. gamma
    starts at 0 so a fresh block is the identity; parity checks must set gamma != 0 or an
    export bug in the attention path stays invisible.
    """

    def __init__(self, in_channels: int, reduction: int = 8):
        super().__init__()
        inner = max(1, in_channels // reduction)
        self.conv_query = nn.Conv2d(in_channels, inner, kernel_size=1)
        self.conv_key = nn.Conv2d(in_channels, inner, kernel_size=1)
        self.conv_value = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        q = self.conv_query(x).reshape(b, -1, n).permute(0, 2, 1)   # B, N, C'
        k = self.conv_key(x).reshape(b, -1, n)                       # B, C', N
        attn = torch.softmax(torch.bmm(q, k), dim=-1)                # B, N, N
        v = self.conv_value(x).reshape(b, c, n)                      # B, C, N
        out = torch.bmm(v, attn.permute(0, 2, 1)).reshape(b, c, h, w)
        return self.gamma * out + x


class SEBlock(nn.Module):
    """Squeeze-and-excitation: global average pool, FC-ReLU-FC-Sigmoid, channel reweighting."""

    def __init__(self, in_channels: int, reduction: int = 16):
        super().__init__()
        inner = max(1, in_channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(in_channels, inner),
            nn.ReLU(inplace=True),
            nn.Linear(inner, in_channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        g = self.fc(s)
        return x * g[:, :, None, None]


class ChannelAttention(nn.Module):
    def __init__(self, in_channels: int, reduction: int = 16):
        super().__init__()
        inner = max(1, in_channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, in_channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(desc))


class CBAM(nn.Module):
    """Convolutional block attention: channel gate, then a spatial gate on the gated input.

    The spatial gate multiplies the block's (channel-gated) input, not the 7x7 conv output.
    """

    def __init__(self, in_channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(in_channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)


def make_attention(kind: str, channels: int) -> nn.Module:
    if kind == "global":
        return GlobalAttention(channels)
    if kind == "se":
        return SEBlock(channels)
    if kind == "cbam":
        return CBAM(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown attention kind {kind!r}")
