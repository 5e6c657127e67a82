"""Conversion of models written with functions and tensor methods instead of modules: every
supported form, one model, zero width exact and sampled networks inside the bounds."""

import io

import torch
import torch.nn as nn
import torch.nn.functional as F

from inn_cuda.convert import describe, to_interval
from nn_models import assert_contains, randomise_offsets, sampled_network


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(4)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.mix = nn.Parameter(torch.randn(4, 4, 1, 1, generator=generator) * 0.5)
        self.register_buffer("mean", torch.randn(4, generator=generator) * 0.1)
        self.register_buffer("var", torch.rand(4, generator=generator) + 0.5)
        self.gamma = nn.Parameter(torch.tensor([1.0, -0.5, 2.0, -1.0]))
        self.scale = nn.Parameter(torch.randn(4, 1, 1, generator=generator))
        self.fc = nn.Linear(16, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        h = self.conv(x)
        a, b = torch.chunk(h, 2, dim=1)
        h = torch.cat([F.relu(a), torch.sigmoid(b)], dim=1)
        h = F.conv2d(h, self.mix)  # a point weight: degenerate interval, input non-negative
        h = F.batch_norm(h, self.mean, self.var, self.gamma, None, False, 0.1, 1e-5)
        h = h * self.scale - 0.5 * h + h / 3 + 1.0
        h = F.gelu(h) + F.silu(h) * torch.tanh(h)  # the product of two intervals
        h = torch.abs(h).clamp(max=3.0) - h.sum(dim=1, keepdim=True).mean() * 0.1
        h = F.max_pool2d(h, 2)
        h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
        h = F.avg_pool2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), 2)
        h = F.adaptive_avg_pool2d(h, 2) + torch.ones_like(h[:, :, :2, :2]) * 0.5
        h = h + h.new_full(h.shape, -0.25)
        h = h.view(h.size(0), -1).relu().unsqueeze(1).squeeze(1)
        h = F.leaky_relu(self.fc(h), 0.1)
        h = torch.maximum(h, -h[:, :1]) + torch.flatten(h.permute(1, 0).contiguous().t(), 1)
        y = self.out(h)
        return y, torch.stack([y, -y], 0).transpose(0, 1)


def test_functional_forms_convert_exactly():
    model = Functional().double().eval()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    interval_model = to_interval(model)
    with torch.no_grad():
        expected = model(x)
        out = interval_model(x)
    assert isinstance(out, tuple) and len(out) == 2
    for got, want in zip(out, expected):
        assert torch.equal(got.point, want)
        assert torch.allclose(got.lo, want, atol=1e-12) and torch.allclose(got.hi, want, atol=1e-12)
    assert interval_model.fc.input_nonneg and not interval_model.out.input_nonneg
    mix = [n for n in interval_model.graph.nodes if n.name == "conv2d"]
    assert mix[0].kwargs["input_nonneg"] is True
    reports = {r.name: r for r in describe(interval_model)}
    assert reports["cat"].nonneg and not reports["batch_norm"].nonneg
    assert reports["ones_like"].nonneg and not reports["new_full"].nonneg


def test_functional_forms_contain_sampled_networks():
    model = Functional().double().eval()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    for last in (None, 1):
        interval_model = randomise_offsets(to_interval(model, last=last), scale=0.1)
        generator = torch.Generator().manual_seed(5)
        with torch.no_grad():
            out = interval_model(x)
            assert float(out[0].width.max()) > 0
            for _ in range(3):
                sampled = sampled_network(model, interval_model, generator)(x)
                for got, y in zip(out, sampled):
                    assert_contains(got, y, f"functional last={last}")


def test_pickled_interval_model_reloads_with_the_same_graph():
    # GraphModule pickles its code and re-traces it on load; the interval functions and the
    # interval modules must come back as single nodes
    model = Functional().double().eval()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    interval_model = randomise_offsets(to_interval(model), scale=0.1)
    buffer = io.BytesIO()
    torch.save(interval_model, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        for a, b in zip(interval_model(x), restored(x)):
            assert torch.equal(a.lo, b.lo) and torch.equal(a.hi, b.hi)
            assert torch.equal(a.point, b.point)
    assert restored.fc.input_nonneg
