"""MC dropout and probabilistic-output baselines."""

import warnings

import pytest
import torch
import torch.fx
from torch import nn

from inn_cuda.baselines import (PAPER_PASSES, ProbOut, mc_dropout, probout_loss,
                                probout_uncertainty, split_probout)
from inn_cuda.tasks.models import ConvNet1d, UNet


def test_mc_dropout_std_is_zero_without_dropout():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1))
    x = torch.randn(2, 1, 8, 8)
    with pytest.warns(UserWarning, match="no nn.Dropout"):
        res = mc_dropout(model, x, passes=4)
    assert float(res.std.abs().max()) == 0.0
    torch.testing.assert_close(res.mean, model(x).detach())


def test_mc_dropout_std_positive_with_dropout_and_model_state_restored():
    model = UNet(width=4, depth=2, dropout=0.3, batchnorm=True)
    model.train()
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)][0]
    stats = bn.running_mean.clone()
    x = torch.randn(2, 1, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mc_dropout(model, x, passes=6, max_batch=4, seed=1)
    assert res.mean.shape == res.std.shape == (2, 1, 16, 16)
    assert float(res.std.min()) > 0
    assert torch.equal(bn.running_mean, stats)  # BatchNorm stayed in eval mode
    assert all(m.training for m in model.modules())  # modes restored
    again = mc_dropout(model, x, passes=6, max_batch=4, seed=1)
    torch.testing.assert_close(again.std, res.std)
    assert PAPER_PASSES["ct"] == 16 and PAPER_PASSES["deconv1d"] == 50


@pytest.mark.parametrize("max_batch", [1, 3, 100])
def test_mc_dropout_matches_bessel_std_of_the_passes(max_batch):
    model = ConvNet1d(width=4)
    x = torch.randn(2, 1, 32)
    outputs = []
    model.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    res = mc_dropout(model, x, passes=7, max_batch=max_batch, seed=0)
    passes = torch.cat(outputs).reshape(7, 2, 1, 32).double()
    torch.testing.assert_close(res.std, passes.std(0, correction=1).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res.mean, passes.mean(0).float(), rtol=1e-5, atol=1e-6)
    assert res.quantiles is None
    with pytest.raises(ValueError, match="passes"):
        mc_dropout(model, x, passes=1)


def test_mc_dropout_quantiles_of_the_passes():
    model = ConvNet1d(width=4)
    x = torch.randn(2, 1, 32)
    outputs = []
    model.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    res = mc_dropout(model, x, passes=9, max_batch=4, seed=0, quantiles=(0.1, 0.5, 0.9))
    passes = torch.cat(outputs).reshape(9, 2, 1, 32).double()
    expected = torch.quantile(passes, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64), dim=0)
    assert res.quantiles.shape == (3, 2, 1, 32)
    torch.testing.assert_close(res.quantiles, expected.float(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="quantiles"):
        mc_dropout(model, x, passes=3, quantiles=(1.5,))


def test_probout_head_and_loss_formula():
    base = UNet(width=4, depth=2).eval()
    model = ProbOut(base).eval()
    x = torch.randn(2, 1, 8, 8)
    out = model(x)
    assert out.shape == (2, 2, 8, 8)
    mu, s = split_probout(out)
    torch.testing.assert_close(mu, base(x))
    assert float(model.logvar_head.bias.detach()) == -3.0
    torch.testing.assert_close(model.logvar_head.weight, 0.1 * base.head.weight)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), out)
    # the loss by hand on two pixels: mu = (1, 2), s = (0, ln 4), y = (0, 0)
    hand = torch.tensor([[[1.0, 2.0]], [[0.0, 1.3862943611198906]]]).reshape(1, 2, 2)
    y = torch.zeros(1, 1, 2)
    expected = (1.0 * 1.0 + 4.0 / 4.0) / 2 + 3 * (0.0 + 1.3862943611198906) / 2
    assert float(probout_loss(hand, y)) == pytest.approx(expected)
    assert float(probout_loss(hand, y, log_variance_weight=1.0)) == pytest.approx(
        1.0 + 1.3862943611198906 / 2)
    mu, unc = probout_uncertainty(hand)
    torch.testing.assert_close(unc, torch.tensor([[[1.0, 2.0]]]))
    with pytest.raises(ValueError, match="target"):
        probout_loss(hand, torch.zeros(1, 1, 3))
    with pytest.raises(TypeError, match="forward_features"):
        ProbOut(nn.Conv2d(1, 1, 1))


class _SignFeatures(nn.Module):
    """A minimal network of the models' protocol: fixed features (x, relu(x), relu(-x)) and a
    1x1 convolution head, so the fine-tuning below cannot overfit the noise."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv1d(3, 1, 1)

    def forward_features(self, x):
        return torch.cat([x, torch.relu(x), torch.relu(-x)], dim=1)

    def forward_head(self, features, x):
        return self.head(features)

    def forward(self, x):
        return self.forward_head(self.forward_features(x), x)


@pytest.mark.slow
def test_probout_fine_tuning_lowers_the_loss_and_learns_the_noise_level():
    torch.manual_seed(0)
    model = ProbOut(_SignFeatures())
    x = torch.randn(64, 1, 32)
    noise = torch.where(x > 0, 0.05, 0.5)  # the noise level is visible in the input's sign
    y = x + noise * torch.randn(64, 1, 32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = probout_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 1.0
    _, unc = probout_uncertainty(model(x).detach())
    assert float(unc[x <= 0].mean()) > 2 * float(unc[x > 0].mean())


def test_probout_log_variance_floor_keeps_the_loss_finite():
    """Fine-tuning all parameters can fit a pixel exactly; without a floor its log-variance runs
    to -inf and the loss to NaN. The floor clamps s in the output itself."""
    import math

    from inn_cuda.baselines import ProbOut, probout_loss, split_probout
    base = UNet(width=4, depth=2).eval()
    x = torch.randn(2, 1, 8, 8)
    model = ProbOut(base, bias_init=-3.0, min_log_variance=-5.0)
    with torch.no_grad():
        model.logvar_head.bias.fill_(-1e4)  # as if training had driven s down without bound
    out = model(x)
    mu, s = split_probout(out)
    assert float(s.min()) == -5.0
    loss = probout_loss(out, mu.detach())  # a perfect fit: zero error everywhere
    assert math.isfinite(float(loss))
    free = ProbOut(base, bias_init=-3.0)
    with torch.no_grad():
        free.logvar_head.bias.fill_(-1e4)
    assert float(split_probout(free(x))[1].min()) < -5.0  # no floor unless asked
