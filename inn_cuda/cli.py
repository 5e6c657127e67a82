"""The ``inn-cuda`` command line (also ``python -m inn_cuda``).

A misuse (a bad flag or value, a bad ``--set``, an ``--out`` that cannot be written, a bad
environment variable, a damaged input file) ends with one line on stderr and exit status 2;
``--debug`` (or ``INN_CUDA_DEBUG=1``) shows the traceback instead."""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from ._args import nonnegative_int, positive_int, torch_device, writable_folder
from ._environment import DEBUG_ENV, debug_requested, read_flag

# Errors that come from what the user gave (arguments, files, environment, installed
# packages): one line and exit status 2. Anything else is a bug: one line, status 1.
USER_ERRORS = (ValueError, OSError, ImportError, RuntimeError)


def _add_bench(commands) -> None:
    from .benchmark.command import configure_parser

    configure_parser(commands.add_parser(
        "bench", help="benchmark the interval ops and a whole U-Net (tables, JSON, figures)"))


def _print_info(as_json: bool) -> int:
    from . import info

    report = info()
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"inn_cuda {report['inn_cuda']}  (torch {report['torch']}, "
          f"torch CUDA {report['torch_cuda'] or 'none'})")
    if not report["extension_loaded"]:
        print(f"compiled extension: NOT LOADED ({report['extension_missing_reason']})")
    else:
        print(f"compiled extension: built against torch {report['built_with_torch']}")
        print(f"  CPU kernels: yes, SIMD dispatch on this machine: {report['cpu_isa']}")
        if report["cuda_kernels_compiled"]:
            print(f"  CUDA kernels: yes (CUDA {report['cuda_toolkit']}, archs "
                  f"{report['cuda_archs']})")
        else:
            print("  CUDA kernels: not compiled")
    gpus = report["gpus"]
    print(f"GPU visible: {'yes: ' + ', '.join(gpus) if gpus else 'no'}")
    from ._backend import describe_backends

    for line in describe_backends(report):
        print(line)
    print("ops (cpu / cuda):")
    width = max(len(op) for op in report["ops"])
    for op, served in report["ops"].items():
        print(f"  {op:<{width}}  {served['cpu']:<9} / {served['cuda']}")
    fallbacks = sorted({op for op, s in report["ops"].items() if "reference" in s.values()})
    if fallbacks:
        print("ops falling back to the pure-PyTorch reference on some device: "
              + ", ".join(fallbacks))
    return 0


def _add_demo(commands) -> None:
    demo = commands.add_parser(
        "demo", help="the end-to-end failure-mode study: INN vs MC dropout vs probabilistic "
        "output, with report and figures",
        description="Train a reconstruction network, convert it to an interval neural network "
        "and fit its intervals, fine-tune the probabilistic-output baseline, run MC dropout, "
        "create noisy, adversarial and artifact cases, evaluate every method with every metric "
        "and write report.md, metrics.json and PNG figures to --out. A rerun with the same "
        "--out resumes the finished stages.")
    demo.add_argument("--task", choices=("ct", "deconv1d"), default="ct",
                      help="limited-angle CT (default) or 1D deconvolution")
    demo.add_argument("--preset", choices=("default", "paper", "tiny"), default="default",
                      help="default: minutes on a CPU; paper: the published settings (512x512, "
                      "full U-Net; for a GPU); tiny: seconds, for tests")
    demo.add_argument("--device", type=torch_device, default=None,
                      help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when a GPU is visible, else cpu)")
    demo.add_argument("--threads", type=positive_int, default=None,
                      help="CPU threads for torch (default: torch's choice; on a machine shared "
                      "with other jobs 1 can be much faster)")
    demo.add_argument("--size", type=positive_int, default=None,
                      help="image side (ct) or signal length (deconv1d); default: the preset's")
    demo.add_argument("--epochs", type=nonnegative_int, default=None,
                      help="epochs of the point network's training (default: the preset's)")
    demo.add_argument("--seed", type=nonnegative_int, default=None,
                      help="random seed (default 0)")
    demo.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                      help="repeat the whole study for N seeds (--seed .. --seed + N - 1), each "
                      "in <out>/seed-<k>/, and report mean +- sd across them (default 1: one "
                      "study written to --out itself)")
    demo.add_argument("--out", default=None,
                      help="report folder (default: runs/demo-<task>-<preset>)")
    demo.add_argument("--set", dest="assignments", action="append", default=[],
                      metavar="NAME=VALUE",
                      help="override any setting, e.g. --set inn_last=8 --set mc_passes=32 "
                      "(repeatable; the names are listed in the report's settings table)")
    demo.add_argument("--ablate", action="append", default=[], metavar="AXIS=V1,V2",
                      help="after the study, refit the INN per variant and write ablation.md "
                      "and figures: last=2,4,7,all (interval layers), beta=fixed,adaptive,"
                      "calibrated, coverage=0.8,0.9,0.95 (calibration target), dropout=off,on "
                      "(while fitting); repeatable, or joined with ';'")
    demo.add_argument("--overwrite", action="store_true",
                      help="recompute every stage even if --out holds saved work")
    demo.add_argument("--quiet", action="store_true", help="no progress bars or stage log")
    demo.set_defaults(subparser=demo)  # errors print the demo's usage


def _run_demo(args) -> int:
    from .experiment import StudyError, make_settings, parse_assignments, run_study
    from .experiment.ablation import parse_ablate, run_ablations

    try:
        ablate = parse_ablate(args.ablate)
        overrides = parse_assignments(args.assignments)
        for name in ("device", "threads", "size", "epochs", "seed"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        settings = make_settings(args.task, args.preset, **overrides)
    except ValueError as error:
        args.subparser.error(str(error))
    out = writable_folder(args.subparser, "--out",
                          args.out or f"runs/demo-{args.task}-{args.preset}")
    try:
        if args.seeds > 1:
            from .experiment.seeds import run_seeds
            result = run_seeds(settings, out, args.seeds, progress=not args.quiet,
                               overwrite=args.overwrite)
        else:
            result = run_study(settings, out, progress=not args.quiet, overwrite=args.overwrite)
        if ablate:
            files = run_ablations(settings, out, ablate, progress=not args.quiet)
            print(f"ablations: {files[1]}")
    except StudyError as error:
        print(f"inn-cuda demo: error: {error}", file=sys.stderr)
        return 2
    print(f"report: {result.out / 'report.md'}")
    return 0


def _add_debug(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help=f"show Python tracebacks of errors (also {DEBUG_ENV}=1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inn-cuda", description=__doc__)
    _add_debug(parser, False)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_bench(commands)
    info = commands.add_parser("info", help="what was built and which backend serves each op")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    _add_demo(commands)
    for sub in commands.choices.values():  # --debug also after the command's name
        _add_debug(sub, argparse.SUPPRESS)
    return parser


def _run(args) -> int:
    if args.command == "bench":
        from .benchmark.command import run_from_args
        return run_from_args(args)
    if args.command == "info":
        return _print_info(args.json)
    if args.command == "demo":
        return _run_demo(args)
    raise AssertionError(args.command)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, USER_ERRORS) else f"{type(error).__name__}: {text}"


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debug_requested(argv)
    command = "inn-cuda"
    try:
        read_flag(DEBUG_ENV, False)  # a bad value is itself a misuse
        args = build_parser().parse_args(argv)
        args.argv = ["inn-cuda", *argv]  # recorded in reports
        command = f"inn-cuda {args.command}"
        return _run(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the command line's last line of defence
        if debug:
            raise
        user = isinstance(error, USER_ERRORS)
        print(f"{command}: error: {_one_line(error)}"
              + ("" if user else " (an internal error: --debug shows the traceback)"),
              file=sys.stderr)
        return 2 if user else 1


if __name__ == "__main__":
    sys.exit(main())
