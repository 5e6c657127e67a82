"""Whole-network benchmark: one image batch through a U-Net and its uncertainty methods.

For a :class:`Network` (the U-Net of ``inn-cuda demo`` or the paper's CT U-Net, randomly
initialised from a seed: timing does not depend on training) it times, in float32, eval mode,
without autograd:

* ``point``: the point network's forward;
* ``inn_bounds``: the converted network with intervals in every parametrised layer
  (``to_interval(model)``, small random offsets), bounds only (``return_point=False``), on the
  compiled kernels;
* ``inn_bounds_reference``: the same forward with every interval op composed from stock
  PyTorch: the same model built in a subprocess with ``INN_CUDA_BACKEND=reference``. Skipped
  when the network's general-mode layers (signed inputs: the first convolution and the
  convolutions after each skip concatenation, whose up-convolved half is signed) hold more
  than ``reference_max_general_macs`` multiply-adds: the reference's exact elementwise product
  runs at about 1e8 of them per second on a CPU core (the paper U-Net at 256x256: 1.9e10), and
  glibc keeps its freed temporaries: the worker grows to several GiB resident at 1e9;
* ``inn``: the INN as the paper uses it: intervals in the last ``inn_last`` layers, the
  reconstruction and both bounds from one pass (``return_point=True``);
* ``mc_dropout``: ``inn_cuda.baselines.mc_dropout`` with ``mc_passes`` passes (``mc_max_batch``
  images per forward, as that function batches them);
* ``probout``: the probabilistic-output network (``inn_cuda.baselines.ProbOut``: one forward
  with an extra log-variance head).

Timing and peak memory follow the op benchmarks (:mod:`.timing`, :mod:`.memory`): the rows run
interleaved, and the ratio to the point forward is the median of the paired per-round ratios.

    python -m inn_cuda.benchmark.network SPEC_JSON   # the subprocess worker (prints JSON)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Sequence

import torch

from .memory import peak_bytes
from .timing import load_average, paired_ratios, repeats_for, time_interleaved, warm_up

ROWS = ("point", "inn_bounds", "inn_bounds_reference", "inn", "mc_dropout", "probout")
ROW_LABELS = {
    "point": "point forward",
    "inn_bounds": "INN bounds, all layers (fused)",
    "inn_bounds_reference": "INN bounds, all layers (reference composition)",
    "inn": "INN, last {inn_last} layers: reconstruction + bounds",
    "mc_dropout": "MC dropout, T = {mc_passes}",
    "probout": "probabilistic output",
}


@dataclass(frozen=True)
class Network:
    name: str
    width: int
    depth: int
    image_size: int
    batch: int
    dropout: float
    inn_last: int
    mc_passes: int
    mc_max_batch: int

    def label(self, row: str) -> str:
        return ROW_LABELS[row].format(**asdict(self))


# The demo's settings (inn_cuda.experiment presets "default": 64x64, width 8, depth 3, dropout
# 0.2, intervals in the last 6 layers, T = 16, batches of 16) and the paper's CT settings
# (docs/method.md section 5.1: 512x512, width 64, depth 4, dropout 0.7, last 12 layers, T = 16;
# one slice per batch, four MC passes per forward to bound the memory).
NETWORKS = {
    "demo-unet": Network("demo-unet", width=8, depth=3, image_size=64, batch=16, dropout=0.2,
                         inn_last=6, mc_passes=16, mc_max_batch=64),
    "paper-unet": Network("paper-unet", width=64, depth=4, image_size=512, batch=1,
                          dropout=0.7, inn_last=12, mc_passes=16, mc_max_batch=4),
}


def _build(net: Network, device: str, seed: int) -> dict:
    from .. import to_interval
    from ..baselines import ProbOut
    from ..nn import offset_parameters
    from ..tasks import UNet

    torch.manual_seed(seed)
    model = UNet(width=net.width, depth=net.depth, dropout=net.dropout).to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(net.batch, 1, net.image_size, net.image_size, generator=gen).to(device)
    inn_all, inn_last = to_interval(model).eval(), to_interval(model, last=net.inn_last).eval()
    with torch.no_grad():
        for inn in (inn_all, inn_last):
            for offset in offset_parameters(inn):
                offset.copy_(0.01 * torch.rand(offset.shape, generator=gen))
    return dict(model=model, x=x, inn_all=inn_all, inn_last=inn_last,
                probout=ProbOut(model).to(device).eval())


def _call(row: str, built: dict, net: Network):
    from ..baselines import mc_dropout

    x = built["x"]
    calls = {
        "point": lambda: built["model"](x),
        "inn_bounds": lambda: built["inn_all"](x, return_point=False),
        "inn": lambda: built["inn_last"](x, return_point=True),
        "mc_dropout": lambda: mc_dropout(built["model"], x, net.mc_passes,
                                         max_batch=net.mc_max_batch, seed=0),
        "probout": lambda: built["probout"](x),
    }

    def call():
        with torch.no_grad():
            calls[row]()
    return call


def time_rows(net: Network, device: str, rows: Sequence[str], *, budget_s: float,
              min_repeats: int, max_repeats: int, seed: int = 0) -> List[Dict]:
    """Time ``rows`` (not ``inn_bounds_reference``) in this process, interleaved (one call of
    each per round, ``budget_s`` each); every row keeps its paired ratio to ``point`` when that
    row is timed too (``ratio_to_point``, ``cpu_ratio_to_point``)."""
    from .._validation import check_bounds

    built = _build(net, device, seed)
    calls, peaks, firsts = {}, {}, []
    with check_bounds(False):
        for row in rows:
            calls[row] = _call(row, built, net)
            firsts.append(warm_up(calls[row], device))
            peaks[row] = peak_bytes(calls[row], device)
        repeats = repeats_for(sum(firsts), budget_s=budget_s * len(calls),
                              min_repeats=min_repeats, max_repeats=max_repeats)
        load = load_average()
        timings = time_interleaved(calls, device, repeats)
    point = timings.get("point")
    results = []
    for row, timing in timings.items():
        result = dict(
            network=net.name, config=asdict(net), device=device, dtype="float32", row=row,
            label=net.label(row), peak_bytes=peaks[row], load_1min=load,
            time_s=timing.wall.as_dict(), time_samples_s=timing.wall_samples)
        if point is not None:
            result["ratio_to_point"] = paired_ratios(timing.wall_samples,
                                                     point.wall_samples).as_dict()
        if timing.cpu is not None:
            result.update(cpu_time_s=timing.cpu.as_dict(), cpu_time_samples_s=timing.cpu_samples)
            if point is not None:
                result["cpu_ratio_to_point"] = paired_ratios(timing.cpu_samples,
                                                             point.cpu_samples).as_dict()
        results.append(result)
    return results


def time_reference_row(net: Network, device: str, *, budget_s: float, min_repeats: int,
                       max_repeats: int, seed: int = 0) -> Dict:
    """``inn_bounds`` with ``INN_CUDA_BACKEND=reference``, in a subprocess (the backend is
    chosen when inn_cuda is imported). A failed worker gives a row with ``error``."""
    spec = dict(network=asdict(net), device=device, rows=["inn_bounds"], budget_s=budget_s,
                min_repeats=min_repeats, max_repeats=max_repeats, seed=seed)
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, INN_CUDA_BACKEND="reference",
               OMP_NUM_THREADS=str(torch.get_num_threads()),
               PYTHONPATH=os.pathsep.join(filter(None, [package_parent,
                                                        os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "inn_cuda.benchmark.network", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    row = dict(network=net.name, config=asdict(net), device=device, dtype="float32",
               row="inn_bounds_reference", label=net.label("inn_bounds_reference"))
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return dict(row, error=f"reference worker failed (exit {done.returncode}): {tail}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])[0]
    return dict(measured, row=row["row"], label=row["label"])


def general_mode_macs(net: Network) -> int:
    """Multiply-adds of the layers that the all-layer INN runs in general mode."""
    from .. import to_interval
    from ..nn import named_interval_layers
    from ..tasks import UNet
    from .cases import unet_layers

    with torch.device("meta"):
        inn = to_interval(UNet(width=net.width, depth=net.depth, dropout=net.dropout))
    general = {name for name, layer in named_interval_layers(inn) if not layer.input_nonneg}
    layers = unet_layers(net.name, width=net.width, depth=net.depth,
                         image_size=net.image_size, batch=net.batch)
    return sum(case.macs for name, case in layers.items() if name in general)


def run_network(net: Network, device: str, *, rows: Sequence[str] = ROWS, budget_s: float,
                min_repeats: int = 3, max_repeats: int = 10,
                reference_max_general_macs: float = float("inf"), seed: int = 0) -> List[Dict]:
    results = time_rows(net, device, [r for r in rows if r != "inn_bounds_reference"],
                        budget_s=budget_s, min_repeats=min_repeats, max_repeats=max_repeats,
                        seed=seed)
    if "inn_bounds_reference" in rows:
        general = general_mode_macs(net)
        if general > reference_max_general_macs:
            results.append(dict(
                network=net.name, config=asdict(net), device=device, dtype="float32",
                row="inn_bounds_reference", label=net.label("inn_bounds_reference"),
                skipped=f"skipped: {general:.2g} multiply-adds in general mode (limit "
                        f"{reference_max_general_macs:.2g})"))
        else:
            results.append(time_reference_row(net, device, budget_s=budget_s,
                                              min_repeats=min_repeats,
                                              max_repeats=max_repeats, seed=seed))
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    order = {row: i for i, row in enumerate(ROWS)}
    return sorted(results, key=lambda r: order[r["row"]])


def networks(names: Sequence[str], *, paper_image_size: Optional[int] = None,
             batch: Optional[int] = None) -> List[Network]:
    """The named networks; ``paper_image_size`` changes the paper U-Net's image side, ``batch``
    every network's batch."""
    unknown = set(names) - set(NETWORKS)
    if unknown:
        raise ValueError(f"networks: expected names from {sorted(NETWORKS)}, got "
                         f"{sorted(unknown)}")
    chosen = [NETWORKS[name] for name in names]
    if paper_image_size:
        chosen = [replace(n, image_size=paper_image_size) if n.name == "paper-unet" else n
                  for n in chosen]
    return [replace(n, batch=batch) for n in chosen] if batch else chosen


def _worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    results = time_rows(Network(**spec["network"]), spec["device"], spec["rows"],
                        budget_s=spec["budget_s"], min_repeats=spec["min_repeats"],
                        max_repeats=spec["max_repeats"], seed=spec["seed"])
    print(json.dumps(results))


if __name__ == "__main__":
    _worker(sys.argv[1])
