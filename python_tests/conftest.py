import warnings

import pytest
import torch
from hypothesis import settings

settings.register_profile("inn_cuda", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("inn_cuda")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _reference_fallback_warnings_are_expected():
    # Ops without a compiled kernel warn once; that is tested in test_backend.py.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="inn_cuda: .* runs the pure-PyTorch reference")
        yield
