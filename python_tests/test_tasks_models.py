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


def test_unet_paper_layout_shapes_and_dropout_placement():
    """The paper's decoder: nearest upsampling + 2x2 'same' conv + ReLU, dropout only on the
    concatenation of skip and upsampled features (the input of each decoder level's convs)."""
    from inn_cuda.tasks.models import PAPER_INN_LAST

    model = UNet(width=4, depth=3, dropout=0.5, upsampling="paper", residual=False).eval()
    x = torch.randn(2, 1, 16, 16)
    assert model(x).shape == (2, 1, 16, 16)
    torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x))
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 3 and all(m.p == 0.5 for m in dropouts)
    assert all(isinstance(m, torch.nn.Dropout) for m in model.merge)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.down.modules())
    for up in model.up:
        kinds = [type(m) for m in up]
        assert kinds == [torch.nn.Upsample, torch.nn.Conv2d, torch.nn.ReLU]
        assert up[1].kernel_size == (2, 2) and up[0].mode == "nearest"
    # the dropout sees the concatenation: its input has 2x the level's channels
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
             for m in model.merge]
    model(x)
    for h in hooks:
        h.remove()
    assert seen == [2 * c.out_channels for c in (u[1] for u in model.up)]
    # Keras 'same' for an even kernel pads after: the last row/col reads one zero
    conv = model.up[-1][1]
    probe = torch.zeros(1, conv.in_channels, 4, 4)
    probe[..., -1, -1] = 1.0
    assert conv(probe).shape[-2:] == (4, 4)
    # dropout active in train mode on the concatenation only
    model.train()
    assert not torch.equal(model(x), model(x))
    # the paper's "last 12 Keras layers" are the last 7 parametrised layers
    traced = torch.fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    convs = [modules[n.target] for n in traced.graph.nodes
             if n.op == "call_module" and isinstance(modules[n.target], torch.nn.Conv2d)]
    last = convs[-PAPER_INN_LAST:]
    assert last[-1] is model.head
    assert sum(c.kernel_size == (2, 2) for c in last) == 2
    with pytest.raises(ValueError, match="upsampling"):
        UNet(upsampling="bilinear")
