"""Training checkpoints: atomic writes, strict validation on load, and the RNG states that make a
resumed run continue exactly where the interrupted one stopped.

A checkpoint is one ``torch.save`` dict, loaded with ``weights_only=True`` (no arbitrary pickles),
so it holds only tensors, numbers, strings and containers of them.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Iterable, List

import numpy as np
import torch

FORMAT = "inn_cuda.train.checkpoint/1"


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


def atomic_write(path, write) -> None:
    """Write a file through ``write(binary_file)`` into a temporary file next to ``path``, then
    rename it over ``path``: readers and a crash mid-write only ever see the old or the new file,
    never a truncated one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
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


def save_checkpoint(state: Dict[str, Any], path) -> None:
    atomic_write(path, lambda file: torch.save({"format": FORMAT, **state}, file))


def read_checkpoint(path) -> Dict[str, Any]:
    """Load and check the envelope; raises :class:`CheckpointError` naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read, it is corrupt or not a "
                              f"checkpoint ({type(error).__name__}: {error}); the file was left "
                              f"as it is") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} has format {found!r}, expected {FORMAT!r}")
    return state


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
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "python": [version, list(py_state), gauss_next],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "generators": [g.get_state() for g in generators],
    }
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
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    for generator, saved in zip(generators, state["generators"]):
        generator.set_state(saved)
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)

