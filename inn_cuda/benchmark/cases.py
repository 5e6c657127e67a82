"""The shapes the op benchmarks run: a size sweep per op and the layers of two U-Nets.

Groups (see :func:`op_cases`):

* ``sweep``: throughput vs size. linear: square GEMMs M = N = K in 256, 512, 1024, 2048, plus
  a small batch (8 x 1024 -> 1024), an MNIST-sized MLP layer (64 x 784 -> 512) and a 1x1-conv
  shape (4096 x 256 -> 256); conv2d: 3x3, 64 -> 64 channels, padding 1, batch 1, on 32x32 to
  256x256 images; conv_transpose2d: 2x2 stride 2, 128 -> 64 channels, batch 1, on 16x16 to
  128x128 inputs. ``--quick`` uses smaller sizes.
* ``demo-unet``: every distinct conv / conv-transpose layer of the U-Net of ``inn-cuda demo``
  (``inn_cuda.tasks.UNet(width=8, depth=3)``, 64x64 images, batch 16).
* ``paper-unet``: the same for the paper's CT network (width 64, depth 4, 512x512 images,
  batch 1: one slice). ``image_size`` changes the image side (the channel widths stay).

The U-Net layers are read off the real model: a forward pass on the ``meta`` device (no memory,
no arithmetic) with hooks that record every layer's input shape. Layers of equal shape are
merged (``count`` says how often the network runs that shape).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

OPS = ("linear", "conv2d", "conv_transpose2d")
GROUPS = ("sweep", "demo-unet", "paper-unet")

DEMO_UNET = dict(width=8, depth=3, image_size=64, batch=16)
PAPER_UNET = dict(width=64, depth=4, image_size=512, batch=1)


@dataclass(frozen=True)
class Case:
    """One layer shape. linear: ``x (batch, c_in) -> (batch, c_out)``; conv2d /
    conv_transpose2d: NCHW input ``(batch, c_in, size, size)``, square ``kernel``, ``stride``,
    ``padding``, no dilation, one group."""

    op: str
    group: str
    name: str
    batch: int
    c_in: int
    c_out: int
    kernel: int = 1
    size: int = 1
    stride: int = 1
    padding: int = 0
    count: int = 1
    series: str = ""  # the size series a sweep case belongs to (a line in the figure)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"op: expected one of {OPS}, got {self.op!r}")

    @property
    def out_size(self) -> int:
        if self.op == "conv2d":
            return (self.size + 2 * self.padding - self.kernel) // self.stride + 1
        if self.op == "conv_transpose2d":
            return (self.size - 1) * self.stride - 2 * self.padding + self.kernel
        return 1

    @property
    def x_shape(self) -> Tuple[int, ...]:
        if self.op == "linear":
            return (self.batch, self.c_in)
        return (self.batch, self.c_in, self.size, self.size)

    @property
    def w_shape(self) -> Tuple[int, ...]:
        if self.op == "linear":
            return (self.c_out, self.c_in)
        if self.op == "conv2d":
            return (self.c_out, self.c_in, self.kernel, self.kernel)
        return (self.c_in, self.c_out, self.kernel, self.kernel)

    @property
    def y_shape(self) -> Tuple[int, ...]:
        if self.op == "linear":
            return (self.batch, self.c_out)
        return (self.batch, self.c_out, self.out_size, self.out_size)

    @property
    def macs(self) -> int:
        """Multiply-adds of the plain layer's forward: M * N * K of its GEMM."""
        if self.op == "linear":
            return self.batch * self.c_in * self.c_out
        if self.op == "conv2d":
            return self.batch * self.out_size ** 2 * self.c_out * self.c_in * self.kernel ** 2
        return self.batch * self.size ** 2 * self.c_in * self.c_out * self.kernel ** 2

    def describe(self) -> str:
        if self.op == "linear":
            return f"{self.batch}x{self.c_in} -> {self.c_out}"
        stride = f" s{self.stride}" if self.stride > 1 else ""
        return (f"{self.c_in}->{self.c_out} {self.kernel}x{self.kernel}{stride} "
                f"{self.size}x{self.size} b{self.batch}")

    def as_dict(self) -> dict:
        return dict(asdict(self), macs=self.macs)


def _linear(m: int, k: int, n: int) -> Case:
    series = "square GEMM" if m == k == n else ""
    return Case("linear", "sweep", f"linear {m}x{k}x{n}", batch=m, c_in=k, c_out=n, series=series)


def _conv(size: int, channels: int = 64) -> Case:
    return Case("conv2d", "sweep", f"conv3x3 {channels}ch {size}px", batch=1, c_in=channels,
                c_out=channels, kernel=3, size=size, padding=1,
                series=f"3x3 conv {channels}->{channels}")


def _up(size: int, c_in: int = 128) -> Case:
    return Case("conv_transpose2d", "sweep", f"up2x2 {c_in}ch {size}px", batch=1, c_in=c_in,
                c_out=c_in // 2, kernel=2, size=size, stride=2,
                series=f"2x2 s2 up {c_in}->{c_in // 2}")


def _layer(name: str, c_in: int, c_out: int, kernel: int, size: int, batch: int) -> Case:
    """A single conv layer of a typical reconstruction network, 'same' padding."""
    return Case("conv2d", "sweep", name, batch=batch, c_in=c_in, c_out=c_out, kernel=kernel,
                size=size, padding=kernel // 2)


# Typical layers at training batch sizes: a U-Net's 3x3 conv at full and at quarter resolution,
# its 1x1 output layer, and a DnCNN body layer
TYPICAL_LAYERS = (("unet 3x3 64->64 b8 128px", 64, 64, 3, 128, 8),
                  ("unet 3x3 256->128 b8 64px", 256, 128, 3, 64, 8),
                  ("unet 1x1 64->1 b8 128px", 64, 1, 1, 128, 8),
                  ("dncnn 3x3 64->64 b16 64px", 64, 64, 3, 64, 16))


def sweep_cases(quick: bool) -> List[Case]:
    if quick:
        return [_linear(256, 256, 256), _linear(512, 512, 512), _linear(8, 256, 256),
                _conv(16, 16), _conv(32, 16), _conv(32, 32), _up(16, 32), _up(32, 32)]
    return ([_linear(s, s, s) for s in (256, 512, 1024, 2048)]
            + [_linear(8, 1024, 1024), _linear(64, 784, 512), _linear(4096, 256, 256)]
            + [_conv(s) for s in (32, 64, 128, 256)] + [_up(s) for s in (16, 32, 64, 128)]
            + [_layer(*layer) for layer in TYPICAL_LAYERS])


def unet_layers(group: str, *, width: int, depth: int, image_size: int,
                batch: int) -> Dict[str, Case]:
    """Every conv2d / conv_transpose2d layer of ``inn_cuda.tasks.UNet(width=width,
    depth=depth)`` on ``batch`` images of ``image_size`` x ``image_size``, by qualified module
    name, in execution order."""
    from ..tasks import UNet

    with torch.device("meta"):
        model = UNet(width=width, depth=depth).eval()
    layers: Dict[str, Case] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: Sequence[torch.Tensor]) -> None:
            transposed = isinstance(module, nn.ConvTranspose2d)
            n, c, size, _ = inputs[0].shape  # square images
            layers[name] = Case("conv_transpose2d" if transposed else "conv2d", group,
                                f"{group} {name}", batch=n, c_in=c, c_out=module.out_channels,
                                kernel=module.kernel_size[0], size=size,
                                stride=module.stride[0], padding=module.padding[0])
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.register_forward_pre_hook(record(name))
    model(torch.empty(batch, 1, image_size, image_size, device="meta"))
    return layers


def unet_cases(group: str, *, width: int, depth: int, image_size: int, batch: int) -> List[Case]:
    """The distinct layers of :func:`unet_layers` (``count``: how many share the shape)."""
    seen: Dict[tuple, Case] = {}
    for case in unet_layers(group, width=width, depth=depth, image_size=image_size,
                            batch=batch).values():
        key = tuple(v for k, v in asdict(case).items() if k not in ("name", "count"))
        seen[key] = replace(seen[key], count=seen[key].count + 1) if key in seen else case
    return list(seen.values())


def op_cases(*, quick: bool, groups: Sequence[str] = GROUPS, ops: Sequence[str] = OPS,
             paper_image_size: int = PAPER_UNET["image_size"]) -> List[Case]:
    """The documented cases of the chosen groups and ops (``quick``: the small sweep)."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"groups: expected names from {GROUPS}, got {sorted(unknown)}")
    cases: List[Case] = []
    if "sweep" in groups:
        cases += sweep_cases(quick)
    if "demo-unet" in groups:
        cases += unet_cases("demo-unet", **DEMO_UNET)
    if "paper-unet" in groups:
        cases += unet_cases("paper-unet", **dict(PAPER_UNET, image_size=paper_image_size))
    return [case for case in cases if case.op in ops]
