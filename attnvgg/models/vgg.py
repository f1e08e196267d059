"""VGG16 with an attention module after the second conv+ReLU of blocks 3, 4 and 5.

The module order inside ``features`` is that of the reference class the checkpoints come
from, so ``features.14.gamma`` or ``classifier.6.weight`` load unchanged. A block without
attention keeps an ``nn.Identity`` in the slot: indices never shift between variants.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from attnvgg.models.attention import make_attention
from attnvgg.models.attention import GlobalAttention

# (channels, convs) per block; attention goes after conv 2 of blocks 3-5.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
ATTENTION_SLOTS = (14, 22, 30)  # indices of the attention modules in ``features``


def scaled(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class VGG16WithAttention(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        attention: Sequence[str] = ("global", "global", "global"),
        width: float = 1.0,
        in_channels: int = 3,
        dropout: float = 0.5,
    ):
        super().__init__()
        attention = list(attention)
        if len(attention) != 3:
            raise ValueError("attention needs one kind for each of blocks 3, 4 and 5")
        layers: list[nn.Module] = []
        c_in = in_channels
        for block, (c, n) in enumerate(VGG16_BLOCKS):
            c_out = scaled(c, width)
            for i in range(n):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = c_out
                if block >= 2 and i == 1:
                    layers.append(make_attention(attention[block - 2], c_out))
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = scaled(4096, width)
        self.classifier = nn.Sequential(
            nn.Linear(c_in * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.attention_kinds = attention
        self.width = width
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        """torchvision's VGG initialisation, so random weights keep the signal alive through
        the depth and random-weight parity checks see input-dependent logits.

        It draws from a fork of the global RNG: building a model leaves the global stream where
        PyTorch's default initialisation leaves it, so seeded code that builds a model and then
        draws more (the trainer's own init, data order, dropout) is unaffected by this choice."""
        import torch

        with torch.random.fork_rng(devices=[]):
            self._reinit()

    def _reinit(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, GlobalAttention):
                nn.init.zeros_(m.gamma)

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = x.flatten(1)
        return self.classifier(x)


def torchvision_index_to_ours(i: int) -> int:
    """torchvision's vgg16 ``features`` index -> ours (each attention slot shifts by one)."""
    if i < 14:
        return i
    if i < 21:
        return i + 1
    if i < 28:
        return i + 2
    return i + 3
