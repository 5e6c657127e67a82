"""The one training loop behind ``fit_point``, ``fit_intervals`` and any other objective a caller
brings (e.g. a baseline's fine-tuning loss).

Per epoch it iterates the training loader (tqdm bar showing running metrics), steps Adam on the
given parameters only, runs a per-step hook (the interval trainer's projection of offsets to
``>= 0``), evaluates, lets the caller update its own state (beta), then on rank 0 writes an
atomic checkpoint and one JSON line of metrics. ``resume=`` continues after an interruption with
exactly the result of an uninterrupted run (bit-identical on CPU): the checkpoint holds the
model, optimizer, grad scaler, caller state, every RNG state (incl. the loader's shuffling
generator) and the metric history.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
# Not tqdm.auto: its asyncio variant calls iter() on the loader once more (an extra pass of
# loader workers, and a shift of the shuffling RNG that breaks exact resume).
from tqdm import tqdm

from . import distributed
from .checkpoint import (CheckpointError, atomic_write, capture_rng, check_match, np,
                         read_checkpoint, remove_stale_temporaries, restore_rng, save_checkpoint,
                         tensor_signature)

Tensor = torch.Tensor
LossOutput = Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]
LossFn = Callable[[torch.nn.Module, Any], LossOutput]

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "metrics.jsonl"
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
                   "fp16": torch.float16, "float16": torch.float16}


@dataclass
class TrainResult:
    """What a training run returns. ``history`` has one dict per epoch (``epoch``, ``train_*``,
    ``val_*``, caller entries such as ``beta``); an ``epoch: 0`` entry holds what was measured
    before the first epoch (e.g. the point network's validation error)."""

    model: torch.nn.Module
    history: List[Dict[str, Any]]
    epochs: int
    resumed_from: Optional[int] = None
    run_dir: Optional[Path] = None

    @property
    def final(self) -> Dict[str, Any]:
        """The last epoch's metrics."""
        return self.history[-1] if self.history else {}


# ------------------------------------------------------------------------------------- helpers

def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python and NumPy (when installed)."""
    torch.manual_seed(seed)
    random.seed(seed)
    if np is not None:
        np.random.seed(seed % 2 ** 32)


def upcast(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """The tensors in their common dtype, at least float32: losses and metrics of half-precision
    (autocast) outputs are computed in float32, float64 ones stay float64."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return tuple(t.to(dtype) for t in tensors)


def move_to(batch, device: torch.device):
    """``batch`` with every tensor (inside tuples, lists, dicts) on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


def batch_size(batch) -> int:
    """Samples in a batch: the leading dim of its first tensor."""
    if isinstance(batch, Tensor):
        return batch.shape[0] if batch.dim() else 1
    items = batch.values() if isinstance(batch, dict) else batch
    if isinstance(items, (list, tuple, type({}.values()))):
        for item in items:
            try:
                return batch_size(item)
            except TypeError:
                continue
    raise TypeError(f"cannot find a tensor in the batch ({type(batch).__name__}) to count its "
                    f"samples")


@contextmanager
def modes_kept(model: torch.nn.Module):
    """Restore every submodule's train/eval flag on exit."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in saved:
            module.training = training


@contextmanager
def trained_only(model: torch.nn.Module, params: Sequence[torch.nn.Parameter]):
    """``requires_grad`` on exactly ``params`` while training (so the frozen weights get no
    gradients and DDP synchronises only the trained ones), the caller's flags restored after."""
    chosen = {id(p) for p in params}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(id(p) in chosen)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def _split_loss(out: LossOutput) -> Tuple[Tensor, Dict[str, Tensor]]:
    loss, metrics = (out, {}) if isinstance(out, Tensor) else out
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        raise TypeError(f"loss_fn must return a scalar tensor or (scalar tensor, dict of "
                        f"metrics), got {type(loss).__name__}"
                        + (f" of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else ""))
    return loss, metrics


class _Sums:
    """Sample-weighted sums of per-batch mean metrics, kept on the device (no sync per step)."""

    def __init__(self):
        self.sums: Dict[str, Tensor] = {}
        self.count = 0

    def add(self, metrics: Dict[str, Tensor], n: int) -> None:
        for key, value in metrics.items():
            value = value.detach().double() * n
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += n

    def running(self) -> Dict[str, float]:
        return {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}

    def reduce(self, device: torch.device) -> Dict[str, float]:
        """Means over the whole epoch and all processes."""
        totals = distributed.sum_over_processes(
            {**self.sums, "__count": torch.tensor(float(self.count), dtype=torch.float64,
                                                  device=device)})
        count = float(totals.pop("__count"))
        return {k: float(v) / count for k, v in totals.items()} if count else {}


def evaluate(model: torch.nn.Module, loader: Iterable,
             metric_fn: Callable[[torch.nn.Module, Any], Dict[str, Tensor]], *,
             device: Optional[torch.device] = None, progress: bool = False,
             desc: str = "eval") -> Dict[str, float]:
    """Sample-weighted means of ``metric_fn(model, batch)`` (a dict of per-batch means) over a
    loader, in eval mode without gradients; under torch.distributed each process evaluates its
    share and the sums are all-reduced (every process gets the same numbers)."""
    device = device or next(model.parameters()).device
    loader = distributed.split_eval_loader(loader)
    sums = _Sums()
    with modes_kept(model), torch.no_grad():
        model.eval()
        bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                   disable=not (progress and distributed.is_main()))
        with bar:
            for batch in bar:
                batch = move_to(batch, device)
                sums.add(metric_fn(model, batch), batch_size(batch))
    means = sums.reduce(device)
    if not means:
        raise ValueError(f"{desc}: the loader yielded no samples")
    return means


NONFINITE_TARGETS = "nonfinite_targets"


def nonfinite_targets(target: Tensor) -> Tensor:
    """A metric for a ``metric_fn``: 1.0 for a batch with a NaN or infinite target, else 0.0
    (kept on the device; :func:`check_targets` reads it with the epoch's means)."""
    return (~torch.isfinite(target)).any().to(torch.float64)


def check_targets(means: Dict[str, float], desc: str) -> Dict[str, float]:
    """``means`` without the :func:`nonfinite_targets` entry; a ValueError if any batch had
    one (a NaN target makes the loss NaN and the coverage meaningless)."""
    means = dict(means)
    if means.pop(NONFINITE_TARGETS, 0.0) > 0:
        raise ValueError(f"{desc}: the data holds NaN or infinite targets; clean or drop those "
                         f"samples (their loss and coverage are undefined)")
    return means


def _format(metrics: Dict[str, Any], keys: Sequence[str]) -> Dict[str, str]:
    return {k: f"{metrics[k]:.4g}" for k in keys if k in metrics}


def _length(loader) -> Optional[int]:
    try:
        return len(loader)
    except TypeError:  # iterable-style datasets may have no length
        return None


def _loader_generators(loader) -> List[torch.Generator]:
    found: List[torch.Generator] = []
    for owner in (loader, getattr(loader, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _autocast(autocast, device: torch.device):
    """(context manager, GradScaler or None) for the requested mixed precision."""
    if autocast is None or autocast is False:
        return nullcontext(), None
    dtype = AUTOCAST_DTYPES.get(autocast, autocast)
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"autocast must be None, 'bf16' or 'fp16' (or the torch dtype), got "
                         f"{autocast!r}")
    if device.type != "cuda":
        raise ValueError(f"autocast={autocast!r} is supported on CUDA only (the CPU kernels run "
                         f"float32/float64), but the model is on {device}")
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def _param_names(model: torch.nn.Module, params: Sequence[torch.nn.Parameter]) -> List[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise ValueError(f"params: entries {missing} are not parameters of the model")
    return [names[id(p)] for p in params]


# ------------------------------------------------------------------------------ finite guard

class NonFiniteError(FloatingPointError):
    """Training met a non-finite loss or gradient. The message names the epoch, the step and
    what was not finite; the model, optimizer and checkpoint are as they were before that
    step."""


def _guard_on_device(device: torch.device) -> bool:
    """Whether the finite guard keeps its flags on the device (CUDA: reading them would
    synchronise every step) and the optimizer is the fused Adam that honours them."""
    return device.type == "cuda"


class _FiniteGuard:
    """Stops training at the first step whose loss or a trained parameter's gradient is not
    finite, before that step changes the model.

    The flags are computed on the device (one fused max-abs norm over the gradients). On the CPU
    they are read at once and the step raises before the optimizer runs. On CUDA reading them
    would synchronise every step, so they stay on the device: a sticky flag is handed to the
    fused Adam as ``found_inf`` (it skips the update, step counts included) and the running
    statistics of normalisation layers are restored from a device-side snapshot, so the bad
    step and every later one change nothing; the flag is read where the loop synchronises
    anyway (the progress bar's refresh, the end of the epoch). Under fp16 autocast the
    GradScaler skips steps with inf gradients by design (and synchronises every step), so only
    the loss is checked, at once.
    """

    def __init__(self, model, params, names, device, scaler, desc, checkpoint):
        self.params, self.names, self.scaler = params, names, scaler
        self.desc, self.checkpoint = desc, checkpoint
        self.deferred = _guard_on_device(device) and scaler is None
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.first_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.what = torch.zeros(len(params) + 1, dtype=torch.bool, device=device)
        self.stats: List[Tensor] = []
        self.saved: List[Tensor] = []
        self.model = model

    def start_epoch(self, epoch: int) -> None:
        """Snapshot targets: running statistics the forward pass updates in this epoch's mode."""
        self.epoch = epoch
        self.stats = [b for m in self.model.modules()
                      if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.training
                      for b in m.buffers(recurse=False)]
        self.saved = [b.clone() for b in self.stats]

    def before_forward(self) -> None:
        if self.deferred:  # keep the snapshot from before the first bad step
            for saved, buffer in zip(self.saved, self.stats):
                saved.copy_(torch.where(self.bad, saved, buffer))
        elif self.stats:
            torch._foreach_copy_(self.saved, self.stats)

    def check(self, loss: Tensor, step: int) -> None:
        """After backward, before the optimizer step."""
        loss_bad = ~torch.isfinite(loss.detach()).reshape(1)
        if self.scaler is not None:
            if bool(loss_bad):  # the scaler synchronises this step anyway
                self._raise(step, loss_bad, loss)
            return
        present = [i for i, p in enumerate(self.params)
                   if p.grad is not None and p.grad.numel()]
        grad_bad = torch.zeros(len(self.params), dtype=torch.bool, device=loss.device)
        if present:
            norms = torch._foreach_norm([self.params[i].grad for i in present], math.inf)
            grad_bad[present] = ~torch.isfinite(torch.stack(norms).to(loss.device))
        now = torch.cat([loss_bad, grad_bad])
        if not self.deferred:
            if bool(now.any()):
                self._raise(step, now, loss)
            return
        new = now.any() & ~self.bad
        self.first_step.copy_(torch.where(new, step, self.first_step))
        self.what.copy_(torch.where(new, now, self.what))
        self.bad |= now.any()

    def skip_flag(self) -> Optional[Tensor]:
        """``found_inf`` for the fused Adam on CUDA (None elsewhere)."""
        return self.bad.float() if self.deferred else None

    def poll(self) -> None:
        """Where the loop reads the device anyway: raise if a step was bad."""
        if self.deferred and bool(self.bad):
            self._raise(int(self.first_step), self.what, None)

    def _raise(self, step: int, what: Tensor, loss: Optional[Tensor]):
        for saved, buffer in zip(self.saved, self.stats):
            buffer.copy_(saved)
        flags = what.tolist()
        parts = []
        if flags[0]:
            parts.append("the loss is " + (f"{float(loss.detach())}" if loss is not None
                                           else "not finite"))
        bad = [name for name, flag in zip(self.names, flags[1:]) if flag]
        if bad:
            parts.append("the gradient of " + ", ".join(bad[:5])
                         + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
                         + " is not finite")
        kept = (f"; the last checkpoint, {self.checkpoint}, is kept" if self.checkpoint
                else "")
        raise NonFiniteError(
            f"{self.desc} epoch {self.epoch + 1}, step {step + 1}: {' and '.join(parts)}; "
            f"training stopped and the model is as it was before this step{kept}")


# ------------------------------------------------------------------------------------ run files

class _RunFiles:
    """``run_dir/checkpoint.pt`` and ``run_dir/metrics.jsonl``, written by rank 0 only."""

    def __init__(self, run_dir, resume, overwrite: bool):
        self.dir = None if run_dir is None else Path(run_dir)
        self.checkpoint = None if self.dir is None else self.dir / CHECKPOINT_NAME
        self.log = None if self.dir is None else self.dir / LOG_NAME
        if resume is True:
            if self.checkpoint is None:
                raise ValueError("resume=True needs run_dir (or pass the checkpoint path)")
            self.resume_from = self.checkpoint
        elif resume:
            self.resume_from = Path(resume)
        else:
            self.resume_from = None
            if self.checkpoint is not None and self.checkpoint.exists() and not overwrite:
                raise FileExistsError(f"{self.checkpoint} exists: pass resume=True to continue "
                                      f"that run, overwrite=True to replace it, or another "
                                      f"run_dir")

    def start(self, history: List[Dict[str, Any]]) -> None:
        """Make the log hold exactly the history the run continues from (a crash between the
        checkpoint and the log line, or a fresh run over an old directory, leaves it stale)."""
        if self.dir is None or not distributed.is_main():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(record) + "\n" for record in history)
        atomic_write(self.log, lambda file: file.write(lines.encode()))

    def append(self, record: Dict[str, Any]) -> None:
        if self.dir is None or not distributed.is_main():
            return
        with open(self.log, "a") as file:
            file.write(json.dumps(record) + "\n")

    def save(self, state: Dict[str, Any], record: Dict[str, Any]) -> None:
        """Checkpoint first, then the log line: a crash in between is repaired by start()."""
        if self.dir is None or not distributed.is_main():
            return
        save_checkpoint(state, self.checkpoint)
        self.append(record)


# ----------------------------------------------------------------------------------- the loop

def run_training(model: torch.nn.Module, loss_fn: LossFn,
                 params: Sequence[torch.nn.Parameter], train_loader: Iterable, *,
                 epochs: int, lr: float = 1e-3,
                 validate: Optional[Callable[[torch.nn.Module], Dict[str, float]]] = None,
                 after_step: Optional[Callable[[], None]] = None,
                 on_start: Optional[Callable[[], Dict[str, Any]]] = None,
                 on_epoch_end: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
                 state: Optional[Any] = None,
                 set_mode: Optional[Callable[[torch.nn.Module], None]] = None,
                 kind: str = "custom", run_dir=None, resume: Union[bool, str, Path] = False,
                 overwrite: bool = False, seed: Optional[int] = None, device=None,
                 autocast=None, progress: bool = True, desc: str = "train",
                 show: Sequence[str] = ("loss",)) -> TrainResult:
    """Train ``params`` of ``model`` with Adam(lr) on ``loss_fn``.

    loss_fn(module, batch) -> loss or (loss, {name: per-batch mean}): the batch is already on
        the device; ``module`` is the model, or its DistributedDataParallel wrapper under
        torch.distributed. Return a scalar loss in float32 or wider, also under autocast
        (:func:`upcast` the outputs first).
        The metrics (and the loss) are averaged over the epoch as ``train_<name>``.
    params: the only parameters optimised; every other parameter of ``model`` has
        ``requires_grad=False`` while training (restored afterwards) and stays bit-for-bit
        unchanged.
    validate(model) -> {name: value}: after each epoch (logged as ``val_<name>``); use
        :func:`evaluate`.
    after_step(): after every optimizer step (e.g. projecting offsets to >= 0).
    on_start() -> {name: value}: once before the first epoch of a fresh run (not on resume),
        logged as epoch 0.
    on_epoch_end(record) -> {name: value}: after validation, may update ``state``; the returned
        entries are added to the epoch's record.
    state: an object with ``state_dict()``/``load_state_dict()`` saved in checkpoints.
    set_mode(model): puts the model in its training mode before each epoch (default
        ``model.train()``).
    kind: recorded in checkpoints; resuming from a checkpoint of another kind is an error.
    run_dir: where ``checkpoint.pt`` (every epoch, atomically replaced) and ``metrics.jsonl``
        (one JSON object per epoch) go; None writes nothing. An existing checkpoint there is
        never overwritten by a fresh run unless ``overwrite=True``.
    resume: True continues from ``run_dir/checkpoint.pt``, a path from that file; the model,
        optimizer, RNG states, ``state`` and history are restored and training continues with
        the next epoch up to ``epochs`` in total. A corrupt or mismatched checkpoint raises
        :class:`CheckpointError` before anything is changed.
    seed: seeds torch, Python and NumPy at the start of a fresh run (CPU runs are then
        bit-reproducible; process ``rank`` uses ``seed + rank``); also the seed of the
        DistributedSampler the loop builds.
    device: moves the model there (default: where its parameters are).
    autocast: None, 'bf16' or 'fp16' (CUDA only; fp16 uses a GradScaler).
    show: metric names shown on the progress bar.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    params = list(params)
    if not params:
        raise ValueError("params is empty: nothing to train")
    device = torch.device(device) if device is not None else params[0].device
    model.to(device)
    names = _param_names(model, params)
    files = _RunFiles(run_dir, resume, overwrite)
    rank, world_size = distributed.world()
    amp, scaler = _autocast(autocast, device)
    loader = distributed.split_train_loader(train_loader, seed=seed or 0)
    generators = _loader_generators(loader)
    # Fused on CUDA: it honours the finite guard's device-side skip flag without a sync.
    optimizer = torch.optim.Adam(params, lr=lr, fused=_guard_on_device(device) or None)
    signature = {"kind": kind, "world_size": world_size, "trained": names,
                 "model": tensor_signature(model.state_dict().items())}

    history: List[Dict[str, Any]] = []
    start_epoch, resumed_from = 0, None
    if files.resume_from is not None:
        if distributed.is_main():  # what a writer killed mid-save (SIGKILL) left behind
            remove_stale_temporaries(files.resume_from)
        saved = read_checkpoint(files.resume_from)
        for key in ("kind", "world_size", "trained", "model"):
            what = {"model": "model state (names, shapes, dtypes)", "trained": "trained "
                    "parameters", "world_size": "number of processes"}.get(key, key)
            check_match(files.resume_from, what, saved.get("signature", {}).get(key),
                        signature[key])
        try:
            if state is not None:
                state.load_state_dict(saved["state"])
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if scaler is not None and saved.get("scaler") is not None:
                scaler.load_state_dict(saved["scaler"])
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise CheckpointError(f"checkpoint {files.resume_from} cannot be applied to this "
                                  f"run: {error}") from error
        restore_rng(saved["rng"][rank], device, generators, files.resume_from)
        history = list(saved["history"])
        start_epoch = resumed_from = saved["epoch"]
    elif seed is not None:
        seed_everything(seed + rank)  # one stream per process: different dropout masks

    files.start(history)
    guard = _FiniteGuard(model, params, names, device, scaler, desc, files.checkpoint)
    main = distributed.is_main()
    with trained_only(model, params), modes_kept(model):
        forward = distributed.wrap(model, device)
        if files.resume_from is None and on_start is not None:
            record = {"epoch": 0, **on_start()}
            history.append(record)
            files.append(record)
        for epoch in range(start_epoch, epochs):
            began = time.perf_counter()
            distributed.set_epoch(loader, epoch)
            (set_mode or torch.nn.Module.train)(model)
            sums = _Sums()
            guard.start_epoch(epoch)
            total = _length(loader)
            bar = tqdm(loader, total=total, desc=f"{desc} {epoch + 1}/{epochs}", leave=False,
                       dynamic_ncols=True, disable=not (progress and main))
            with bar:
                for step, batch in enumerate(bar):
                    batch = move_to(batch, device)
                    optimizer.zero_grad(set_to_none=True)
                    guard.before_forward()
                    with amp:
                        loss, metrics = _split_loss(loss_fn(forward, batch))
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        guard.check(loss, step)
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        guard.check(loss, step)
                        optimizer.found_inf = guard.skip_flag()
                        optimizer.step()
                    if after_step is not None:
                        after_step()
                    sums.add({"loss": loss, **metrics}, batch_size(batch))
                    if bar.disable is False and (step % 10 == 0 or step + 1 == total):
                        guard.poll()
                        bar.set_postfix(_format(sums.running(), show), refresh=False)
            guard.poll()
            record: Dict[str, Any] = {"epoch": epoch + 1}
            record.update({f"train_{k}": v for k, v in sums.reduce(device).items()})
            if not math.isfinite(record.get("train_loss", math.nan)):
                raise FloatingPointError(
                    f"{desc} epoch {epoch + 1}: the training loss is "
                    f"{record.get('train_loss', 'missing (empty loader)')}; stopped before "
                    f"writing a checkpoint" + (f" (the last good one, {files.checkpoint}, is "
                                               f"kept)" if files.checkpoint else ""))
            if validate is not None:
                record.update({f"val_{k}": v for k, v in validate(model).items()})
            if on_epoch_end is not None:
                record.update(on_epoch_end(record))
            record["time_s"] = time.perf_counter() - began
            history.append(record)
            if progress and main:
                tqdm.write(f"{desc} epoch {epoch + 1}/{epochs}: " + ", ".join(
                    f"{k}={v:.4g}" for k, v in record.items()
                    if isinstance(v, float) and k != "time_s"))
            rng = distributed.gather_objects(capture_rng(device, generators))
            files.save({"signature": signature, "epoch": epoch + 1,
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scaler": None if scaler is None else scaler.state_dict(),
                        "state": None if state is None else state.state_dict(),
                        "rng": rng, "history": history}, record)
    return TrainResult(model=model, history=history, epochs=max(start_epoch, epochs),
                       resumed_from=resumed_from, run_dir=files.dir)
