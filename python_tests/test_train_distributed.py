"""torch.distributed: two CPU processes on gloo fit the same offsets as one process on the same
global batches, agree on the calibrated beta, and only rank 0 writes files."""

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

import inn_cuda
import inn_cuda.nn
from inn_cuda.train import fit_intervals
from inn_cuda.train import checkpoint as ckpt

from train_helpers import point_mlp, regression_data

WORLD = 2
GLOBAL_BATCH = 16
EPOCHS = 3


def _double(dataset):
    return TensorDataset(*(t.double() for t in dataset.tensors))


def _fit(per_process_batch, run_dir):
    """The same calibrated fit in every process: float64 so that the two ways of summing the
    global batch agree to ~1e-16 rather than float32 rounding amplified by Adam."""
    model = inn_cuda.to_interval(point_mlp(seed=0).double())
    train = DataLoader(_double(regression_data(128, seed=0)), batch_size=per_process_batch)
    val = DataLoader(_double(regression_data(64, seed=1)), batch_size=32)
    result = fit_intervals(model, train, val, target_coverage=0.9, epochs=EPOCHS, lr=1e-2,
                           run_dir=run_dir, seed=0, progress=False)
    return [p.detach() for p in inn_cuda.nn.offset_parameters(model)], result


def _worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        offsets, result = _fit(GLOBAL_BATCH // WORLD, out_dir / "run")
        torch.save({"offsets": offsets, "history": result.history, "beta": result.beta,
                    "coverage": result.coverage}, out_dir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_on_two_gloo_processes_equals_one_process(tmp_path):
    mp.spawn(_worker, args=(tmp_path / "init", tmp_path), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers: same kernels, same summation order
    try:
        single_offsets, single = _fit(GLOBAL_BATCH, None)
    finally:
        torch.set_num_threads(threads)

    for a, b in zip(ranks[0]["offsets"], ranks[1]["offsets"]):
        assert torch.equal(a, b), "the processes' offsets drifted apart"
    assert any(float(p.abs().max()) > 0 for p in single_offsets)
    for ddp, one in zip(ranks[0]["offsets"], single_offsets):
        torch.testing.assert_close(ddp, one, rtol=1e-9, atol=1e-12)
    assert ranks[0]["beta"] == ranks[1]["beta"]
    assert abs(ranks[0]["beta"] - single.beta) <= 1e-12 * single.beta
    assert ranks[0]["coverage"] == single.coverage
    for ddp, one in zip(ranks[0]["history"], single.history):
        for key in ("val_coverage", "val_width", "train_loss", "beta"):
            if key in one:
                assert abs(ddp[key] - one[key]) <= 1e-9 * (1 + abs(one[key])), key

    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    saved = ckpt.read_checkpoint(run / "checkpoint.pt")
    assert saved["signature"]["world_size"] == WORLD and len(saved["rng"]) == WORLD
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(EPOCHS + 1))
