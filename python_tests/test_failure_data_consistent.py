"""The failure generators that make failures fail: the measurement-domain attack (norm bound,
mask from the realised change), artifacts visible in the measurement, the error-rise check."""

import math

import pytest
import torch
from torch import nn

from inn_cuda import failure
from inn_cuda.failure import AdversarialTarget
from inn_cuda.tasks import LimitedAngleCT, shepp_logan
from inn_cuda.tasks.deconv1d import Deconvolution1D, piecewise_constant


def _plateau_target(depth=0.5, lo=20, hi=40):
    def make(rec):
        target = rec.clone()
        target[..., lo:hi] -= depth
        mask = torch.zeros_like(rec, dtype=torch.bool)
        mask[..., lo:hi] = True
        return AdversarialTarget(target, mask, [None] * rec.shape[0])
    return make


class _Smooth(nn.Module):
    """A fixed linear 'network' (a conv with a parameter, as the search expects one)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 5, padding=2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(0.2)

    def forward(self, x):
        return self.conv(x)


class _Blind(nn.Module):
    """Ignores its input: no measurement can change its output."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return 0.0 * x + self.bias  # connected to x, with zero gradient


@pytest.mark.parametrize("k", [0.5, 2.0])
def test_measurement_attack_respects_the_noise_bound(k):
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(3, 1, 64, generator=gen)
    std = torch.tensor([0.01, 0.02, 0.05])
    res = failure.measurement_attack(_Smooth(), m, lambda v: v, _plateau_target(), noise_std=std,
                                     k=k, max_iter=10)
    norms = (res.measurement - m).flatten(1).norm(dim=1).double()
    bound = k * std.double() * math.sqrt(64)
    assert bool((norms <= bound * (1 + 1e-5)).all())
    assert torch.allclose(res.noise_ratio, norms / (std.double() * 8), rtol=1e-5)
    assert bool((res.noise_ratio > 0.9 * k).all())  # the bound is binding: the target is far
    torch.testing.assert_close(res.x_adv, res.measurement)  # identity reconstruction


def test_measurement_attack_mask_is_the_realised_change():
    m = torch.zeros(2, 1, 64)
    truth = torch.ones(2, 1, 64) * 0.1
    # a network that cannot be moved: the intended region is not the mask
    blind = failure.measurement_attack(_Blind(), m, lambda v: v, _plateau_target(), noise_std=0.1,
                                       k=1.0, max_iter=5, truth=truth)
    assert bool(blind.intended_mask.any()) and not bool(blind.mask.any())
    assert float(blind.realised.abs().max()) < 1e-6
    # a network that follows (a generous bound): the mask covers the intended plateau
    free = failure.measurement_attack(_Smooth(), m, lambda v: v, _plateau_target(), noise_std=1.0,
                                      k=10.0, max_iter=20, truth=truth)
    assert bool(free.mask[..., 22:38].all())
    assert float(free.realised.min()) > 0.5
    change = (free.search.objective_end < free.search.objective_start).all()
    assert bool(change)
    # change relative to the clean error (||f(x) - y|| = 0.1 * 8 = 0.8 where f(0) = 0)
    out = _Smooth()(free.x_adv).detach()
    expected = out.flatten(1).norm(dim=1).double() / (0.1 * 8)
    torch.testing.assert_close(free.change_ratio, expected, rtol=1e-4, atol=1e-6)


def test_measurement_attack_through_fbp_stays_on_the_sinogram():
    ct = LimitedAngleCT(16)
    truth = shepp_logan(16)[None, None]
    sino = ct.radon(truth)
    net = nn.Conv2d(1, 1, 3, padding=1)
    res = failure.measurement_attack(
        net, sino, ct.fbp, lambda rec: failure.adversarial_target(rec, extent=4, seed=0),
        noise_std=0.01 * float(sino.abs().max()), k=1.0, max_iter=5, truth=truth)
    assert res.measurement.shape == sino.shape
    torch.testing.assert_close(res.x_adv, ct.fbp(res.measurement))
    assert float(res.noise_ratio.max()) <= 1.0 + 1e-5
    assert float(res.noise_ratio.min()) > 0.5  # the search moved through the FBP
    assert bool((res.search.objective_end < res.search.objective_start).all())
    with pytest.raises(ValueError, match="noise_std"):
        failure.measurement_attack(net, sino, ct.fbp, _plateau_target(), noise_std=0.0)


@pytest.mark.parametrize("kind", ["bright", "metal", "textured"])
def test_ct_artifacts_are_outside_the_phantom_family_and_visible_in_the_sinogram(kind):
    ct = LimitedAngleCT(32)
    truth = torch.stack([shepp_logan(32)] * 2)[:, None]
    case = failure.insert_artifact(truth, ct.simulate, kind=kind, seed=1, scale=0.4,
                                   shape=None)
    inside = case.ground_truth[case.mask.expand_as(truth)]
    peak = float(truth.max())
    if kind == "textured":
        assert float(inside.max()) > peak and float(inside.min()) == 0.0
    else:
        assert float(inside.min()) > peak  # brighter than any structure of the phantom
    # visible in the measurement: the sinogram change exceeds the noise of the strongest level
    change = (ct.radon(case.ground_truth) - ct.radon(truth)).abs()
    noise_std = 0.04 * float(ct.radon(truth).abs().max())
    assert float(change.amax()) > 3 * noise_std


@pytest.mark.parametrize("kind", ["spike", "ramp"])
def test_1d_artifacts_are_visible_in_the_measurement_above_the_noise(kind):
    task = Deconvolution1D(length=256, noise_sigma=0.02)
    gen = torch.Generator().manual_seed(0)
    signals = piecewise_constant(4, 256, max_jumps=10, generator=gen)[:, None]
    case = failure.insert_artifact1d(signals, lambda s: (task.blur(s), s), task.blur, kind=kind,
                                     length=32, seed=2)
    change = (case.input - task.blur(signals)).abs().flatten(1).amax(1)
    assert bool((change > 5 * task.noise_sigma).all())
    altered = (case.ground_truth != signals)
    assert bool((case.mask | ~altered).all())  # the footprint holds every altered sample
    if kind == "spike":
        assert int(altered[0].sum()) == failure.SPIKE_WIDTH
    # the former oscillation (period 8, amplitude 0.5) under this blur stays below the noise
    amplitude, period = failure.OSCILLATION
    wave = amplitude * torch.sin(2 * math.pi * torch.arange(256.0) / period)
    assert float(task.blur(wave)[32:-32].abs().max()) < task.noise_sigma


def test_error_rise_tells_a_failure_from_none():
    truth = torch.zeros(2, 1, 8, 8)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[..., 2:5, 2:5] = True
    clean_rec = truth + 0.1
    failing = failure.error_rise(truth + 0.1 + 0.4 * mask, truth, clean_rec, truth, mask)
    assert failing.ratio.tolist() == [pytest.approx(5.0), pytest.approx(5.0)]
    typical = failure.error_rise(truth + 0.1, truth, clean_rec, truth, mask)
    assert typical.ratio.tolist() == [pytest.approx(1.0), pytest.approx(1.0)]
    with pytest.raises(ValueError, match="footprint"):
        failure.error_rise(truth, truth, truth, truth, torch.zeros_like(mask))
