"""The core (ops, reference, nn, convert, train, uncertainty) runs without the study stack
(NumPy, Matplotlib, SciPy, scikit-learn, Pillow): a fresh interpreter whose imports of those
packages fail imports inn_cuda, runs every op forward and backward, a layer, to_interval,
fit_intervals with a checkpoint and resume, and MC-free interval uncertainty; the study modules
then fail with an ImportError that names the extra."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import sys

BLOCKED = {"numpy", "matplotlib", "scipy", "sklearn", "PIL", "skimage", "pandas"}


# None in sys.modules: `import numpy` raises ModuleNotFoundError and importlib.util.find_spec
# returns None, exactly as when the package is not installed.
for name in BLOCKED:
    sys.modules[name] = None

import tempfile

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import inn_cuda
from inn_cuda.train import fit_intervals, fit_point

torch.manual_seed(0)


def pair(*shape):
    lo = torch.randn(*shape, dtype=torch.float64)
    return lo, lo + torch.rand(*shape, dtype=torch.float64)


calls = [
    (inn_cuda.interval_linear, pair(3, 5), pair(4, 5), {}),
    (inn_cuda.interval_conv1d, pair(2, 3, 9), pair(4, 3, 3), {}),
    (inn_cuda.interval_conv2d, pair(2, 3, 7, 7), pair(4, 3, 3, 3), {}),
    (inn_cuda.interval_conv_transpose2d, pair(2, 3, 5, 5), pair(3, 4, 3, 3), {}),
]
for op, (x_lo, x_hi), (w_lo, w_hi), kwargs in calls:
    tensors = [t.requires_grad_() for t in (x_lo, x_hi, w_lo, w_hi)]
    y_lo, y_hi = op(*tensors, **kwargs)
    (y_lo.sum() + y_hi.sum()).backward()
    assert bool((y_lo <= y_hi).all()) and all(t.grad is not None for t in tensors), op

layer = inn_cuda.nn.IntervalConv2d(1, 2, 3, padding=1)
out = layer(torch.rand(1, 1, 6, 6))
assert out.lo.shape == (1, 2, 6, 6)

g = torch.Generator().manual_seed(0)
x = torch.rand(64, 1, 8, 8, generator=g)
y = x + 0.05 * torch.randn(x.shape, generator=g)
train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16, shuffle=True,
                   generator=torch.Generator().manual_seed(1))
val = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16)
point = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
fit_point(point, train, val, epochs=1, progress=False, seed=0)
model = inn_cuda.to_interval(point)
with tempfile.TemporaryDirectory() as run_dir:
    fit_intervals(model, train, val, epochs=1, progress=False, seed=0, run_dir=run_dir)
    result = fit_intervals(model, train, val, epochs=2, progress=False, seed=0,
                           run_dir=run_dir, resume=True)
assert result.resumed_from == 1 and result.coverage == result.coverage
with torch.no_grad():
    interval = model(x[:2])
assert bool((interval.lo <= interval.hi).all())

leaked = sorted(m for m, module in sys.modules.items()
                if m.split(".")[0] in BLOCKED and module is not None)
assert not leaked, leaked

for study in ("inn_cuda.tasks", "inn_cuda.experiment", "inn_cuda.metrics", "inn_cuda.failure",
              "inn_cuda.baselines"):
    try:
        __import__(study)
    except ImportError as error:
        message = str(error)
        assert message.startswith(study + " is part of the inn_cuda study"), message
        assert 'pip install "inn_cuda[study]"' in message, message
    else:
        raise AssertionError(f"{study} imported without the study stack")
import contextlib
import io
import os

from inn_cuda import cli

err = io.StringIO()
with contextlib.redirect_stderr(err):
    assert cli.main(["demo", "--preset", "tiny", "--quiet"]) == 2
line, = err.getvalue().splitlines()
assert line.startswith("inn-cuda demo: error: inn_cuda.experiment is part of the inn_cuda study")
assert 'pip install "inn_cuda[study]"' in line, line

# The op sweep of the benchmark is core (its U-Net layers and networks are the study's): it
# saves its numbers and says why it draws no figures.
with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(err):
    err.truncate(0)
    assert cli.main(["bench", "--device", "cpu", "--quick", "--groups", "sweep", "--only",
                     "linear 256x256x256",
                     "--impls", "plain", "fused_nonneg", "--networks", "none", "--budget-s",
                     "0", "--min-repeats", "1", "--max-repeats", "1", "--quiet",
                     "--out", out]) == 0
    assert sorted(os.listdir(out)) == ["results.json", "tables.md"]
assert "figures skipped: they need matplotlib" in err.getvalue()

leaked = sorted(m for m, module in sys.modules.items()
                if m.split(".")[0] in BLOCKED and module is not None)
assert not leaked, leaked
print("CORE OK")
'''


@pytest.mark.slow
def test_core_runs_without_the_study_stack():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                  "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0 and "CORE OK" in done.stdout, done.stderr[-4000:]
