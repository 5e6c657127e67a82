"""Tiny re-creations of the idioms of third-party model libraries (MONAI, torchvision, timm), as
their code writes them, for the conversion tests: the libraries themselves are not test
dependencies. Each ``make_*`` returns ``(model in eval mode, input)`` with random weights (and
random normalisation statistics and affine parameters, negative PReLU slopes included)."""


import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F


def _randomise(model, generator):
    """Random affine parameters, running statistics and PReLU slopes of either sign."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.PReLU):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.5)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm,
                                     nn.InstanceNorm2d, nn.InstanceNorm1d)):
                if getattr(module, "weight", None) is not None:
                    module.weight.copy_(1 + 0.5 * torch.randn(module.weight.shape,
                                                              generator=generator))
                    module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
                if getattr(module, "running_mean", None) is not None:
                    module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape,
                                                                generator=generator))
                    module.running_var.copy_(0.5 + torch.rand(module.running_var.shape,
                                                              generator=generator))
    return model


# ------------------------------------------------------------------------------- MONAI style

class Convolution(nn.Sequential):
    """monai.networks.blocks.Convolution: conv (or transposed conv), InstanceNorm, PReLU."""

    def __init__(self, c_in, c_out, strides=1, transpose=False, conv_only=False):
        super().__init__()
        if transpose:
            self.add_module("conv", nn.ConvTranspose2d(c_in, c_out, 3, strides, 1,
                                                       output_padding=strides - 1))
        else:
            self.add_module("conv", nn.Conv2d(c_in, c_out, 3, strides, 1))
        if not conv_only:
            self.add_module("adn", nn.Sequential())
            self.adn.add_module("N", nn.InstanceNorm2d(c_out, affine=True))
            self.adn.add_module("A", nn.PReLU(c_out))


class ResidualUnit(nn.Module):
    """monai.networks.blocks.ResidualUnit: two Convolutions plus a (strided) residual conv."""

    def __init__(self, c_in, c_out, strides=1):
        super().__init__()
        self.conv = nn.Sequential(Convolution(c_in, c_out, strides), Convolution(c_out, c_out))
        self.residual = nn.Conv2d(c_in, c_out, 3 if strides != 1 else 1, strides,
                                  1 if strides != 1 else 0)

    def forward(self, x):
        return self.conv(x) + self.residual(x)


class MonaiUNet(nn.Module):
    """monai.networks.nets.UNet (2 levels): residual down units, transposed-conv up, skip cat."""

    def __init__(self, channels=(4, 6, 8)):
        super().__init__()
        c0, c1, c2 = channels
        self.down0 = ResidualUnit(1, c0, 2)
        self.down1 = ResidualUnit(c0, c1, 2)
        self.bottom = ResidualUnit(c1, c2, 1)
        self.up1 = Convolution(c1 + c2, c0, 2, transpose=True)
        self.up0 = Convolution(2 * c0, 1, 2, transpose=True, conv_only=True)

    def forward(self, x):
        d0 = self.down0(x)
        d1 = self.down1(d0)
        u1 = self.up1(torch.cat([d1, self.bottom(d1)], dim=1))
        return self.up0(torch.cat([d0, u1], dim=1))


class UpCat(nn.Module):
    """monai.networks.nets.basic_unet.UpCat: the skip is added only ``if isinstance(x_e,
    torch.Tensor)``, which is False for torch.fx proxies (the trace silently drops it)."""

    def __init__(self, c_in, c_cat, c_out):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(c_in, c_in // 2, 2, stride=2)
        self.convs = nn.Sequential(nn.Conv2d(c_cat + c_in // 2, c_out, 3, padding=1),
                                   nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.1))
        self.pad = nn.Conv2d(c_in // 2, c_cat + c_in // 2, 1)  # keeps the no-skip branch valid

    def forward(self, x, x_e):
        x0 = self.upsample(x)
        if isinstance(x_e, torch.Tensor):
            x = torch.cat([x_e, x0], dim=1)
        else:
            x = self.pad(x0)
        return self.convs(x)


# ------------------------------------------------------------------------- torchvision style

class LayerNorm2d(nn.LayerNorm):
    """torchvision.models.convnext.LayerNorm2d: channels-first LayerNorm by permutes."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def tv_stochastic_depth(input, p, mode, training=True):
    """torchvision.ops.stochastic_depth (fx-wrapped there as here)."""
    if not training or p == 0.0:
        return input
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device).bernoulli_(1 - p)
    return input * noise.div_(1 - p)


tv_stochastic_depth.__module__ = "torchvision.ops.stochastic_depth"
tv_stochastic_depth.__name__ = "stochastic_depth"
torch.fx.wrap("tv_stochastic_depth")


class StochasticDepth(nn.Module):
    def __init__(self, p, mode):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x):
        return tv_stochastic_depth(x, self.p, self.mode, self.training)


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    """torchvision.models.convnext.CNBlock: depthwise 7x7 (5x5 here), channels-last LayerNorm,
    MLP, layer scale, stochastic depth."""

    def __init__(self, dim, p=0.1):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 5, padding=2, groups=dim), Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(),
            nn.Linear(4 * dim, dim), Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 0.5))
        self.stochastic_depth = StochasticDepth(p, "row")

    def forward(self, x):
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 2, stride=2), LayerNorm2d(dim, eps=1e-6))
        self.stage = nn.Sequential(CNBlock(dim), CNBlock(dim))
        self.down = nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, 2 * dim, 2, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(2 * dim),
                                  nn.Linear(2 * dim, 3))

    def forward(self, x):
        return self.head(self.down(self.stage(self.stem(x))))


class GNBlock(nn.Module):
    """A ResNet BasicBlock with GroupNorm (as in segmentation backbones)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.gn1 = nn.GroupNorm(2, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.gn2 = nn.GroupNorm(2, c_out)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.GroupNorm(2, c_out))

    def forward(self, x):
        h = F.relu(self.gn1(self.conv1(x)))
        return F.relu(self.gn2(self.conv2(h)) + self.shortcut(x))


class GNResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU())
        self.layers = nn.Sequential(GNBlock(4, 4, 1), GNBlock(4, 8, 2))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1)
        return self.fc(torch.flatten(h, 1))


# -------------------------------------------------------------------------------- timm style

class TimmLinear(nn.Linear):
    """timm.layers.Linear: an overriding forward that is nn.Linear's outside TorchScript."""

    def forward(self, input):
        if torch.jit.is_scripting():
            bias = self.bias.to(dtype=input.dtype) if self.bias is not None else None
            return F.linear(input, self.weight.to(dtype=input.dtype), bias=bias)
        return F.linear(input, self.weight, self.bias)


def drop_path(x, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True):
    """timm.layers.drop_path."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


class DropPath(nn.Module):
    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training)


class BatchNormAct2d(nn.BatchNorm2d):
    """timm.layers.BatchNormAct2d: F.batch_norm, dropout and activation in one forward."""

    def __init__(self, num_features, act_layer=nn.ReLU):
        super().__init__(num_features)
        self.drop = nn.Identity()
        self.act = act_layer()

    def forward(self, x):
        exponential_average_factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        bn_training = True if self.training else \
            (self.running_mean is None) and (self.running_var is None)
        x = F.batch_norm(x, self.running_mean if not self.training or self.track_running_stats
                         else None, self.running_var if not self.training or
                         self.track_running_stats else None, self.weight, self.bias,
                         bn_training, exponential_average_factor, self.eps)
        return self.act(self.drop(x))


class TimmConvBnAct(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = BatchNormAct2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, groups=3, bias=False)
        self.bn2 = BatchNormAct2d(6, act_layer=nn.SiLU)
        self.drop_path = DropPath(0.2)
        self.head = TimmLinear(6, 2)

    def forward(self, x):
        h = self.bn1(self.conv1(x))
        h = h + self.drop_path(self.bn2(self.conv2(h)))
        return self.head(h.mean((2, 3)))


class TimmAttention(nn.Module):
    """timm.models.vision_transformer.Attention: fused qkv, F.scaled_dot_product_attention."""

    def __init__(self, dim, heads, causal=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class ViTBlock(nn.Module):
    def __init__(self, dim, heads, timm_attention=False, causal=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.timm_attention = timm_attention
        self.attn = TimmAttention(dim, heads, causal) if timm_attention else \
            nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + (self.attn(h) if self.timm_attention else self.attn(h, h, h,
                                                                     need_weights=False)[0])
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small vision transformer: patch embedding, class token, position embedding, one
    nn.MultiheadAttention block and one timm-style (SDPA) block, class-token head."""

    def __init__(self, dim=8, heads=2, image=8, patch=4, causal=False):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, patch, stride=patch)
        tokens = (image // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.1)
        self.blocks = nn.Sequential(ViTBlock(dim, heads),
                                    ViTBlock(dim, heads, timm_attention=True, causal=causal))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


class InstanceNorm1dNet(nn.Module):
    """InstanceNorm1d with running statistics (exact affine map) and InstanceNorm2d without
    affine parameters."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.norm = nn.InstanceNorm1d(4, affine=True, track_running_stats=True)
        self.conv2 = nn.Conv1d(4, 4, 3, padding=1)
        self.norm2 = nn.InstanceNorm1d(4)
        self.act = nn.PReLU()
        self.fc = nn.Linear(4 * 6, 2)

    def forward(self, x):
        h = self.act(self.norm2(self.conv2(self.norm(self.conv(x)))))
        return self.fc(h.flatten(1))


MAKERS = {
    "monai_unet": (MonaiUNet, (2, 1, 8, 8)),
    "convnext": (ConvNeXt, (2, 3, 8, 8)),
    "gn_resnet": (GNResNet, (2, 3, 8, 8)),
    "vit": (ViT, (2, 1, 8, 8)),
    "vit_causal": (lambda: ViT(causal=True), (2, 1, 8, 8)),
    "timm_bn_act": (TimmConvBnAct, (2, 3, 6, 6)),
    "instance_norm_1d": (InstanceNorm1dNet, (2, 2, 6)),
}


def make(name, seed=0):
    generator = torch.Generator().manual_seed(seed)
    maker, shape = MAKERS[name]
    torch.manual_seed(seed)
    model = _randomise(maker(), generator).double().eval()
    return model, torch.randn(shape, generator=generator, dtype=torch.float64)


def parametrised_layers(model):
    """Names of the layers a conversion must give intervals: the Linear/Conv layers and each
    nn.MultiheadAttention as a whole (not its out_proj: the attention layer holds its offsets)."""
    inside_mha = {f"{name}.{child}" for name, m in model.named_modules()
                  if isinstance(m, nn.MultiheadAttention) for child, _ in m.named_modules()
                  if child}
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.MultiheadAttention)
    return sorted(name for name, m in model.named_modules()
                  if isinstance(m, kinds) and name not in inside_mha
                  and not name.endswith("pad"))


