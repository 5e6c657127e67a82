"""Fixtures every test file may use (helper functions: helpers.py).

Markers (pyproject.toml): ``slow`` marks tests that take more than a few seconds on a 2-core
machine (conversions of whole models, training runs, torch.compile, subprocesses). CI runs
everything; deselect them locally with ``pytest -m "not slow"``.
"""

import os
import warnings

# Idle OpenMP workers sleep instead of spinning. Read when torch loads OpenMP, so before the
# import below (pytest loads this file before any test module). On a small or busy machine the
# spinning workers between the many small parallel regions of the tests compete with the tests
# themselves (the CPU kernel path tests ran 229 s with spinning, 24 s without, on 2 busy cores).
# Results are unchanged; set the variable yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

from inn_cuda import _backend  # noqa: E402

from helpers import CPU_ISAS  # noqa: E402

settings.register_profile("inn_cuda", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("inn_cuda")

# The library path and the plain-PyTorch comparisons run in full float32 on a GPU: TF32 (cuDNN
# allows it by default) would put 1e-3 errors into results checked at float32 tolerances.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _reference_fallback_warnings_are_expected():
    # Ops without a compiled kernel warn once (tested in test_schemas.py); not a failure here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="inn_cuda: .* runs the pure-PyTorch reference")
        yield


@pytest.fixture(params=CPU_ISAS)
def cpu_isa(request):
    """Runs the test once per instruction set of the compiled CPU kernels, in this process
    (skipped where the CPU lacks it), and restores the process's own choice afterwards. Use it
    as a parameter, or for a whole file with ``pytestmark = pytest.mark.usefixtures("cpu_isa")``.
    """
    isa = request.param
    if isa not in _backend.BUILD["cpu_isas"]:
        pytest.skip(f"no {isa} kernels here (CPU kernels for: {_backend.BUILD['cpu_isas']})")
    previous = _backend.set_cpu_isa(isa)
    try:
        yield isa
    finally:
        _backend.set_cpu_isa(previous)
