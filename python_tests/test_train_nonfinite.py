"""Training stops at the first non-finite loss or gradient, names the epoch, the step and what
was not finite, and leaves the model (weights, optimizer, normalisation statistics) and the last
checkpoint as they were before that step; validation data with NaN targets is an error."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import inn_cuda
from inn_cuda.train import fit_intervals, fit_point, run_training
from inn_cuda.train import loop
from inn_cuda.train.loop import NonFiniteError

from train_helpers import loaders, point_mlp, regression_data


def _with_bad_target(dataset, index, value=math.nan):
    x, y = dataset.tensors
    y = y.clone()
    y[index] = value
    return TensorDataset(x, y)


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(model, snapshot):
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k


@pytest.fixture(params=["checked at once", "device-side flags"])
def guard_mode(request, monkeypatch):
    """The CPU's immediate check, and the CUDA scheme (flags kept on the device, fused Adam
    skipping the update, the error raised at the epoch's end) run on the CPU."""
    if request.param == "device-side flags":
        monkeypatch.setattr(loop, "_guard_on_device", lambda device: True)
    return request.param


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_training_target_stops_fit_point_at_that_step(tmp_path, value, guard_mode):
    train = regression_data(64, seed=0)
    good = DataLoader(train, batch_size=16)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    fit_point(model, good, epochs=1, run_dir=tmp_path, progress=False)
    checkpoint = (tmp_path / "checkpoint.pt").read_bytes()
    # Batch 3 (samples 32..47) of epoch 2 holds the bad target: steps 1 and 2 train, step 3 stops.
    bad = DataLoader(_with_bad_target(train, 40, value), batch_size=16)
    seen = []

    class Spy(DataLoader):
        def __iter__(self):
            for i, batch in enumerate(super().__iter__()):
                if i == 2:
                    seen.append(_snapshot(model))
                yield batch

    spy = Spy(bad.dataset, batch_size=16)
    loss = rf"{value}" if guard_mode == "checked at once" else "not finite"
    with pytest.raises(NonFiniteError, match=rf"point epoch 2, step 3: the loss is {loss}.* as "
                       "it was before this step; the last checkpoint"):
        fit_point(model, spy, epochs=2, run_dir=tmp_path, resume=True, progress=False)
    _assert_same(model, seen[0])  # weights and BatchNorm statistics
    assert (tmp_path / "checkpoint.pt").read_bytes() == checkpoint


def test_non_finite_gradient_names_the_parameter(guard_mode):
    train, _ = loaders(n_train=64)
    model = point_mlp()
    before = _snapshot(model)

    def loss_fn(module, batch):
        out = module(batch[0])
        # A finite loss whose gradient for the last layer's bias is NaN: sqrt at 0.
        return ((out - batch[1]).square().mean()
                + 0.0 * torch.sqrt(module[4].bias - module[4].bias.detach()).sum())

    with pytest.raises(NonFiniteError, match=r"custom epoch 1, step 1: the gradient of 4\.bias "
                       r"is not finite"):
        run_training(model, loss_fn, list(model.parameters()), train, epochs=1,
                     progress=False, desc="custom")
    _assert_same(model, before)


def test_nan_target_stops_fit_intervals_before_the_offsets_change():
    train, val = loaders(n_train=64, batch=16)
    model = inn_cuda.to_interval(point_mlp())
    fit_intervals(model, train, val, beta=1e-3, epochs=1, progress=False)
    before = _snapshot(model)
    bad = DataLoader(_with_bad_target(train.dataset, 5), batch_size=16)
    with pytest.raises(NonFiniteError, match=r"intervals epoch 1, step 1: the loss is nan"):
        fit_intervals(model, bad, val, beta=1e-3, epochs=1, progress=False)
    _assert_same(model, before)


@pytest.mark.parametrize("target_coverage", [None, 0.9])
def test_nan_validation_target_is_an_error(target_coverage):
    train, val = loaders(n_train=64)
    bad_val = DataLoader(_with_bad_target(val.dataset, 3), batch_size=128)
    model = inn_cuda.to_interval(point_mlp())
    with pytest.raises(ValueError, match="val_loader: the data holds NaN or infinite targets"):
        fit_intervals(model, train, bad_val, beta="adaptive", target_coverage=target_coverage,
                      epochs=1, progress=False)
    with pytest.raises(ValueError, match="val_loader: the data holds NaN or infinite targets"):
        fit_intervals(model, train, bad_val, beta=1e-3, target_coverage=target_coverage,
                      epochs=1, progress=False)
    with pytest.raises(ValueError, match="val_loader: the data holds NaN or infinite targets"):
        fit_point(point_mlp(), train, bad_val, epochs=1, progress=False)
