"""Ablations of the INN's choices on a finished (or resumable) study: ``inn-cuda demo --ablate
SPEC``. Each variant refits only the intervals of the study's trained point network with one
setting changed and scores the result; the point network, the data and the failure cases are
the study's own (resumed from its ``stages/``).

``SPEC``: ``AXIS=V1,V2,...`` (repeat ``--ablate`` or join with ``;``), axes:

* ``last``: intervals in the last k parametrised layers (``all`` = every layer);
* ``beta``: ``fixed`` (the paper's number for the task, no calibration), ``adaptive``
  (0.1 x the point network's validation MAE, no calibration), ``calibrated`` (adaptive start,
  calibrated to the study's ``inn_target_coverage``);
* ``coverage``: the calibration target (fractions);
* ``dropout``: ``off`` / ``on`` while fitting the offsets.

Per axis: a table in ``ablation.md`` and a figure ``ablation_<axis>.png`` in the report folder:
validation coverage and width as fitted, then on the clean test images (the task's support
when it has one) coverage, width, interval score at ``interval_coverage`` and the Spearman
correlation of width and absolute error, and the pixel AUROC of the width on the adversarial
and (when kept) artifact footprints. Every variant's fit is a resumable stage under
``<out>/stages/ablation/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Dict, List

import torch

from .. import metrics as M
from ..calibration import band_scores
from ..train.checkpoint import load_verified
from .methods import inn_method, predict_all
from .presets import Settings
from .problems import Split, make_problem

AXES = ("last", "beta", "coverage", "dropout")
PAPER_BETA = {"ct": 1e-4, "deconv1d": 0.005}  # the paper's fixed beta per task
ABLATION_FILE = "ablation.md"


def parse_ablate(items) -> Dict[str, List[str]]:
    """``["last=2,4,all", "beta=fixed,adaptive;dropout=off,on"]`` -> ``{axis: [values]}``,
    each value checked."""
    spec: Dict[str, List[str]] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(";"))):
            axis, sep, values = part.partition("=")
            axis = axis.strip()
            if not sep or axis not in AXES:
                raise ValueError(f"--ablate: expected AXIS=V1,V2 with AXIS one of {AXES}, got "
                                 f"{part!r}")
            vals = [v.strip() for v in values.split(",") if v.strip()]
            if not vals:
                raise ValueError(f"--ablate {axis}: expected at least one value")
            for v in vals:
                _override(axis, v, None)  # validates
            spec.setdefault(axis, []).extend(vals)
    return spec


def _override(axis: str, value: str, s: Settings | None) -> dict:
    """The settings a variant changes."""
    if axis == "last":
        if value == "all":
            return {"inn_last": None}
        try:
            k = int(value)
        except ValueError:
            raise ValueError(f"--ablate last: expected an int >= 1 or 'all', got {value!r}") \
                from None
        if k < 1:
            raise ValueError(f"--ablate last: expected an int >= 1 or 'all', got {value!r}")
        return {"inn_last": k}
    if axis == "beta":
        if value not in ("fixed", "adaptive", "calibrated"):
            raise ValueError(f"--ablate beta: expected fixed, adaptive or calibrated, got "
                             f"{value!r}")
        if s is None:
            return {}
        if value == "fixed":
            return {"inn_beta": PAPER_BETA[s.task], "inn_target_coverage": None}
        if value == "adaptive":
            return {"inn_beta": "adaptive", "inn_target_coverage": None}
        return {"inn_beta": "adaptive", "inn_target_coverage": s.inn_target_coverage or 0.9}
    if axis == "coverage":
        try:
            c = float(value)
        except ValueError:
            c = math.nan
        if not 0 < c < 1:
            raise ValueError(f"--ablate coverage: expected a fraction in (0, 1), got {value!r}")
        return {"inn_target_coverage": c}
    if value not in ("off", "on"):
        raise ValueError(f"--ablate dropout: expected off or on, got {value!r}")
    return {"inn_fit_dropout": value == "on"}


def _score(method, test: Split, cases, problem, s: Settings, device) -> Dict[str, float]:
    pred = predict_all(method, test.inputs, s.eval_batch_size, device)
    support_of = getattr(problem, "support", None)
    support = support_of(test.targets) if support_of is not None else None
    scores = band_scores(pred.lo, pred.hi, test.targets, s.interval_coverage, support)
    error = (pred.rec - test.targets).abs()
    row = {"coverage": float(scores.coverage.nanmean()), "width": float(scores.width.nanmean()),
           "interval_score": float(scores.interval_score.nanmean()),
           "spearman": float(M.spearman(error, pred.uncertainty).nanmean())}
    for name in ("adversarial", "artifact"):
        case = cases.get(name)
        if case is None or case.info.get("dropped") or case.mask is None:
            row[f"{name}_auroc"] = math.nan
            continue
        p = predict_all(method, case.inputs, s.eval_batch_size, device)
        mask = case.mask.expand_as(p.uncertainty)
        row[f"{name}_auroc"] = M.pixel_auroc(p.uncertainty, mask) \
            if bool(mask.any()) and not bool(mask.all()) else math.nan
    return row


def run_ablations(settings: Settings, out, spec: Dict[str, List[str]], *,
                  progress: bool = True) -> List[Path]:
    """Run (or resume) the study in ``out``, then every variant of ``spec``; write the tables
    and figures. Returns the files written."""
    from . import study  # the stages and their resumable run directories

    out = Path(out)
    result = study.run_study(settings, out, progress=progress)
    s = settings
    device = torch.device(s.device)
    problem = make_problem(s)
    train, val, test = (Split(**f) for f in load_verified(out / study.STAGES_DIR / study.DATA_FILE))
    journal = study._Journal(out, progress)
    point, _ = study._train_point(problem, train, val, s, out, device, progress, journal)
    cases = study._load_cases(out / study.STAGES_DIR / study.CASES_FILE)
    threads = torch.get_num_threads()
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    tables: Dict[str, List[dict]] = {}
    try:
        for axis, values in spec.items():
            for value in values:
                variant = dataclasses.replace(s, **_override(axis, value, s)).validate()
                root = out / study.STAGES_DIR / "ablation" / f"{axis}-{value}"
                (root / study.STAGES_DIR).mkdir(parents=True, exist_ok=True)
                journal(f"[ablation] {axis}={value}")
                inn, summary = study._fit_inn(problem, point, train, val, variant, root, device,
                                              progress, journal)
                row = {"value": value, "fit_coverage": summary["coverage"],
                       "fit_width": summary["width"], "beta": summary["beta"],
                       **_score(inn_method(inn), test, cases, problem, s, device)}
                tables.setdefault(axis, []).append(row)
    finally:
        torch.set_num_threads(threads)
    files = [_write_table(out, tables, s)]
    files += [_figure(out, axis, rows) for axis, rows in tables.items()]
    (out / "ablation.json").write_text(json.dumps(
        {a: [{k: (v if not (isinstance(v, float) and not math.isfinite(v)) else None)
              for k, v in r.items()} for r in rows] for a, rows in tables.items()},
        indent=2) + "\n")
    return [result.out / "report.md", *files, out / "ablation.json"]


COLUMNS = (("fit_coverage", "val coverage (fit)"), ("fit_width", "val width (fit)"),
           ("beta", "beta"), ("coverage", "test coverage"), ("width", "test width"),
           ("interval_score", "interval score"), ("spearman", "Spearman"),
           ("adversarial_auroc", "adversarial AUROC"), ("artifact_auroc", "artifact AUROC"))


def _fmt(v) -> str:
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "–"
    return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}"


def _write_table(out: Path, tables, s: Settings) -> Path:
    lines = ["# INN ablations", "",
             f"Task {s.task}, preset {s.preset}, seed {s.seed}: the study's point network, "
             f"intervals refitted per variant ({s.inn_epochs} epochs); everything else as in "
             f"the study's settings. Test numbers on the clean test images (the task's support "
             f"where it has one); interval score at coverage {s.interval_coverage:g} (lower is "
             f"better). One seed: differences within a few hundredths are noise.", ""]
    for axis, rows in tables.items():
        lines += [f"## {axis}", "", f"![{axis}](ablation_{axis}.png)", "",
                  "| " + axis + " | " + " | ".join(label for _, label in COLUMNS) + " |",
                  "|" + "---|" * (len(COLUMNS) + 1)]
        lines += ["| " + r["value"] + " | " + " | ".join(_fmt(r[k]) for k, _ in COLUMNS) + " |"
                  for r in rows]
        lines.append("")
    path = out / ABLATION_FILE
    path.write_text("\n".join(lines))
    return path


def _figure(out: Path, axis: str, rows) -> Path:
    from .figures import _pyplot
    plt = _pyplot()
    labels = [r["value"] for r in rows]
    panels = (("width", "test width"), ("interval_score", "interval score"),
              ("coverage", "test coverage"), ("adversarial_auroc", "adversarial AUROC"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 2.6))
    for ax, (key, title) in zip(axes, panels):
        ax.bar(range(len(rows)), [r[key] if math.isfinite(r[key]) else 0.0 for r in rows],
               color="0.5")
        ax.set_xticks(range(len(rows)), labels)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(axis)
    fig.tight_layout()
    path = out / f"ablation_{axis}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
