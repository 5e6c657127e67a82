"""The NVRTC backend's disk cache (inn_cuda/_nvrtc/cache.py), without a GPU: where it lives, that
a second request is served from disk, and that the key changes with everything the binary depends
on (kernel sources, target architecture, NVRTC version, program) while a damaged entry is
compiled again."""

import json
import re
import shutil

import pytest

from inn_cuda._nvrtc import cache, compiler, problems, sources

from cuda_emulation import nvrtc_check

pytestmark = pytest.mark.skipif(nvrtc_check.unavailable() is not None,
                                reason=str(nvrtc_check.unavailable()))

PROGRAM = compiler.Program(problems.OP_PROBLEMS["interval_linear"], problems.ELEMENTS["float32"])
OTHER = compiler.Program(problems.OP_PROBLEMS["interval_linear"], problems.ELEMENTS["float64"])


@pytest.fixture
def kernel_sources(tmp_path):
    """A private copy of the kernel sources, free to edit."""
    root = tmp_path / "csrc"
    shutil.copytree(sources.kernel_source_root(), root,
                    ignore=lambda folder, names: [n for n in names if n.endswith((".cpp", ".cu"))])
    return root


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def compiles(monkeypatch):
    """Counts the NVRTC compilations."""
    count = []
    real = compiler.compile_program

    def counting(*args, **kwargs):
        count.append(args[:2])
        return real(*args, **kwargs)

    monkeypatch.setattr(compiler, "compile_program", counting)
    return count


def get(program, target, root):
    return cache.compiled_program(program, target, source_root=root,
                                  include_dir=sources.cuda_include_dir())


def entries(folder):
    return sorted(p.name.split(".", 1)[1] for p in folder.rglob("*") if p.is_file())


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "mine"))
    assert cache.cache_root() == tmp_path / "mine"
    monkeypatch.delenv(cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "inn_cuda"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "inn_cuda"


def test_second_request_comes_from_disk(kernel_sources, cache_dir, compiles):
    first = get(PROGRAM, "compute_80", kernel_sources)
    assert len(compiles) == 1
    assert entries(cache_dir / "nvrtc" / "compute_80") == ["json", "ptx"]
    meta = json.loads(next((cache_dir / "nvrtc" / "compute_80").glob("*.json")).read_text())
    assert meta["program"] == "LinearForward<float>" and meta["lowered"] == first.lowered
    again = get(PROGRAM, "compute_80", kernel_sources)
    assert len(compiles) == 1
    assert again == first


def test_key_follows_sources_target_nvrtc_and_program(kernel_sources, cache_dir, compiles,
                                                      monkeypatch):
    get(PROGRAM, "compute_80", kernel_sources)
    get(PROGRAM, "compute_90", kernel_sources)  # another architecture: its own folder
    assert len(compiles) == 2
    assert entries(cache_dir / "nvrtc" / "compute_90") == ["json", "ptx"]
    get(OTHER, "compute_80", kernel_sources)  # another program
    assert len(compiles) == 3
    header = kernel_sources / "kernels" / "interval_terms.cuh"  # not included directly
    header.write_text(header.read_text() + "\n// edited\n")
    get(PROGRAM, "compute_80", kernel_sources)  # any kernel source edited
    assert len(compiles) == 4
    monkeypatch.setattr(compiler, "nvrtc_version", lambda: (99, 1))
    get(PROGRAM, "compute_80", kernel_sources)  # another NVRTC
    assert len(compiles) == 5
    assert len(list((cache_dir / "nvrtc" / "compute_80").glob("*.json"))) == 4
    monkeypatch.undo()
    digest = sources.source_digest(kernel_sources)
    options = compiler.options("compute_80", kernel_sources, sources.cuda_include_dir())
    key = cache.cache_key(PROGRAM, "compute_80", digest, (13, 0), options)
    assert key == cache.cache_key(PROGRAM, "compute_80", digest, (13, 0), options)
    assert key != cache.cache_key(PROGRAM, "compute_80", digest, (13, 0),
                                  compiler.options("compute_80", kernel_sources.parent,
                                                   sources.cuda_include_dir()))


def internal_names_erased(ptx: bytes) -> bytes:
    """NVRTC names internal-linkage symbols with a per-compilation suffix
    (``_INTERNAL_..._cu_<hash>_<n>``), so two compiles of one program differ only there."""
    return re.sub(rb"_INTERNAL_\w+?_cu_[0-9a-f]+_\d+", b"_INTERNAL_", ptx)


@pytest.mark.parametrize("damage", ["binary", "meta", "missing binary"])
def test_damaged_entry_is_compiled_again(kernel_sources, cache_dir, compiles, damage):
    first = get(PROGRAM, "compute_80", kernel_sources)
    folder = cache_dir / "nvrtc" / "compute_80"
    binary, meta = next(folder.glob("*.ptx")), next(folder.glob("*.json"))
    if damage == "binary":
        binary.write_bytes(binary.read_bytes()[:-10])
    elif damage == "meta":
        meta.write_text(meta.read_text()[:20])
    else:
        binary.unlink()
    again = get(PROGRAM, "compute_80", kernel_sources)
    assert len(compiles) == 2 and internal_names_erased(again.binary) == internal_names_erased(
        first.binary)
    assert get(PROGRAM, "compute_80", kernel_sources) == again and len(compiles) == 2


def test_unwritable_cache_warns_and_still_compiles(kernel_sources, tmp_path, monkeypatch,
                                                   compiles):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker))
    with pytest.warns(RuntimeWarning, match="cannot write the NVRTC kernel cache"):
        compiled = get(PROGRAM, "compute_80", kernel_sources)
    assert compiled.kind == "ptx" and len(compiles) == 1


def test_source_digest_covers_every_kernel_source(kernel_sources):
    names = [p.as_posix() for p in sources.source_files(kernel_sources)]
    assert names[0] == "interval_math.h"
    assert {"kernels/tile_runner.cuh", "kernels/interval_tile_kernel.cuh",
            "kernels/conv_problems.cuh"} <= set(names)
    before = sources.source_digest(kernel_sources)
    (kernel_sources / "interval_math.h").write_text(
        (kernel_sources / "interval_math.h").read_text() + " ")
    assert sources.source_digest(kernel_sources) != before
