"""Small default reconstruction networks in the paper's layout, scaled to train on a CPU.

Both are plain ``nn.Module`` s without data-dependent control flow (``torch.fx`` traces them) and
follow one protocol that the probabilistic-output baseline builds on:

* ``forward_features(x)``: everything before the output layer;
* ``head``: the output layer (a 1x1 convolution);
* ``forward_head(features, x)``: ``head(features)``, plus ``x`` for a residual network;
* ``forward(x) = forward_head(forward_features(x), x)``.
"""

from __future__ import annotations

import torch
from torch import nn

UPSAMPLING = ("transpose", "nearest", "paper")
# The paper's INN had intervals in its U-Net's last 12 Keras layers: with the "paper" layout
# (see UNet) those hold the last 7 parametrised layers (2 decoder levels x 3 convs + the head).
PAPER_INN_LAST = 7


def _double_conv(c_in: int, c_out: int, batchnorm: bool) -> nn.Sequential:
    layers = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net (Ronneberger et al.): ``depth`` max-pool downsamplings, each level two 3x3 conv + ReLU
    with ``width * 2**level`` channels, concatenated skips, a 1x1 output convolution and, with
    ``residual``, the input added to the output (the network learns the FBP's correction).
    Inputs need height and width divisible by ``2**depth``.

    ``upsampling`` chooses the decoder and where the dropout sits:

    * ``"transpose"``: ``ConvTranspose2d`` (2x2, stride 2), dropout after every down- and
      upsampling;
    * ``"nearest"``: nearest upsampling + 3x3 conv, dropout as for ``"transpose"``;
    * ``"paper"``: the layout of the paper's Keras U-Net: nearest upsampling, a 2x2 convolution
      + ReLU (``padding="same"``: one zero row/column after the image, as in Keras), the skip
      concatenated, then dropout on the concatenation (the only dropout layers). Per decoder
      level this is 6 Keras layers (UpSampling2D, Conv2D, Concatenate, Dropout, Conv2D, Conv2D)
      holding 3 convolutions, so the paper's "last 12 layers" (with the 1x1 output layer) are
      the last 7 parametrised layers here: :data:`PAPER_INN_LAST`.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, width: int = 8,
                 depth: int = 3, dropout: float = 0.2, upsampling: str = "transpose",
                 residual: bool = True, batchnorm: bool = False):
        super().__init__()
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling: expected one of {UPSAMPLING}, got {upsampling!r}")
        if residual and in_channels != out_channels:
            raise ValueError(f"residual: needs in_channels == out_channels, got {in_channels} "
                             f"and {out_channels}")
        if depth < 1 or width < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"expected depth >= 1, width >= 1, 0 <= dropout < 1; got depth="
                             f"{depth}, width={width}, dropout={dropout}")
        self.residual = residual
        paper = upsampling == "paper"
        channels = [width * 2 ** level for level in range(depth + 1)]
        self.inc = _double_conv(in_channels, channels[0], batchnorm)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), *([] if paper else [nn.Dropout(dropout)]),
                          _double_conv(channels[i], channels[i + 1], batchnorm))
            for i in range(depth))
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()  # applied to the concatenation [skip, upsampled]
        self.up_conv = nn.ModuleList()
        for i in reversed(range(depth)):
            if upsampling == "transpose":
                up = [nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2),
                      nn.Dropout(dropout)]
            elif upsampling == "nearest":
                up = [nn.Upsample(scale_factor=2, mode="nearest"),
                      nn.Conv2d(channels[i + 1], channels[i], 3, padding=1), nn.Dropout(dropout)]
            else:  # Keras Conv2D(2, padding="same"); torch pads the odd row/column after too
                up = [nn.Upsample(scale_factor=2, mode="nearest"),
                      nn.Conv2d(channels[i + 1], channels[i], 2, padding="same"), nn.ReLU()]
            self.up.append(nn.Sequential(*up))
            self.merge.append(nn.Dropout(dropout) if paper else nn.Identity())
            self.up_conv.append(_double_conv(2 * channels[i], channels[i], batchnorm))
        self.head = nn.Conv2d(channels[0], out_channels, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up, merge, conv in zip(self.up, self.merge, self.up_conv):
            h = conv(merge(torch.cat([skips.pop(), up(h)], dim=1)))
        return h

    def forward_head(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.head(features)
        return out + x if self.residual else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), x)


# Channels of the paper's 1D network, first to last hidden layer, for width 16.
PAPER_CONV1D_CHANNELS = (16, 32, 64, 128, 256, 256, 256, 64, 32)
PAPER_CONV1D_DROPOUT = {5: 0.2, 6: 0.5, 7: 0.5}  # after the ReLU of hidden layer index k (1-based)


class ConvNet1d(nn.Module):
    """The paper's 1D deconvolution network: 9 Conv1d (kernel 5, padding 2) + ReLU layers with the
    paper's channel profile scaled by ``width / 16`` (the paper: width 16), dropout after hidden
    layers 5, 6, 7 (rates 0.2, 0.5, 0.5, times ``dropout_scale``), and a 1x1 output Conv1d: 10
    convolutions in all."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, width: int = 4,
                 dropout_scale: float = 1.0, residual: bool = False):
        super().__init__()
        if width < 1 or not 0.0 <= dropout_scale < 2.0:
            raise ValueError(f"expected width >= 1 and 0 <= dropout_scale < 2; got width="
                             f"{width}, dropout_scale={dropout_scale}")
        if residual and in_channels != out_channels:
            raise ValueError(f"residual: needs in_channels == out_channels, got {in_channels} "
                             f"and {out_channels}")
        self.residual = residual
        channels = [max(1, c * width // 16) for c in PAPER_CONV1D_CHANNELS]
        layers = []
        c_in = in_channels
        for k, c in enumerate(channels, start=1):
            layers += [nn.Conv1d(c_in, c, 5, padding=2), nn.ReLU()]
            if k in PAPER_CONV1D_DROPOUT:
                layers.append(nn.Dropout(PAPER_CONV1D_DROPOUT[k] * dropout_scale))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv1d(c_in, out_channels, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.head(features)
        return out + x if self.residual else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), x)
