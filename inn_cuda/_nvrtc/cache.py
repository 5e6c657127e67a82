"""The on-disk cache of compiled programs: ``$INN_CUDA_CACHE`` (default
``$XDG_CACHE_HOME/inn_cuda`` or ``~/.cache/inn_cuda``), one folder per compile target
(``nvrtc/sm_90/``), one entry per key.

The key hashes everything the binary depends on: the kernel sources (names and contents), the
program (its source and kernel names), the NVRTC version and options (which name the source and
CUDA include folders) and the target. Editing a kernel source or upgrading NVRTC therefore
compiles afresh; stale entries stay until the folder is deleted. An entry is two files written
atomically, ``<key>.<cubin|ptx>`` and then ``<key>.json`` (kernel names, the binary's sha256); an
entry that does not check out is compiled again and overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence, Tuple

from . import compiler, sources
from .compiler import Compiled, Program

CACHE_ENV = "INN_CUDA_CACHE"
FORMAT = 1  # bump when the entry layout changes


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "inn_cuda"


def cache_key(program: Program, target: str, source_digest: str, nvrtc_version: Sequence[int],
              options: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for part in (f"format {FORMAT}", source_digest, program.source, *program.names, target,
                 ".".join(map(str, nvrtc_version)), *options):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:40]


def entry_paths(folder: Path, key: str, kind: str) -> Tuple[Path, Path]:
    return folder / f"{key}.{kind}", folder / f"{key}.json"


def load(folder: Path, key: str, program: Program) -> Optional[Compiled]:
    """The cached entry, or None when it is missing or does not check out."""
    meta_path = folder / f"{key}.json"
    try:
        meta = json.loads(meta_path.read_text())
        binary = (folder / f"{key}.{meta['kind']}").read_bytes()
        lowered = meta["lowered"]
        valid = (meta["format"] == FORMAT and hashlib.sha256(binary).hexdigest() == meta["sha256"]
                 and sorted(lowered) == sorted(program.names))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Compiled(binary, meta["kind"], lowered, meta.get("log", "")) if valid else None


def _write_atomically(path: Path, data: bytes) -> None:
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(partial, path)
    except BaseException:
        os.unlink(partial)
        raise


def store(folder: Path, key: str, program: Program, target: str, compiled: Compiled) -> None:
    binary_path, meta_path = entry_paths(folder, key, compiled.kind)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(binary_path, compiled.binary)
    meta = {"format": FORMAT, "program": program.label, "target": target, "kind": compiled.kind,
            "sha256": hashlib.sha256(compiled.binary).hexdigest(), "lowered": compiled.lowered,
            "log": compiled.log}
    _write_atomically(meta_path, json.dumps(meta, indent=1).encode())


def compiled_program(program: Program, target: str, *, source_root: Path,
                     include_dir: Path) -> Compiled:
    """The program compiled for `target`, from the cache when it holds it; otherwise compiled now
    and stored (a cache that cannot be written warns and is skipped)."""
    options = compiler.options(target, source_root, include_dir)
    key = cache_key(program, target, sources.source_digest(source_root),
                    compiler.nvrtc_version(), options)
    folder = cache_root() / "nvrtc" / target
    cached = load(folder, key, program)
    if cached is not None:
        return cached
    compiled = compiler.compile_program(program, target, source_root, include_dir)
    try:
        store(folder, key, program, target, compiled)
    except OSError as error:
        warnings.warn(f"inn_cuda: cannot write the NVRTC kernel cache in {folder} ({error}); "
                      f"set {CACHE_ENV} to a writable folder, or every process compiles the "
                      f"kernels again", RuntimeWarning, stacklevel=2)
    return compiled
