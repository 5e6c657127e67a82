"""``inn-cuda bench``: the op benchmarks and the whole-network benchmark on every device.

Also ``python benchmarks/run.py`` (a source checkout) and ``python -m inn_cuda.benchmark``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import List, Optional

import torch

from .._args import nonnegative_float, positive_float, positive_int, writable_folder
from . import report as rep
from .cases import GROUPS, OPS, PAPER_UNET, op_cases
from .network import NETWORKS, networks, run_network
from .ops import IMPLS, PHASES, dtypes_for, run_case
from .timing import busy, load_average

DESCRIPTION = (
    "Benchmark the interval ops (linear, conv2d, conv_transpose2d; forward and forward+backward; "
    "non-negative and general input) against the reference composition and the plain layer, "
    "over a size sweep and the layers of the demo's and the paper's U-Net, and a whole U-Net "
    "(interval vs point vs reference forward, INN vs MC dropout vs probabilistic output). "
    "Prints markdown tables; writes results.json, tables.md and throughput figures to --out.")

# Per-measurement settings: (budget_s, min_repeats, max_repeats) for ops, then networks.
# The reference limits keep each reference call under about ten seconds (CPU: one core does
# about 1e8 general-mode multiply-adds per second in the reference's elementwise product).
SETTINGS = {
    ("quick", "cpu"): dict(budget_s=0.1, min_repeats=3, max_repeats=10, net_budget_s=0.5,
                           reference_general_max_macs=1 << 21,
                           network_reference_max_macs=1 << 30),
    ("full", "cpu"): dict(budget_s=2.0, min_repeats=3, max_repeats=20, net_budget_s=5.0,
                          reference_general_max_macs=1 << 24,
                          network_reference_max_macs=1 << 30),
    ("quick", "cuda"): dict(budget_s=0.05, min_repeats=5, max_repeats=20, net_budget_s=0.5,
                            reference_general_max_macs=1 << 28,
                            network_reference_max_macs=1 << 37),
    ("full", "cuda"): dict(budget_s=0.5, min_repeats=10, max_repeats=100, net_budget_s=2.0,
                           reference_general_max_macs=1 << 30,
                           network_reference_max_macs=1 << 37),
}
QUICK_NETWORK_BATCH = 4  # --quick: the demo U-Net on 4 images instead of 16


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = DESCRIPTION
    parser.add_argument("--quick", action="store_true",
                        help="small sweep, the demo U-Net's layers, the demo U-Net on 4 images, "
                        "short budgets (about a minute on an idle 2-core CPU)")
    parser.add_argument("--out", default="runs/bench",
                        help="folder for results.json, tables.md and the figures "
                        "(default: runs/bench)")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="all (default): the CPU and, when visible, the GPU")
    parser.add_argument("--dtype", nargs="+", choices=("float32", "float64", "float16",
                                                       "bfloat16"),
                        help="default: float32 on the CPU; float32, float16, bfloat16 on CUDA")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    parser.add_argument("--groups", nargs="+", choices=GROUPS,
                        help=f"case groups (default: all of {', '.join(GROUPS)}; --quick: "
                        "sweep demo-unet)")
    parser.add_argument("--only", metavar="TEXT",
                        help="only the cases whose name contains TEXT")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--networks", nargs="+", choices=(*NETWORKS, "none"),
                        help="whole-network benchmarks (default: demo-unet paper-unet; "
                        "--quick: demo-unet); none: skip")
    parser.add_argument("--paper-size", type=_paper_size, default=PAPER_UNET["image_size"],
                        help="image side of the paper U-Net's layers and network (default "
                        "%(default)s; smaller for a shorter run)")
    parser.add_argument("--budget-s", type=nonnegative_float,
                        help="seconds of repeats per measurement (default: by device and mode)")
    parser.add_argument("--min-repeats", type=positive_int)
    parser.add_argument("--max-repeats", type=positive_int)
    parser.add_argument("--reference-general-max-macs", type=positive_float,
                        help="skip reference_general above this many multiply-adds (default "
                        "2^24 CPU, 2^30 CUDA; --quick 2^21, 2^28)")
    parser.add_argument("--network-reference-max-macs", type=positive_float,
                        help="skip the whole network's reference-composition row when its "
                        "general-mode layers hold more multiply-adds (default 2^30 CPU, 2^37 "
                        "CUDA)")
    parser.add_argument("--threads", type=positive_int,
                        help="torch.set_num_threads for the CPU runs (the fused CPU kernels use "
                        "torch's thread pool); with 1 and --time cpu a loaded machine disturbs "
                        "the CPU numbers least")
    parser.add_argument("--time", choices=("wall", "cpu"), default="wall",
                        help="the time the tables and figures show for CPU rows: median "
                        "wall-clock (default) or median process CPU time (all threads; steadier "
                        "on a loaded machine)")
    parser.add_argument("--from", dest="from_json", metavar="RESULTS_JSON",
                        help="run nothing: print the tables of an earlier results.json (and "
                        "rewrite tables and figures into --out)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(bench_parser=parser)  # for errors found after parsing
    return parser


def _paper_size(text: str) -> int:
    size = positive_int(text)
    step = 2 ** PAPER_UNET["depth"]
    if size % step:
        raise argparse.ArgumentTypeError(f"expected an image side divisible by {step} (the paper "
                                         f"U-Net has {PAPER_UNET['depth']} levels), got {text!r}")
    return size


def _check_args(args) -> None:
    """What argparse cannot check flag by flag; errors exit 2 naming the flag."""
    parser = args.bench_parser
    if (args.min_repeats is not None and args.max_repeats is not None
            and args.min_repeats > args.max_repeats):
        parser.error(f"--min-repeats {args.min_repeats} is above --max-repeats "
                     f"{args.max_repeats}")
    writable_folder(parser, "--out", args.out)


def _read_results(parser, path) -> dict:
    try:
        with open(path) as f:
            report = json.load(f)
    except OSError as error:
        parser.error(f"--from: cannot read {path} ({error.strerror or error})")
    except (ValueError, UnicodeDecodeError) as error:
        parser.error(f"--from: {path} is not JSON ({error})")
    missing = [k for k in ("meta", "ops", "networks")
               if not isinstance(report, dict) or k not in report]
    if missing:
        parser.error(f"--from: {path} is not a results.json of inn-cuda bench (no "
                     f"{', '.join(missing)})")
    return report


def _devices(choice: str) -> List[str]:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("inn-cuda bench: --device cuda, but no GPU is visible")
    if choice == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [choice]


def _settings(args, device: str) -> dict:
    kind = "cuda" if device.startswith("cuda") else "cpu"
    settings = dict(SETTINGS[("quick" if args.quick else "full", kind)])
    for name in ("budget_s", "min_repeats", "max_repeats", "reference_general_max_macs",
                 "network_reference_max_macs"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    settings["paper_size"] = args.paper_size
    return settings


def run(args) -> dict:
    from tqdm import tqdm

    devices = _devices(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    groups = args.groups or (["sweep", "demo-unet"] if args.quick else list(GROUPS))
    net_names = args.networks or (["demo-unet"] if args.quick else ["demo-unet", "paper-unet"])
    net_names = [] if "none" in net_names else net_names
    report = dict(meta=dict(date=rep.date(), command=" ".join(getattr(args, "argv", sys.argv)),
                            machine=rep.machine_info(), devices=devices, quick=args.quick,
                            load_start=load_average(), settings={}),
                  ops=[], networks=[])
    if busy(report["meta"]["load_start"]):
        print(f"inn-cuda bench: WARNING: load average {report['meta']['load_start']:.2f} on "
              f"{os.cpu_count()} cores: other work competes for the CPU; absolute times will be "
              f"inflated, compare the paired ratios", file=sys.stderr)
    for device in devices:
        settings = _settings(args, device)
        report["meta"]["settings"][device] = settings
        cases = [c for c in op_cases(quick=args.quick, groups=groups, ops=args.ops,
                                     paper_image_size=settings["paper_size"])
                 if not args.only or args.only in c.name]
        jobs = [(dtype, case) for dtype in dtypes_for(device, args.dtype) for case in cases]
        bar = tqdm(jobs, desc=f"ops on {device}", file=sys.stderr, disable=args.quiet)
        for dtype, case in bar:
            bar.set_postfix_str(f"{str(dtype)[6:]} {case.name}")
            report["ops"] += run_case(
                case, device, dtype, impls=args.impls, phases=args.phases,
                budget_s=settings["budget_s"], min_repeats=settings["min_repeats"],
                max_repeats=settings["max_repeats"],
                reference_general_max_macs=int(settings["reference_general_max_macs"]))
        nets = networks(net_names, paper_image_size=settings["paper_size"],
                        batch=QUICK_NETWORK_BATCH if args.quick else None)
        for net in tqdm(nets, desc=f"networks on {device}", file=sys.stderr,
                        disable=args.quiet or not nets):
            report["networks"] += run_network(
                net, device, budget_s=settings["net_budget_s"],
                min_repeats=settings["min_repeats"], max_repeats=10,
                reference_max_general_macs=settings["network_reference_max_macs"])
    report["meta"]["load_end"] = load_average()
    return report


def run_from_args(args) -> int:
    _check_args(args)
    if args.from_json:
        report = _read_results(args.bench_parser, args.from_json)
    else:
        with warnings.catch_warnings():
            # The fallback warning of an op without a kernel: the report's header says it.
            warnings.filterwarnings("ignore", message="inn_cuda: .* runs the pure-PyTorch")
            report = run(args)
    print(rep.render(report, args.time))
    written = rep.write(report, args.out, args.time)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``inn-cuda bench`` with ``argv`` (default: the command line): the command line's
    argument checks and error handling (one line, exit status 2; ``--debug``)."""
    from ..cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])
