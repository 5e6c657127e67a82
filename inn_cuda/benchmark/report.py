"""Benchmark output: markdown tables (printed and written), the JSON report and the figure.

The report is one dict: ``meta`` (machine, versions, settings, load), ``ops`` (one row per
case x implementation x phase, see :mod:`.ops`) and ``networks`` (one row per network x method,
see :mod:`.network`). Every time in it is in seconds. ``stat`` picks the time the tables and the
figure show: ``wall`` (median wall-clock; CUDA event time) or ``cpu`` (median process CPU time,
CPU rows only: less disturbed by other work on a shared machine).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from .._extras import STUDY_INSTALL, installed
from .ops import IMPLS, PHASES
from .timing import busy

IMPL_LABELS = {"plain": "plain", "fused_nonneg": "fused nonneg", "fused_general": "fused general",
               "library_nonneg": "library nonneg", "point_ibp": "point-weight IBP",
               "reference_nonneg": "ref nonneg", "reference_general": "ref general"}


def _path_mark(row: Optional[dict]) -> str:
    """Which path served the row's inn_cuda ops (recorded by the op benchmark): [fused],
    [library] or [mixed]."""
    paths = set((row or {}).get("path", {}).values())
    return "" if not paths else f" [{paths.pop() if len(paths) == 1 else 'mixed'}]"
PHASE_LABELS = {"forward": "forward", "forward_backward": "forward+backward"}


def machine_info() -> dict:
    """What the numbers depend on: CPU model and threads, SIMD path, GPUs, versions."""
    from .. import __version__, _backend

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(cpu=cpu, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                cpu_isa=_backend.BUILD.get("cpu_isa"),
                gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                torch=torch.__version__, torch_cuda=torch.version.cuda, inn_cuda=__version__,
                served_by=_backend.SERVED_BY)


def date() -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z")


# ---------------------------------------------------------------------------------- numbers

def _stat_key(row: dict, stat: str) -> str:
    return "cpu_time_s" if stat == "cpu" and "cpu_time_s" in row else "time_s"


def median_s(row: Optional[dict], stat: str = "wall") -> Optional[float]:
    if not row or "time_s" not in row:
        return None
    return row[_stat_key(row, stat)]["median"]


def spread(row: dict, stat: str = "wall") -> float:
    s = row[_stat_key(row, stat)]
    return (s["q3"] - s["q1"]) / s["median"] if s["median"] > 0 else float("nan")


def throughput(row: Optional[dict], stat: str = "wall") -> Optional[float]:
    """GEMM-equivalent GFLOP/s of one op row (see :mod:`.ops`)."""
    t = median_s(row, stat)
    return row["work_flops"] / t / 1e9 if t else None


def _ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 1000 else f"{ms:,.0f}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _rel_iqr(stats: dict) -> float:
    return (stats["q3"] - stats["q1"]) / stats["median"]


def paired_ratio(row: Optional[dict], other: str, stat: str = "wall") -> Optional[dict]:
    """The summary of the per-round ratios ``row / other`` (interleaved timing), if recorded."""
    if not row:
        return None
    key = "cpu_ratio_to" if stat == "cpu" and "cpu_ratio_to" in row else "ratio_to"
    return row.get(key, {}).get(other)


def _ratio_cell(rows: Dict[str, dict], impl: str, other: str, stat: str) -> str:
    """Median of the paired per-round ratios ± their interquartile range / median; a ratio of
    medians for reports written before the timing was interleaved."""
    paired = paired_ratio(rows.get(impl), other, stat)
    if paired:
        q = paired["median"]
        return f"{q:.2f}x ±{100 * _rel_iqr(paired):.0f}%" if q else "-"
    return _ratio(median_s(rows.get(impl), stat), median_s(rows.get(other), stat))


def _num(value: Optional[float], digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}" if value < 10 ** digits else f"{value:.0f}"


# ----------------------------------------------------------------------------------- tables

def _group_ops(rows: Iterable[dict]) -> Dict[Tuple[str, str, str], Dict[str, Dict[str, dict]]]:
    """(device, dtype, phase) -> case name -> impl -> row, in first-seen order."""
    grouped: Dict[Tuple[str, str, str], Dict[str, Dict[str, dict]]] = {}
    for row in rows:
        key = (row["device"], row["dtype"], row["phase"])
        grouped.setdefault(key, {}).setdefault(row["case"], {})[row["impl"]] = row
    return grouped


def op_tables(report: dict, stat: str = "wall") -> str:
    """One markdown table per (device, dtype, phase): times, ratios, throughput, memory."""
    out = []
    for (device, dtype, phase), cases in _group_ops(report["ops"]).items():
        time_name = ("process CPU time" if stat == "cpu" and device == "cpu" else
                     "CUDA-event time" if device.startswith("cuda") else "wall-clock time")
        out.append(f"#### {device} {dtype}, {PHASE_LABELS[phase]}\n")
        out.append(f"Median {time_name} in ms (± interquartile range / median); time ratios: "
                   f"the median of the per-round ratios of interleaved calls ± their "
                   f"interquartile range / median (below 1: the fused op is faster); "
                   f"GEMM-equivalent GFLOP/s; peak MiB allocated by one call.\n")
        out.append("| layer | shape | GFLOP | " + " | ".join(IMPL_LABELS[i] for i in IMPLS)
                   + " | fused/ref nonneg | fused/ref general | fused/plain nonneg "
                     "| fused/plain general | library/fused nonneg | point IBP/plain "
                     "| GFLOP/s plain · fused nonneg · fused general "
                     "| MiB plain · fused nonneg · ref nonneg |")
        out.append("|" + "---|" * (3 + len(IMPLS) + 8))
        for name, impls in cases.items():
            any_row = next(iter(impls.values()))
            shape = any_row["shape"]
            label = name.split(" ", 1)[1] if shape["group"] != "sweep" else name
            if shape["count"] > 1:
                label += f" (x{shape['count']})"
            cells = [label, _shape_text(shape), _num(2 * shape["macs"] / 1e9)]
            for impl in IMPLS:
                row = impls.get(impl)
                t = median_s(row, stat)
                cells.append("skipped" if row and "skipped" in row else
                             "-" if t is None else
                             f"{_ms(t)} ±{100 * spread(row, stat):.0f}%{_path_mark(row)}")
            cells += [_ratio_cell(impls, "fused_nonneg", "reference_nonneg", stat),
                      _ratio_cell(impls, "fused_general", "reference_general", stat),
                      _ratio_cell(impls, "fused_nonneg", "plain", stat),
                      _ratio_cell(impls, "fused_general", "plain", stat),
                      _ratio_cell(impls, "library_nonneg", "fused_nonneg", stat),
                      _ratio_cell(impls, "point_ibp", "plain", stat)]
            cells.append(" · ".join(_num(throughput(impls.get(i), stat))
                                    for i in ("plain", "fused_nonneg", "fused_general")))
            cells.append(" · ".join(_mib(impls.get(i))
                                    for i in ("plain", "fused_nonneg", "reference_nonneg")))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _shape_text(shape: dict) -> str:
    if shape["op"] == "linear":
        return f"{shape['batch']}x{shape['c_in']} -> {shape['c_out']}"
    kind = "convT" if shape["op"] == "conv_transpose2d" else "conv"
    stride = f" s{shape['stride']}" if shape["stride"] > 1 else ""
    return (f"{kind} {shape['c_in']}->{shape['c_out']} {shape['kernel']}x{shape['kernel']}"
            f"{stride}, {shape['batch']}x{shape['size']}²")


def _mib(row: Optional[dict]) -> str:
    if not row or row.get("peak_bytes") is None:
        return "-"
    return _num(row["peak_bytes"] / 2 ** 20, 2)


def network_tables(report: dict, stat: str = "wall") -> str:
    grouped: Dict[Tuple[str, str], List[dict]] = defaultdict(list)
    for row in report["networks"]:
        grouped[(row["device"], row["network"])].append(row)
    out = []
    for (device, name), rows in grouped.items():
        c = rows[0]["config"]
        out.append(f"#### {device}, {name}: U-Net width {c['width']}, depth {c['depth']}, "
                   f"batch {c['batch']} x {c['image_size']}x{c['image_size']}, float32\n")
        out.append("| method | median ms | ± | x point forward | peak MiB |")
        out.append("|---|---|---|---|---|")
        point = next((median_s(r, stat) for r in rows if r["row"] == "point"), None)
        for row in rows:
            if "error" in row or "skipped" in row:
                out.append(f"| {row['label']} | {row.get('error') or row['skipped']} | | | |")
                continue
            t = median_s(row, stat)
            key = "cpu_ratio_to_point" if stat == "cpu" and "cpu_ratio_to_point" in row else \
                "ratio_to_point"
            paired = row.get(key)
            ratio = (f"{paired['median']:.2f}x ±{100 * _rel_iqr(paired):.0f}%"
                     if paired and paired["median"] else _ratio(t, point))
            out.append(f"| {row['label']} | {_ms(t)} | {100 * spread(row, stat):.0f}% "
                       f"| {ratio} | {_mib(row)} |")
        out.append("")
    return "\n".join(out)


def header(report: dict) -> str:
    meta = report["meta"]
    m = meta["machine"]
    gpus = ", ".join(m["gpus"]) or "none"
    lines = [f"inn_cuda {m['inn_cuda']} benchmark, {meta['date']}",
             f"CPU: {m['cpu']} ({m['cpu_count']} logical cores, {m['torch_threads']} torch "
             f"threads, SIMD path {m['cpu_isa']}); GPU: {gpus}; torch {m['torch']}",
             f"load average (1 min) at start {_num(meta['load_start'])}, "
             f"at end {_num(meta['load_end'])}; command: {meta['command']}"]
    loads = [meta.get("load_start"), meta.get("load_end")] + [
        r.get("load_1min") for r in report.get("ops", []) + report.get("networks", [])]
    peak = max((x for x in loads if x is not None), default=None)
    if busy(peak, m["cpu_count"]):
        lines.append(f"WARNING: the machine was busy (load average up to {_num(peak)} on "
                     f"{m['cpu_count']} cores): absolute times are inflated; the paired ratios "
                     f"(interleaved calls) are the comparable figures")
    for device in meta["devices"]:
        served = sorted({devs.get(device, "?") for devs in m["served_by"].values()})
        lines.append(f"interval ops on {device} served by: {', '.join(served)}")
    fallbacks = sorted(f"{op} on {dev}" for op, devs in m["served_by"].items()
                       for dev, how in devs.items()
                       if how == "reference" and dev in meta["devices"])
    if fallbacks:
        lines.append("NOTE: no compiled kernel, the 'fused' rows time the reference fallback: "
                     + ", ".join(fallbacks))
    return "\n".join(lines) + "\n"


def render(report: dict, stat: str = "wall") -> str:
    parts = [header(report)]
    if report["ops"]:
        parts.append(op_tables(report, stat))
    if report["networks"]:
        parts.append(network_tables(report, stat))
    return "\n".join(parts)


# ----------------------------------------------------------------------------------- figure

GROUP_MARKERS = {"demo-unet": "x", "paper-unet": "^"}
OTHER_MARKER = "s"  # sweep shapes outside a size series


def plot_throughput(report: dict, out_dir: Path, stat: str = "wall") -> List[Path]:
    """One PNG per (device, dtype): GEMM-equivalent GFLOP/s against the plain layer's GEMM
    GFLOP (log-log), a colour per implementation, a panel per op and phase. Lines join the
    cases of a size series (the sweep); markers alone are single shapes (x: demo U-Net layers,
    triangles: paper U-Net layers, squares: other sweep shapes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    by_figure: Dict[Tuple[str, str], List[dict]] = defaultdict(list)
    for row in report["ops"]:
        if "time_s" in row:
            by_figure[(row["device"], row["dtype"])].append(row)
    colours = {impl: f"C{i}" for i, impl in enumerate(IMPLS)}
    paths = []
    for (device, dtype), rows in by_figure.items():
        ops = [op for op in ("linear", "conv2d", "conv_transpose2d")
               if any(r["op"] == op for r in rows)]
        phases = [p for p in PHASES if any(r["phase"] == p for r in rows)]
        fig, axes = plt.subplots(len(ops), len(phases), squeeze=False,
                                 figsize=(5.0 * len(phases), 3.4 * len(ops)))
        for i, op in enumerate(ops):
            for j, phase in enumerate(phases):
                ax = axes[i, j]
                panel = [r for r in rows if r["op"] == op and r["phase"] == phase]
                for impl in IMPLS:
                    mine = [r for r in panel if r["impl"] == impl]
                    for series in sorted({r["shape"].get("series", "") for r in mine} - {""}):
                        points = sorted((2 * r["shape"]["macs"] / 1e9, throughput(r, stat))
                                        for r in mine if r["shape"].get("series") == series)
                        ax.plot(*zip(*points), marker="o", markersize=3, linewidth=1,
                                color=colours[impl])
                    for r in mine:
                        if not r["shape"].get("series"):
                            ax.plot(2 * r["shape"]["macs"] / 1e9, throughput(r, stat),
                                    linestyle="none", color=colours[impl], markersize=4,
                                    marker=GROUP_MARKERS.get(r["group"], OTHER_MARKER),
                                    fillstyle="none")
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(f"{op}, {PHASE_LABELS[phase]}", fontsize=10)
                ax.set_xlabel("plain layer GEMM size (GFLOP)", fontsize=8)
                ax.set_ylabel("GEMM-equivalent GFLOP/s", fontsize=8)
                ax.grid(True, which="both", alpha=0.3)
                ax.tick_params(labelsize=7)
        handles = [Line2D([], [], color=colours[i], label=IMPL_LABELS[i]) for i in IMPLS]
        handles += [Line2D([], [], color="gray", marker=m, linestyle="none", fillstyle="none",
                           label=label)
                    for m, label in ((GROUP_MARKERS["demo-unet"], "demo U-Net layers"),
                                     (GROUP_MARKERS["paper-unet"], "paper U-Net layers"),
                                     (OTHER_MARKER, "other shapes"))]
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
        time_name = "CPU time" if stat == "cpu" and device == "cpu" else "median time"
        fig.suptitle(f"inn_cuda throughput, {device} {dtype} ({time_name}); lines: size series",
                     fontsize=11)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        path = out_dir / f"throughput_{device.replace(':', '')}_{dtype}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------- output

def write(report: dict, out_dir: os.PathLike, stat: str = "wall") -> List[Path]:
    """results.json, tables.md and the figures into ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, table_path = out / "results.json", out / "tables.md"
    json_path.write_text(json.dumps(report, indent=1))
    table_path.write_text(render(report, stat))
    if not installed("matplotlib"):  # a core install: the numbers are saved, say why no PNG
        print(f"figures skipped: they need matplotlib ({STUDY_INSTALL})", file=sys.stderr)
        return [json_path, table_path]
    return [json_path, table_path, *plot_throughput(report, out, stat)]
