"""The study's PNG figures (matplotlib, Agg backend), in the paper's layout:

* ``cases.png``: columns clean / adversarial / artifact; rows input, ground truth,
  reconstruction, |error| and the uncertainty of each method (the changed region or artifact
  footprint outlined). Each row shares one colour scale across the columns, so a map that
  lights up under a perturbation is seen to. 1D signals are drawn as curves.
* ``direction_accuracy.png``: direction accuracy against the asymmetry threshold per case (on
  the support; the majority base rate each accuracy must beat is in the report's direction
  table).
* ``noise.png``: mean uncertainty (relative to clean) and the image-level AUROC against the
  noise level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

CASES_FIGURE = "cases.png"
DIRECTION_FIGURE = "direction_accuracy.png"
NOISE_FIGURE = "noise.png"
DPI = 80
METHOD_COLORS = {"INN": "tab:red", "MCDROP": "tab:blue", "PROBOUT": "tab:green"}
UNCERTAINTY_NAMES = {"INN": "INN width hi - lo", "MCDROP": "MCDROP std",
                     "PROBOUT": "PROBOUT sigma"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _rows(examples: Dict[str, dict]):
    """(row label, per-case arrays, kind) with kind 'image' (grey) or 'map' (heat)."""
    cases = list(examples)
    methods = list(examples[cases[0]]["methods"])
    point = "INN" if "INN" in methods else methods[0]
    rows = [("input", [examples[c]["input"] for c in cases], "image"),
            ("ground truth", [examples[c]["target"] for c in cases], "image"),
            ("reconstruction", [examples[c]["methods"][point]["rec"] for c in cases], "image"),
            ("|error|", [np.abs(examples[c]["methods"][point]["rec"] - examples[c]["target"])
                         for c in cases], "map")]
    rows += [(UNCERTAINTY_NAMES.get(m, m), [examples[c]["methods"][m]["uncertainty"]
                                            for c in cases], "map") for m in methods]
    return cases, rows


def _cases_2d(plt, examples, path: Path):
    cases, rows = _rows(examples)
    fig, axes = plt.subplots(len(rows), len(cases), figsize=(1.6 * len(cases) + 1.0,
                                                             1.45 * len(rows)), squeeze=False,
                             layout="constrained")
    grey_hi = max(float(np.percentile(examples[c]["target"], 99.5)) for c in cases) or 1.0
    for r, (label, arrays, kind) in enumerate(rows):
        if kind == "image":
            vmin, vmax, cmap = 0.0, grey_hi, "gray"
        else:
            vmin, vmax, cmap = 0.0, max(float(np.percentile(a, 99.5)) for a in arrays), "magma"
        for c, array in enumerate(arrays):
            ax = axes[r, c]
            im = ax.imshow(array, cmap=cmap, vmin=vmin, vmax=vmax or 1.0)
            mask = examples[cases[c]]["mask"]
            if kind == "map" and mask is not None and mask.any() and not mask.all():
                ax.contour(mask.astype(float), levels=[0.5], colors="cyan", linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cases[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
        fig.colorbar(im, ax=axes[r, :].tolist(), fraction=0.05, pad=0.02).ax.tick_params(
            labelsize=6)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _cases_1d(plt, examples, path: Path):
    cases, rows = _rows(examples)
    methods = list(examples[cases[0]]["methods"])
    fig, axes = plt.subplots(len(rows) - 1, len(cases), figsize=(3.2 * len(cases),
                                                                 1.3 * (len(rows) - 1)),
                             squeeze=False, sharex=True)
    for c, case in enumerate(cases):
        ex = examples[case]
        x = np.arange(ex["input"].shape[-1])
        panels = [("input", [(ex["input"], "k", "input")]),
                  ("reconstruction", [(ex["target"], "0.6", "target")])]
        panels += [(label, [(arrays[c], "k", None)]) for label, arrays, kind in rows[3:]]
        for r, (label, curves) in enumerate(panels):
            ax = axes[r, c]
            for y, color, name in curves:
                ax.plot(x, y, color=color, lw=0.8, label=name)
            if label == "reconstruction":
                inn = ex["methods"].get("INN")
                if inn is not None:
                    ax.fill_between(x, inn["lo"], inn["hi"], color=METHOD_COLORS["INN"],
                                    alpha=0.3, lw=0, label="INN [lo, hi]")
                ax.plot(x, ex["methods"][methods[0]]["rec"], color="tab:red", lw=0.8,
                        label="reconstruction")
            if ex["mask"] is not None and ex["mask"].any():
                ax.fill_between(x, 0, 1, where=ex["mask"].astype(bool), color="cyan",
                                alpha=0.15, transform=ax.get_xaxis_transform(), lw=0)
            if r == 0:
                ax.set_title(case, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
            ax.tick_params(labelsize=6)
            ax.ticklabel_format(axis="y", useOffset=False)
        if c == 0:
            axes[1, 0].legend(fontsize=6, loc="upper right")
    for r in range(axes.shape[0]):  # one y-range per row, so the columns compare
        lows, highs = zip(*(axes[r, c].get_ylim() for c in range(len(cases))))
        for c in range(len(cases)):
            axes[r, c].set_ylim(min(lows), max(highs))
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _direction(plt, metrics: dict, path: Path):
    cases = [c for c in ("clean", "adversarial", "artifact") if c in metrics["cases"]]
    fig, axes = plt.subplots(1, len(cases), figsize=(3.0 * len(cases), 2.6), squeeze=False,
                             sharey=True)
    for ax, case in zip(axes[0], cases):
        for method, results in metrics["results"].items():
            if method in metrics.get("controls", ()):
                continue
            acc = results.get(case, {}).get("direction_accuracy_by_ratio", {})
            points = [(float(t), v) for t, v in acc.items() if v is not None]
            if points:
                ts, vs = zip(*points)
                ax.plot(ts, vs, marker="o", ms=3, color=METHOD_COLORS.get(method), label=method)
        ax.axhline(0.5, color="0.5", ls="--", lw=0.8, label="0.5 (not the base rate)")
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("asymmetry threshold t", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("direction accuracy", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _noise(plt, metrics: dict, path: Path, noise_label: str):
    noise = [n for n, c in metrics["cases"].items() if c["kind"] == "noise"]
    levels = [0.0] + [metrics["cases"][n]["level"] for n in noise]
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.8))
    for method, results in metrics["results"].items():
        if method in metrics.get("controls", ()):
            continue
        color = METHOD_COLORS.get(method)
        series = [results.get(c, {}).get("mean_uncertainty") for c in ["clean", *noise]]
        if series[0]:
            left.plot(levels, [v / series[0] if v is not None else np.nan for v in series],
                      marker="o", ms=3, color=color, label=f"{method} uncertainty")
        auroc = [results.get(c, {}).get("image_auroc") for c in noise]
        right.plot(levels[1:], [np.nan if v is None else v for v in auroc], marker="o", ms=3,
                   color=color, label=method)
    first = next(iter(metrics["results"].values()))
    error = [first.get(c, {}).get("rmse") for c in ["clean", *noise]]
    if error[0]:
        left.plot(levels, [v / error[0] for v in error], color="k", ls="--", lw=1,
                  label="reconstruction RMSE")
    left.set_xlabel(noise_label, fontsize=8)
    left.set_ylabel("relative to clean", fontsize=8)
    left.legend(fontsize=7)
    right.axhline(0.5, color="0.5", ls="--", lw=0.8)
    right.set_xlabel(noise_label, fontsize=8)
    right.set_ylabel("image AUROC noisy vs clean", fontsize=8)
    right.set_ylim(0, 1.02)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def make_figures(out, examples: Dict[str, dict], metrics: dict, spatial_dims: int,
                 noise_label: str) -> List[Path]:
    """Write the figures into ``out``; returns their paths."""
    plt = _pyplot()
    out = Path(out)
    paths = [out / CASES_FIGURE, out / DIRECTION_FIGURE, out / NOISE_FIGURE]
    (_cases_2d if spatial_dims == 2 else _cases_1d)(plt, examples, paths[0])
    _direction(plt, metrics, paths[1])
    _noise(plt, metrics, paths[2], noise_label)
    return paths
