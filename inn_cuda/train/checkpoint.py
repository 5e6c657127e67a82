"""Training checkpoints: atomic writes, strict validation on load, and the RNG states that make a
resumed run continue exactly where the interrupted one stopped.

A checkpoint is one ``torch.save`` dict, loaded with ``weights_only=True`` (no arbitrary pickles),
so it holds only tensors, numbers, strings and containers of them. It carries a SHA-256 digest of
its payload (every tensor's dtype, shape and bytes, every key and value), checked on every load:
torch does not verify the zip CRC, so without it a flipped bit in a tensor record would be
resumed from silently. Checkpoints of the previous format (no digest) still load, with a
warning that they are unverified.

NumPy is optional here: its RNG state is saved and restored when NumPy is installed (the core
package does not need it).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List

import torch

try:  # the core works without NumPy; when it is there, its global RNG is part of the state
    import numpy as np
except ImportError:  # pragma: no cover - exercised by the no-study-stack subprocess test
    np = None

FORMAT = "inn_cuda.train.checkpoint/2"
UNVERIFIED_FORMAT = "inn_cuda.train.checkpoint/1"  # before digests: loaded with a warning


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not belong to the run resuming from it. The message
    names the file and the mismatch; nothing on disk or in the model has been changed."""


# ------------------------------------------------------------------------------------ file I/O

def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems do not open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.tmp-{pid}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # someone else's process, or nonsense
        return pid > 0
    return True


def remove_stale_temporaries(path) -> List[Path]:
    """Delete the temporary files a killed writer (SIGKILL, power loss) left next to ``path``:
    ``.<name>.tmp-<pid>`` whose process no longer runs. Returns the removed paths."""
    path = Path(path)
    removed = []
    prefix = f".{path.name}.tmp-"
    try:
        candidates = list(path.parent.glob(f"{prefix}*"))
    except OSError:
        return removed
    for candidate in candidates:
        pid = candidate.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def atomic_write(path, write) -> None:
    """Write a file through ``write(binary_file)`` into a temporary file next to ``path``, then
    rename it over ``path``: readers and a crash mid-write only ever see the old or the new file,
    never a truncated one."""
    path = Path(path)
    tmp = _temporary(path, os.getpid())
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


# ------------------------------------------------------------------------------------ digest

def _hash_tensor(tensor: torch.Tensor, digest) -> None:
    tensor = tensor.detach().to("cpu").contiguous()
    digest.update(f"T{tensor.dtype}{list(tensor.shape)}".encode())
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes:  # the bytes in place, without a copy through NumPy (not a core dependency)
        digest.update((ctypes.c_char * nbytes).from_address(tensor.data_ptr()))


def _hash(obj, digest) -> None:
    """Feed ``obj`` into ``digest`` in a canonical form: the type of each value, the keys in
    order, tensors as dtype, shape and bytes, scalars by their exact repr."""
    if isinstance(obj, torch.Tensor):
        _hash_tensor(obj, digest)
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _hash(key, digest)
            _hash(value, digest)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for value in obj:
            _hash(value, digest)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.dtype,
                                         torch.device)):
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(f"a checkpoint holds only tensors, numbers, strings and containers of "
                        f"them, got {type(obj).__name__}")


def payload_digest(state: Dict[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's payload: everything but the format and the digest."""
    digest = hashlib.sha256()
    _hash({k: v for k, v in state.items() if k not in ("format", "sha256")}, digest)
    return digest.hexdigest()


def save_checkpoint(state: Dict[str, Any], path) -> None:
    """Write ``state`` with its digest atomically to ``path`` (and clean up temporary files a
    killed earlier writer left there)."""
    remove_stale_temporaries(path)
    payload = {"format": FORMAT, **state}
    payload["sha256"] = payload_digest(payload)
    atomic_write(path, lambda file: torch.save(payload, file))


def read_checkpoint(path) -> Dict[str, Any]:
    """Load, check the envelope and verify the digest; raises :class:`CheckpointError` naming
    ``path``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read, it is corrupt or not a "
                              f"checkpoint ({type(error).__name__}: {error}); the file was left "
                              f"as it is") from error
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if found == UNVERIFIED_FORMAT:
        warnings.warn(f"checkpoint {path} has the format {UNVERIFIED_FORMAT!r}, written before "
                      f"checkpoints carried a digest: it is loaded unverified (a damaged tensor "
                      f"would go unnoticed); the next checkpoint of this run is written with "
                      f"one", UserWarning, stacklevel=2)
        return state
    if found != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {found!r}, expected {FORMAT!r}")
    try:
        actual = payload_digest(state)
    except TypeError as error:
        raise CheckpointError(f"checkpoint {path} holds an unexpected value: {error}") from error
    if state.get("sha256") != actual:
        raise CheckpointError(f"checkpoint {path} is damaged: its payload's SHA-256 is {actual}, "
                              f"the digest saved with it is {state.get('sha256')!r} (a changed "
                              f"byte on disk; torch does not check the zip CRC); the file was "
                              f"left as it is")
    return state


def save_verified(obj, path) -> None:
    """Any weights-only object (tensors, numbers, strings, containers) saved like a checkpoint:
    atomically and with its digest (e.g. the study's saved stages)."""
    save_checkpoint({"payload": obj}, path)


def load_verified(path):
    """What :func:`save_verified` saved, digest checked; :class:`CheckpointError` naming
    ``path`` otherwise."""
    state = read_checkpoint(path)
    if "payload" not in state:
        raise CheckpointError(f"checkpoint {path} is a training checkpoint, not a saved object")
    return state["payload"]


# ------------------------------------------------------------------------------------ matching

def _describe(entries: Dict[str, tuple]) -> Dict[str, str]:
    return {name: f"{tuple(shape)} {dtype}" for name, (shape, dtype) in entries.items()}


def tensor_signature(named: Iterable) -> Dict[str, tuple]:
    """``{name: (shape, dtype string)}`` of named tensors (parameters, state dict entries)."""
    return {name: (list(t.shape), str(t.dtype)) for name, t in named}


def check_match(path, what: str, saved, current) -> None:
    """Raise a :class:`CheckpointError` naming ``path`` when ``saved != current``."""
    if saved == current:
        return
    if isinstance(saved, dict) and isinstance(current, dict):
        saved_d, current_d = _describe(saved), _describe(current)
        missing = [k for k in current_d if k not in saved_d]
        extra = [k for k in saved_d if k not in current_d]
        changed = [f"{k}: checkpoint {saved_d[k]}, model {current_d[k]}"
                   for k in current_d if k in saved_d and saved_d[k] != current_d[k]]
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {', '.join(missing[:5])}"
                         + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        if extra:
            parts.append(f"not in the model: {', '.join(extra[:5])}"
                         + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""))
        if changed:
            parts.append("different: " + "; ".join(changed[:5])
                         + (f" (+{len(changed) - 5} more)" if len(changed) > 5 else ""))
        if not parts:  # same entries in another order
            parts.append("same entries in a different order")
        detail = "; ".join(parts)
    else:
        detail = f"checkpoint has {saved!r}, this run has {current!r}"
    raise CheckpointError(f"checkpoint {path} does not match this run's {what}: {detail}")


# ------------------------------------------------------------------------------------ RNG states

def capture_rng(device: torch.device, generators: List[torch.Generator]) -> Dict[str, Any]:
    """Every random state a training epoch draws from: torch (CPU and the training device),
    Python, NumPy, and the data loader's own generators (shuffling, worker seeds)."""
    version, py_state, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "python": [version, list(py_state), gauss_next],
        "generators": [g.get_state() for g in generators],
    }
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                          cached]
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Dict[str, Any], device: torch.device,
                generators: List[torch.Generator], path) -> None:
    if len(state["generators"]) != len(generators):
        raise CheckpointError(f"checkpoint {path} saved {len(state['generators'])} data loader "
                              f"generator states, this run's loader has {len(generators)}")
    torch.set_rng_state(state["torch"])
    version, py_state, gauss_next = state["python"]
    random.setstate((version, tuple(py_state), gauss_next))
    if np is not None and "numpy" in state:  # a run saved without NumPy never drew from it
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    for generator, saved in zip(generators, state["generators"]):
        generator.set_state(saved)
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)

