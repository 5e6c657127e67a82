"""A converted model trains its offsets under DistributedDataParallel (2 CPU processes, gloo):
the averaged step equals one step on the whole batch in a single process."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

import inn_cuda.nn as inn
from inn_cuda.convert import to_interval

WORLD = 2


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 2)).eval()


def batch():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2 * WORLD, 1, 4, 4, generator=generator)
    return x, torch.randn(2 * WORLD, 2, generator=generator)


def loss_of(out, target):
    return ((out.lo - target).relu() ** 2 + (target - out.hi).relu() ** 2).mean() \
        + 0.1 * out.width.mean()


def step(model, x, target):
    """One SGD step on the offsets, from offsets 0.01 (so the hinge and width both act)."""
    with torch.no_grad():
        for p in inn.offset_parameters(model):
            p.fill_(0.01)
    optimiser = torch.optim.SGD(inn.offset_parameters(model), lr=0.5)
    loss_of(model(x), target).backward()
    optimiser.step()
    inn.project_(model)


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        model = make_model()
        ddp = DistributedDataParallel(to_interval(model))
        x, target = batch()
        shard = slice(2 * rank, 2 * rank + 2)
        step(ddp, x[shard], target[shard])
        offsets = [p.detach() for p in inn.offset_parameters(ddp.module)]
        torch.save({"offsets": offsets, "weights": make_model().state_dict(),
                    "original": model.state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_ddp_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    reference = to_interval(make_model())
    step(reference, *batch())
    expected = [p.detach() for p in inn.offset_parameters(reference)]
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert len(result["offsets"]) == len(expected)
        for got, want in zip(result["offsets"], expected):
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
        assert any(float(p.max()) > 0.01 for p in result["offsets"])  # the step moved them
        for key, value in result["original"].items():  # the point model is untouched
            assert torch.equal(value, result["weights"][key]), key
