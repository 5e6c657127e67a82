"""The shared training loop: a caller's own loss, frozen parameters, metrics log, checkpoints,
resume, errors. Interval-specific behaviour is in test_train_intervals.py."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from inn_cuda.train import CheckpointError, fit_point, run_training
from inn_cuda.train import checkpoint as ckpt
from inn_cuda.train.loop import batch_size, move_to

from train_helpers import loaders, point_mlp, regression_data


class Interrupted(Exception):
    pass


class InterruptingLoader(DataLoader):
    """A DataLoader that raises after yielding ``stop_after`` batches in total (a crash or
    Ctrl-C in the middle of an epoch)."""

    def __init__(self, *args, stop_after, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop_after = stop_after
        self.yielded = 0

    def __iter__(self):
        for batch in super().__iter__():
            if self.yielded == self.stop_after:
                raise Interrupted
            self.yielded += 1
            yield batch


def _without_time(history):
    return [{k: v for k, v in record.items() if k != "time_s"} for record in history]


def _state_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------------- a caller's own loss

def _huber_loss(module, batch):
    x, y = batch
    pred = module(x)
    return F.smooth_l1_loss(pred, y), {"abs_err": (pred - y).abs().mean()}


def test_custom_loss_trains_only_the_given_parameters_and_logs(tmp_path):
    train, _ = loaders()
    model = point_mlp()
    trained = list(model[4].parameters())
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("4.")}
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("4.")}
    result = run_training(model, _huber_loss, trained, train, epochs=3, lr=1e-2,
                          run_dir=tmp_path, seed=0, progress=False, kind="huber")

    after = model.state_dict()
    for key, value in frozen.items():
        assert torch.equal(after[key], value), f"{key} changed although it was not trained"
    assert not all(torch.equal(after[k], v) for k, v in before.items())
    assert all(p.requires_grad for p in model.parameters()), "requires_grad flags not restored"

    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert _without_time(lines) == _without_time(result.history)
    assert {"train_loss", "train_abs_err", "time_s"} <= lines[0].keys()
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    saved = ckpt.read_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["epoch"] == 3 and saved["signature"]["kind"] == "huber"
    _state_equal(saved["model"], model.state_dict())


def test_seed_makes_cpu_runs_bit_identical():
    train, val = loaders()
    states = []
    for _ in range(2):
        model = point_mlp(seed=1)
        fit_point(model, train, val, epochs=2, seed=5, progress=False)
        states.append(model.state_dict())
    _state_equal(*states)


@pytest.mark.parametrize("bad, match", [
    (dict(epochs=-1), "epochs"), (dict(lr=0.0), "lr"), (dict(autocast="fp8"), "autocast"),
])
def test_bad_arguments_are_named(bad, match):
    train, _ = loaders()
    model = point_mlp()
    kwargs = dict(epochs=1, lr=1e-3, progress=False)
    kwargs.update(bad)
    if "autocast" in bad:
        kwargs["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    with pytest.raises(ValueError, match=match):
        run_training(model, _huber_loss, list(model.parameters()), train, **kwargs)


def test_autocast_on_cpu_is_refused_with_a_clear_error():
    train, _ = loaders()
    model = point_mlp()
    with pytest.raises(ValueError, match="CUDA only"):
        fit_point(model, train, epochs=1, autocast="bf16", progress=False)


def test_parameters_not_in_the_model_are_refused():
    train, _ = loaders()
    with pytest.raises(ValueError, match="not parameters of the model"):
        run_training(point_mlp(), _huber_loss, [nn.Parameter(torch.zeros(1))], train, epochs=1,
                     progress=False)


def test_non_finite_loss_stops_before_overwriting_the_checkpoint(tmp_path):
    train, _ = loaders()
    model = point_mlp()
    fit_point(model, train, epochs=1, run_dir=tmp_path, progress=False)
    good = (tmp_path / "checkpoint.pt").read_bytes()

    def nan_loss(module, batch):
        return module(batch[0]).mean() * math.nan

    with pytest.raises(FloatingPointError, match="step 1: the loss is nan.*last checkpoint"):
        run_training(model, nan_loss, list(model.parameters()), train, epochs=1,
                     run_dir=tmp_path, overwrite=True, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == good


def test_batch_helpers():
    batch = {"x": torch.zeros(3, 2), "meta": "a", "pair": (torch.ones(3), 4)}
    assert batch_size(batch) == 3
    moved = move_to(batch, torch.device("cpu"))
    assert moved["meta"] == "a" and moved["pair"][1] == 4
    with pytest.raises(TypeError, match="cannot find a tensor"):
        batch_size(["no", "tensor"])


# ---------------------------------------------------------------------------------- resume

@pytest.mark.parametrize("shuffle_generator", [False, True],
                         ids=["global-rng-shuffle", "loader-generator-shuffle"])
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, shuffle_generator):
    """Interrupt in the middle of epoch 3 of 4; resuming from the epoch-2 checkpoint gives
    bit-for-bit the weights, optimizer state and history of the run that was never stopped.
    The model has dropout (global RNG) and the loader shuffles (global RNG or its generator)."""
    data = regression_data(128, seed=0)
    val = DataLoader(regression_data(64, seed=1), batch_size=64)

    def model_with_dropout():
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))

    def loader(stop_after=None):
        generator = torch.Generator().manual_seed(7) if shuffle_generator else None
        if stop_after is None:
            return DataLoader(data, batch_size=32, shuffle=True, generator=generator)
        return InterruptingLoader(data, batch_size=32, shuffle=True, generator=generator,
                                  stop_after=stop_after)

    whole = model_with_dropout()
    expected = fit_point(whole, loader(), val, epochs=4, run_dir=tmp_path / "whole", seed=11,
                         progress=False)

    broken = model_with_dropout()
    with pytest.raises(Interrupted):
        fit_point(broken, loader(stop_after=2 * 4 + 1), val, epochs=4,
                  run_dir=tmp_path / "broken", seed=11, progress=False)
    assert ckpt.read_checkpoint(tmp_path / "broken" / "checkpoint.pt")["epoch"] == 2

    resumed_model = model_with_dropout()
    torch.manual_seed(12345)  # the resumed process starts from some other RNG state
    resumed = fit_point(resumed_model, loader(), val, epochs=4, run_dir=tmp_path / "broken",
                        resume=True, seed=11, progress=False)
    assert resumed.resumed_from == 2
    _state_equal(resumed_model.state_dict(), whole.state_dict())
    assert _without_time(resumed.history) == _without_time(expected.history)
    whole_opt = ckpt.read_checkpoint(tmp_path / "whole" / "checkpoint.pt")["optimizer"]
    resumed_opt = ckpt.read_checkpoint(tmp_path / "broken" / "checkpoint.pt")["optimizer"]
    for index, state in whole_opt["state"].items():
        for key, value in state.items():
            assert torch.equal(value, resumed_opt["state"][index][key]), (index, key)
    log = [json.loads(line) for line in
           (tmp_path / "broken" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]


def test_fresh_run_does_not_overwrite_an_existing_checkpoint(tmp_path):
    train, _ = loaders()
    fit_point(point_mlp(), train, epochs=1, run_dir=tmp_path, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(FileExistsError, match="resume=True"):
        fit_point(point_mlp(), train, epochs=1, run_dir=tmp_path, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_resume_needs_an_existing_checkpoint(tmp_path):
    train, _ = loaders()
    with pytest.raises(CheckpointError, match="does not exist"):
        fit_point(point_mlp(), train, epochs=1, run_dir=tmp_path, resume=True, progress=False)


def _files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_corrupt_checkpoint_is_reported_and_left_intact(tmp_path, damage):
    train, _ = loaders()
    fit_point(point_mlp(), train, epochs=1, run_dir=tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    files = _files(tmp_path)
    model = point_mlp()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=f"checkpoint {path}"):
        fit_point(model, train, epochs=2, run_dir=tmp_path, resume=True, progress=False)
    assert _files(tmp_path) == files
    _state_equal(model.state_dict(), weights)


def test_mismatched_model_is_reported_and_nothing_changes(tmp_path):
    train, _ = loaders()
    fit_point(point_mlp(hidden=16), train, epochs=1, run_dir=tmp_path, progress=False)
    files = _files(tmp_path)
    other = point_mlp(hidden=8)
    weights = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"does not match this run's model state.*"
                                              r"0\.weight: checkpoint \(16, 4\)"):
        fit_point(other, train, epochs=2, run_dir=tmp_path, resume=True, progress=False)
    assert _files(tmp_path) == files
    _state_equal(other.state_dict(), weights)


def test_checkpoint_of_another_kind_of_run_is_refused(tmp_path):
    train, _ = loaders()
    model = point_mlp()
    run_training(model, _huber_loss, list(model.parameters()), train, epochs=1,
                 run_dir=tmp_path, kind="huber", progress=False)
    with pytest.raises(CheckpointError, match="kind: checkpoint has 'huber', this run has "
                                              "'point'"):
        fit_point(point_mlp(), train, epochs=2, run_dir=tmp_path, resume=True, progress=False)


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    train, _ = loaders()
    model = point_mlp()
    fit_point(model, train, epochs=1, run_dir=tmp_path, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def failing_save(obj, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        fit_point(model, train, epochs=2, run_dir=tmp_path, resume=True, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    monkeypatch.undo()
    assert ckpt.read_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible")
@pytest.mark.parametrize("autocast", [None, "bf16", "fp16"])
def test_point_training_on_cuda(autocast):
    train, val = loaders()
    model = point_mlp()
    result = fit_point(model, train, val, epochs=3, lr=1e-2, device="cuda", autocast=autocast,
                       seed=0, progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
