import warnings

import pytest
import torch
from hypothesis import settings

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
    # Ops without a compiled kernel warn once; that is tested in test_backend.py.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="inn_cuda: .* runs the pure-PyTorch reference")
        yield
