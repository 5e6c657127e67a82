"""Default networks: shapes, options, the ProbOut protocol and torch.fx tracing."""

import pytest
import torch
import torch.fx

from inn_cuda.tasks.models import ConvNet1d, UNet


@pytest.mark.parametrize("kwargs", [{}, {"upsampling": "nearest", "depth": 2},
                                    {"batchnorm": True, "residual": False, "out_channels": 2}])
def test_unet_shapes_and_fx_trace(kwargs):
    model = UNet(width=4, **kwargs).eval()
    x = torch.randn(2, 1, 16, 16)
    out = model(x)
    assert out.shape == (2, kwargs.get("out_channels", 1), 16, 16)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), out)
    ops = {n.op for n in traced.graph.nodes}
    assert "call_module" in ops
    n_dropout = sum(isinstance(m, torch.nn.Dropout) for m in model.modules())
    assert n_dropout == 2 * len(model.down)  # after every down- and upsampling


def test_unet_protocol_and_residual():
    model = UNet(width=4, depth=2).eval()
    x = torch.randn(1, 1, 8, 8)
    features = model.forward_features(x)
    assert features.shape == (1, 4, 8, 8)
    torch.testing.assert_close(model.forward_head(features, x), model.head(features) + x)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    torch.testing.assert_close(model(x), x)  # a residual net with a zero head is the identity


def test_unet_dropout_is_active_in_training_mode_only():
    model = UNet(width=4, depth=2, dropout=0.5)
    x = torch.randn(1, 1, 16, 16)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_model_arguments_are_checked():
    with pytest.raises(ValueError, match="upsampling"):
        UNet(upsampling="bilinear")
    with pytest.raises(ValueError, match="residual"):
        UNet(in_channels=1, out_channels=2)
    with pytest.raises(ValueError, match="dropout"):
        UNet(dropout=1.0)
    with pytest.raises(ValueError, match="dropout_scale"):
        ConvNet1d(dropout_scale=2.0)


def test_convnet1d_layout_and_fx_trace():
    model = ConvNet1d(width=16).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 10
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256, 256, 256, 64, 32, 1]
    assert all(c.kernel_size == (5,) for c in convs[:9]) and convs[9].kernel_size == (1,)
    rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates == [0.2, 0.5, 0.5]
    small = ConvNet1d().eval()
    x = torch.randn(3, 1, 64)
    traced = torch.fx.symbolic_trace(small)
    torch.testing.assert_close(traced(x), small(x))
    assert small(x).shape == (3, 1, 64)
