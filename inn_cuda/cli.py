"""The ``inn-cuda`` command line (also ``python -m inn_cuda``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inn-cuda", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_bench(commands)
    info = commands.add_parser("info", help="what was built and which backend serves each op")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from .benchmark.command import run_from_args
        return run_from_args(args)
    if args.command == "info":
        return _print_info(args.json)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
