"""The study over several seeds: ``inn-cuda demo --seeds N``.

Seed ``s`` (from ``--seed``, default 0, to ``s + N - 1``) runs the whole pipeline (data, point
network, INN, baselines, failure cases, evaluation) in ``<out>/seed-<s>/``, a complete study
folder of its own that a rerun resumes stage by stage. The top folder then gets a
``report.md`` and ``metrics.json`` across the seeds: per criterion and method the mean +- sd of
the per-seed means, next to each seed's mean with its bootstrap interval over images and each
seed's verdict. Seeds are not pooled into one test: the images of one seed share a network, so
the seed-to-seed spread is the variation a reader should expect from retraining.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Dict, List

from .presets import Settings
from .report import (METRICS_FILE, MODE_TITLES, REPORT_FILE, _fmt, _table, dumps,
                     mc_dropout_sentence, verdict_of)
from .study import StudyResult, run_study


def seed_folder(out: Path, seed: int) -> Path:
    return Path(out) / f"seed-{seed}"


def run_seeds(settings: Settings, out, seeds: int, *, progress: bool = True,
              overwrite: bool = False) -> StudyResult:
    """Run the study for ``seeds`` consecutive seeds from ``settings.seed`` and write the
    across-seed report into ``out``."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds: expected an int >= 1, got {seeds!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    runs = [run_study(dataclasses.replace(settings, seed=settings.seed + k),
                      seed_folder(out, settings.seed + k), progress=progress,
                      overwrite=overwrite) for k in range(seeds)]
    summary = aggregate([r.metrics for r in runs])
    summary["wall_time_s"] = time.perf_counter() - began
    metrics_path = out / METRICS_FILE
    metrics_path.write_text(dumps(summary))
    report_path = out / REPORT_FILE
    report_path.write_text(render(summary))
    return StudyResult(out, summary, [report_path, metrics_path])


def aggregate(per_seed: List[dict]) -> Dict[str, object]:
    """Across-seed summary of the per-seed ``analysis`` rows (one list per seed, as
    :func:`~.report.write_report` stores them)."""
    seeds = [m["settings"]["seed"] for m in per_seed]
    rows: Dict[str, dict] = {}
    for seed, metrics in zip(seeds, per_seed):
        for row in metrics["analysis"]:
            entry = rows.setdefault(row["criterion"], {
                "mode": row["mode"], "criterion": row["criterion"], "chance": row["chance"],
                "names": [], "per_seed": {}, "verdicts": {}})
            for name in row["methods"] + row["controls"]:
                if name not in entry["names"]:
                    entry["names"].append(name)
                entry["per_seed"].setdefault(name, {})[seed] = row["entries"][name]
            entry["verdicts"][seed] = verdict_of(row)
    for entry in rows.values():
        entry["across_seeds"] = {}
        for name, by_seed in entry["per_seed"].items():
            means = [e["mean"] for e in by_seed.values() if e["mean"] is not None]
            entry["across_seeds"][name] = {
                "mean": statistics.fmean(means) if means else None,
                "sd": statistics.stdev(means) if len(means) > 1 else None, "seeds": len(means)}
    first = per_seed[0]
    return {"settings": {**first["settings"], "seed": seeds}, "seeds": seeds,
            "criteria": list(rows.values()),
            "timings_s": {seed: m.get("timings_s", {}).get("total")
                          for seed, m in zip(seeds, per_seed)}}


def _ci(entry: dict) -> str:
    low, high = entry["ci"]
    return _fmt(entry["mean"]) if low is None else \
        f"{_fmt(entry['mean'])} [{_fmt(low)}, {_fmt(high)}]"


def render(summary: dict) -> str:
    s = summary["settings"]
    seeds = summary["seeds"]
    body = []
    for entry in summary["criteria"]:
        for name in entry["names"]:
            across = entry["across_seeds"][name]
            spread = f"{_fmt(across['mean'])} ± {_fmt(across['sd'])}" if across["sd"] is not None \
                else _fmt(across["mean"])
            body.append([MODE_TITLES[entry["mode"]], entry["criterion"], name, spread] +
                        [_ci(entry["per_seed"][name][seed]) if seed in entry["per_seed"][name]
                         else "–" for seed in seeds])
    verdicts = [[MODE_TITLES[e["mode"]], e["criterion"]] +
                [e["verdicts"].get(seed, "–") for seed in seeds] for e in summary["criteria"]]
    totals = ", ".join(f"seed {k}: {_fmt(v, 1)} s" for k, v in summary["timings_s"].items())
    return "\n".join([
        f"# INN failure-mode study: {s['task']} (preset `{s['preset']}`, {len(seeds)} seeds)",
        "",
        f"Seeds {', '.join(str(k) for k in seeds)}: each repeats the whole pipeline (data, "
        f"networks, baselines, failure cases) in its own folder (`seed-<k>/report.md`, with "
        f"every per-image value in its `metrics.json`). Wall time {_fmt(summary['wall_time_s'], 1)}"
        f" s in all ({totals}).",
        "",
        "Reports per seed: " + ", ".join(f"[seed {k}](seed-{k}/report.md)" for k in seeds) + ".",
        "",
        *([mc_dropout_sentence(s), ""] if mc_dropout_sentence(s) else []),
        "## Across seeds",
        "",
        "Mean ± sd over seeds of each seed's mean over images; beside it each seed's mean with "
        "its bootstrap 95 % interval over images.",
        "",
        _table(["failure mode", "criterion", "map", "mean ± sd over seeds"] +
               [f"seed {k}" for k in seeds], body),
        "",
        "## Verdict per seed",
        "",
        "Each seed's verdict under the rule of its own report: a method is best only when its "
        "paired difference to each other method is significant after Holm's correction.",
        "",
        _table(["failure mode", "criterion"] + [f"seed {k}" for k in seeds], verdicts),
        "",
    ])
