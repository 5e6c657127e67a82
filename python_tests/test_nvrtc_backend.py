"""Which backend serves each op on each device (INN_CUDA_BACKEND=auto|compiled|nvrtc|reference),
why the NVRTC backend is unavailable when it is, and what info() reports. Runs without a GPU:
GPU visibility is mocked where a case needs one (in a subprocess), and no CUDA op runs here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import inn_cuda
from inn_cuda import _backend, _nvrtc
from inn_cuda._backend import BACKEND_ENV, SCHEMAS, choose
from inn_cuda._nvrtc import compiler, sources

ROOT = Path(__file__).resolve().parent.parent
NVRTC_OK = (True, None)
NO_NVRTC = (False, "no GPU visible")


# --------------------------------------------------------------------------------- choose()

@pytest.mark.parametrize("choice,device,compiled,nvrtc,expected", [
    ("auto", "cuda", True, NVRTC_OK, "compiled"),
    ("auto", "cuda", False, NVRTC_OK, "nvrtc"),
    ("auto", "cuda", False, NO_NVRTC, "reference"),
    ("auto", "cpu", False, NVRTC_OK, "reference"),  # NVRTC compiles GPU code only
    ("auto", "cpu", True, NO_NVRTC, "compiled"),
    ("compiled", "cuda", True, NVRTC_OK, "compiled"),
    ("compiled", "cuda", False, NVRTC_OK, "unavailable"),  # no fallback when forced
    ("compiled", "cpu", False, NVRTC_OK, "unavailable"),
    ("nvrtc", "cuda", True, NVRTC_OK, "nvrtc"),  # replaces compiled CUDA kernels
    ("nvrtc", "cuda", False, NO_NVRTC, "unavailable"),
    ("nvrtc", "cpu", True, NVRTC_OK, "compiled"),  # CPU ops as under auto
    ("nvrtc", "cpu", False, NVRTC_OK, "reference"),
    ("reference", "cuda", True, NVRTC_OK, "reference"),
    ("reference", "cpu", True, NVRTC_OK, "reference"),
])
def test_choose(choice, device, compiled, nvrtc, expected):
    backend, why = choose(choice, device, compiled, "no kernel", nvrtc)
    assert backend == expected
    assert (why is None) == (backend == "compiled")
    if backend == "unavailable":
        assert f"{BACKEND_ENV}={choice}" in why
    if backend == "reference" and device == "cuda" and choice == "auto":
        assert "no kernel" in why and "NVRTC cannot run here: no GPU visible" in why


# ---------------------------------------------------------------------------- nvrtc status

def test_status_names_every_missing_piece(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def no_cupy():
        raise ImportError("No module named 'cupy_backends'")

    monkeypatch.setattr(compiler, "nvrtc", no_cupy)
    monkeypatch.setattr(sources, "kernel_source_root", lambda: None)
    monkeypatch.setattr(sources, "cuda_include_dir", lambda: None)
    available, reason = _nvrtc.status()
    assert not available
    for part in ("no GPU visible", "pip install inn_cuda[cupy]", "kernel sources are missing",
                 "cuda_fp16.h"):
        assert part in reason


def test_status_with_a_gpu_and_cupy(monkeypatch):
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    if torch.version.cuda is None:
        pytest.skip("torch without CUDA")
    assert _nvrtc.status() == (True, None)


def test_status_reports_a_broken_nvrtc(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def broken():
        raise RuntimeError("libnvrtc.so.13: cannot open shared object file")

    monkeypatch.setattr(compiler, "nvrtc", broken)
    available, reason = _nvrtc.status()
    assert not available and "NVRTC cannot be loaded through CuPy (RuntimeError: libnvrtc" in reason


# ------------------------------------------------------------------ the backend, imported

def imported(backend, *, fake_gpu=False, code="", check=True):
    """Runs `code` after importing inn_cuda with INN_CUDA_BACKEND=backend in a fresh process
    (fake_gpu: torch.cuda.is_available() says True); returns the JSON it prints last."""
    prelude = "import torch\n" + ("torch.cuda.is_available = lambda: True\n" if fake_gpu else "")
    script = (prelude + "import json, warnings\nwarnings.simplefilter('error', RuntimeWarning)\n"
              "import inn_cuda\nfrom inn_cuda import _backend\n" + code)
    env = {**os.environ, BACKEND_ENV: backend,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])
    return result


SERVED = "print(json.dumps({'served': _backend.SERVED_BY, 'why': _backend.WHY}))"


def test_unknown_backend_is_an_error():
    result = imported("fast", check=False)
    assert result.returncode != 0
    assert "INN_CUDA_BACKEND must be one of auto, compiled, nvrtc, reference; got 'fast'" in \
        result.stderr


def test_reference_everywhere():
    report = imported("reference", code=SERVED)
    assert {b for per_op in report["served"].values() for b in per_op.values()} == {"reference"}


@pytest.mark.skipif(_backend._C is None, reason="inn_cuda._C not built")
def test_forced_nvrtc_without_a_gpu_refuses_cuda_ops():
    """Importing works and says why; a CUDA op raises with the reason (redispatched to the CUDA
    key with CPU tensors, since no GPU is here)."""
    code = """
x, w = torch.zeros(2, 3), torch.zeros(4, 3)
try:
    torch.ops.inn_cuda.interval_linear.default.redispatch(
        torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA), x, x, w, w, None, None, False)
    error = None
except RuntimeError as e:
    error = str(e)
print(json.dumps({'served': _backend.SERVED_BY, 'why': _backend.WHY, 'error': error,
                  'nvrtc': inn_cuda.info()['nvrtc']}))
"""
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    report = imported("nvrtc", code=code)
    assert {per_op["cuda"] for per_op in report["served"].values()} == {"unavailable"}
    assert report["error"].startswith("inn_cuda: interval_linear cannot run on cuda: "
                                      "INN_CUDA_BACKEND=nvrtc but NVRTC cannot run here: no GPU "
                                      "visible")
    assert report["nvrtc"]["available"] is False
    assert "no GPU visible" in report["nvrtc"]["unavailable_reason"]


@pytest.mark.skipif(_backend._C is None, reason="inn_cuda._C not built")
def test_forced_nvrtc_with_a_gpu_registers_the_nvrtc_kernels():
    """With a (mocked) GPU and CuPy, every CUDA op is the NVRTC implementation at the CUDA
    dispatch key, replacing _C's CUDA kernels if it has them; CPU ops stay as they were."""
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    code = """
from inn_cuda._nvrtc import OPS
dump = torch._C._dispatch_dump('inn_cuda::interval_conv2d_backward_weight')
active = [line for line in dump.splitlines() if line.startswith('CUDA:')]
print(json.dumps({'served': _backend.SERVED_BY, 'why': _backend.WHY, 'cuda_kernel': active,
                  'lines': _backend.describe_backends(inn_cuda.info())}))
"""
    report = imported("nvrtc", fake_gpu=True, code=code)
    assert {per_op["cuda"] for per_op in report["served"].values()} == {"nvrtc"}
    assert {why["cuda"] for why in report["why"].values()} == {"INN_CUDA_BACKEND=nvrtc"}
    assert report["served"]["interval_linear"]["cpu"] == "compiled"
    assert len(report["cuda_kernel"]) == 1 and "_backend.py" in report["cuda_kernel"][0]
    assert report["lines"][1].startswith("NVRTC backend: available (CuPy ")


@pytest.mark.skipif(_backend._C is None, reason="inn_cuda._C not built")
def test_auto_prefers_compiled_kernels():
    report = imported("auto", fake_gpu=True, code=SERVED)
    for op in SCHEMAS:
        expected = "compiled" if op in _backend.BUILD["kernels"].get("cuda", ()) else "nvrtc"
        assert report["served"][op]["cuda"] == expected


def test_this_process_reports_its_choice():
    report = inn_cuda.info()
    assert report["backend_requested"] == _backend.CHOICE
    assert set(report["ops"]) == set(SCHEMAS) == set(report["ops_why"])
    assert set(report["nvrtc"]) == {"available", "unavailable_reason", "cupy", "nvrtc", "cache",
                                    "kernel_sources", "cuda_headers"}
    for op, per_device in report["ops"].items():
        for device, backend in per_device.items():
            assert backend in ("compiled", "nvrtc", "reference", "unavailable")
            assert (report["ops_why"][op][device] is None) == (backend == "compiled")


def test_describe_backends_groups_reasons():
    report = {"backend_requested": "auto",
              "nvrtc": {"available": False, "unavailable_reason": "no GPU visible"},
              "ops_why": {"a": {"cpu": None, "cuda": "built without CUDA; NVRTC: no GPU"},
                          "b": {"cpu": "no kernel", "cuda": "built without CUDA; NVRTC: no GPU"}}}
    assert _backend.describe_backends(report) == [
        "backend requested: auto (INN_CUDA_BACKEND)",
        "NVRTC backend: unavailable (no GPU visible)",
        "  cpu: no kernel (1 op)",
        "  cuda: built without CUDA; NVRTC: no GPU (2 ops)",
    ]
