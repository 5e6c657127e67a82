"""``torch.distributed`` support of the training loop: who is rank 0, DDP wrapping, splitting
the data loaders between processes, and summing metrics over processes.

Launch with ``torchrun --nproc-per-node N script.py`` and call
``torch.distributed.init_process_group(...)`` in the script before training; the loop notices the
process group and does the rest. Without one every helper here is a no-op.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, RandomSampler,
                              SequentialSampler)


def world() -> tuple:
    """(rank, world size), (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Only rank 0 writes logs and checkpoints and shows progress bars."""
    return world()[0] == 0


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module the training steps call: ``DistributedDataParallel`` (which all-reduces the
    gradients of the parameters being trained, and only those) inside a process group of more
    than one process, else the model itself."""
    if world()[1] == 1:
        return model
    device_ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _loader_like(loader: DataLoader, sampler) -> DataLoader:
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                      prefetch_factor=loader.prefetch_factor,
                      persistent_workers=loader.persistent_workers,
                      generator=loader.generator)


def _check_rebuildable(loader: DataLoader, name: str) -> None:
    if (not isinstance(loader, DataLoader) or type(loader.batch_sampler) is not BatchSampler
            or type(loader.sampler) not in (RandomSampler, SequentialSampler)):
        raise ValueError(f"{name}: under torch.distributed each process needs its own part of "
                         f"the data; pass a DataLoader with a DistributedSampler, or a plain "
                         f"DataLoader (shuffle=True/False, batch_size=...) that the loop can "
                         f"split, got {type(loader).__name__} with sampler "
                         f"{type(getattr(loader, 'sampler', None)).__name__}")


def split_train_loader(loader, seed: int, name: str = "train_loader"):
    """The training loader this process iterates: under a process group a plain loader is rebuilt
    with a ``DistributedSampler`` (same shuffling choice, ``seed``), so each step's global batch
    is ``world size x batch_size`` samples; a loader that already has a ``DistributedSampler``
    is used as it is."""
    rank, size = world()
    if size == 1 or isinstance(getattr(loader, "sampler", None), DistributedSampler):
        return loader
    _check_rebuildable(loader, name)
    sampler = DistributedSampler(loader.dataset, num_replicas=size, rank=rank,
                                 shuffle=isinstance(loader.sampler, RandomSampler), seed=seed,
                                 drop_last=loader.drop_last)
    return _loader_like(loader, sampler)


def split_eval_loader(loader, name: str = "val_loader"):
    """Evaluation loader of this process: every ``size``-th sample starting at ``rank`` (no
    padding, so the summed metrics are exactly those of the whole set)."""
    rank, size = world()
    if size == 1 or isinstance(getattr(loader, "sampler", None), DistributedSampler):
        return loader  # already split by the caller (its padding may repeat a few samples)
    _check_rebuildable(loader, name)
    return _loader_like(loader, range(rank, len(loader.dataset), size))


def set_epoch(loader, epoch: int) -> None:
    """DistributedSampler reshuffles per epoch only when told the epoch."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def sum_over_processes(values: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """All-reduce (sum) a dict of same-device scalar tensors in one collective."""
    if world()[1] == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].reshape(()) for k in keys])
    dist.all_reduce(stacked)
    return dict(zip(keys, stacked.unbind()))


def gather_objects(obj) -> List:
    """Every process's ``obj`` (a list indexed by rank); ``[obj]`` outside a process group."""
    size = world()[1]
    if size == 1:
        return [obj]
    gathered: List[Optional[object]] = [None] * size
    dist.all_gather_object(gathered, obj)
    return gathered
