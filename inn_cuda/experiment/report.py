"""``report.md`` and ``metrics.json`` from the study's metrics dict.

The findings are derived from the numbers alone (:func:`winners`, :func:`findings`): which method
wins which criterion on which failure mode, with the values, ties called ties (within
:data:`TIE`), undefined values left out and chance levels named. Nothing here knows what a run
"should" show.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Optional

REPORT_FILE = "report.md"
METRICS_FILE = "metrics.json"
TIE = 0.01  # two values closer than this count as a tie
MODES = ("clean", "noise", "adversarial", "artifact")
MODE_TITLES = {"clean": "clean data", "noise": "measurement noise",
               "adversarial": "adversarial inputs", "artifact": "atypical artifacts"}


# ------------------------------------------------------------------------------- the numbers

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def cases_of(metrics: dict, kind: str) -> List[str]:
    """Case names of ``kind``, in the study's order."""
    return [name for name, case in metrics["cases"].items() if case["kind"] == kind]


def _value(metrics: dict, method: str, case: str, metric: str) -> Optional[float]:
    value = metrics["results"].get(method, {}).get(case, {}).get(metric)
    return float(value) if _is_number(value) else None


def _mean_over(metrics: dict, method: str, cases: Iterable[str], metric: str):
    values = [_value(metrics, method, c, metric) for c in cases]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# (failure mode, criterion label, metric, cases ("noise" = every noise case, averaged),
#  higher is better, chance level or None)
CRITERIA = (
    ("clean", "ranking the error (Spearman of the absolute error and uncertainty)", "spearman", "clean",
     True, 0.0),
    ("clean", "sparsification (AUSE, lower is better)", "ause", "clean", False, None),
    ("noise", "telling noisy from clean images (image AUROC, mean over levels)", "image_auroc",
     "noise", True, 0.5),
    ("noise", "ranking the error under the strongest noise (Spearman)", "spearman",
     "noise:last", True, 0.0),
    ("adversarial", "localising the changed region (pixel AUROC)", "pixel_auroc",
     "adversarial", True, 0.5),
    ("adversarial", "flagging attacked images (image AUROC)", "image_auroc", "adversarial",
     True, 0.5),
    ("artifact", "localising the artifact (pixel AUROC)", "pixel_auroc", "artifact", True,
     0.5),
    ("artifact", "flagging images with an artifact (image AUROC)", "image_auroc", "artifact",
     True, 0.5),
)


def winners(metrics: dict) -> List[dict]:
    """Per criterion of :data:`CRITERIA`: every method's value, the best method(s) (all within
    :data:`TIE` of the best value) and the margin to the best of the rest. Criteria no method has
    a value for are left out."""
    methods = list(metrics["results"])
    noise = cases_of(metrics, "noise")
    rows = []
    for mode, label, metric, where, higher, chance in CRITERIA:
        if where == "noise":
            values = {m: _mean_over(metrics, m, noise, metric) for m in methods}
            case = "noise"
        elif where == "noise:last":
            if not noise:
                continue
            case = noise[-1]
            values = {m: _value(metrics, m, case, metric) for m in methods}
        else:
            case = where
            values = {m: _value(metrics, m, case, metric) for m in methods}
        defined = {m: v for m, v in values.items() if v is not None}
        if not defined:
            continue
        sign = 1.0 if higher else -1.0
        top = max(sign * v for v in defined.values())
        best = [m for m, v in defined.items() if top - sign * v <= TIE]
        rest = [sign * v for m, v in defined.items() if m not in best]
        rows.append({"mode": mode, "criterion": label, "metric": metric, "case": case,
                     "higher_is_better": higher, "chance": chance, "values": values,
                     "best": best, "margin": (top - max(rest)) if rest else None})
    return rows


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not _is_number(value):
        return "–"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 10 ** -digits):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def _pct(value) -> str:
    return f"{100 * value:.0f}%" if _is_number(value) else "–"


def _join(names: List[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _others(row: dict) -> str:
    rest = [f"{m} {_fmt(v)}" for m, v in row["values"].items() if m not in row["best"]]
    return f" ({'; '.join(rest)})" if rest else ""


def _win_sentence(row: dict) -> str:
    best = row["best"]
    value = row["values"][best[0]]
    verb = "tie" if len(best) > 1 else "is best"
    text = f"{_join(best)} {verb} at {row['criterion']}: {_fmt(value)}{_others(row)}"
    chance = row["chance"]
    if chance is not None:
        at_chance = [m for m, v in row["values"].items() if v is not None and
                     (v - chance if row["higher_is_better"] else chance - v) <= TIE]
        if at_chance:
            text += f"; {_join(at_chance)} {'is' if len(at_chance) == 1 else 'are'} at or " \
                    f"below chance ({_fmt(chance, 1)})"
    return text + "."


def _growth(metrics: dict, method: str, metric: str):
    """(ratio highest-noise / clean, monotone?) of a metric along the noise levels."""
    noise = cases_of(metrics, "noise")
    series = [_value(metrics, method, c, metric) for c in ["clean", *noise]]
    if not noise or any(v is None for v in series) or series[0] <= 0:
        return None, None
    monotone = all(b >= a for a, b in zip(series, series[1:]))
    return series[-1] / series[0], monotone


def findings(metrics: dict) -> List[str]:
    """Sentences stating what the numbers show, per failure mode and overall."""
    methods = list(metrics["results"])
    rows = winners(metrics)
    out = []
    for mode in MODES:
        parts = [_win_sentence(r) for r in rows if r["mode"] == mode]
        if mode == "noise":
            parts += _noise_sentences(metrics, methods)
        if mode == "adversarial" and "adversarial" in metrics["cases"]:
            parts.insert(0, _adversarial_sentence(metrics["cases"]["adversarial"]))
        if parts:
            out.append(f"**{MODE_TITLES[mode].capitalize()}.** " + " ".join(p for p in parts if p))
    out += _inn_sentences(metrics)
    speed = _speed_sentence(metrics)
    if speed:
        out.append(speed)
    tally: Dict[str, int] = {m: 0 for m in methods}
    for row in rows:
        if len(row["best"]) == 1:
            tally[row["best"][0]] += 1
    if rows:
        ranked = sorted(tally.items(), key=lambda kv: -kv[1])
        summary = ", ".join(f"{m} {n}" for m, n in ranked)
        ties = sum(1 for r in rows if len(r["best"]) > 1)
        noun = "criterion" if len(rows) == 1 else "criteria"
        out.append(f"**Overall.** Outright wins over the {len(rows)} {noun} above: {summary}"
                   + (f" ({ties} tied)" if ties else "") + ".")
    return out


def _noise_sentences(metrics: dict, methods: List[str]) -> List[str]:
    noise = cases_of(metrics, "noise")
    if not noise:
        return []
    last = metrics["cases"][noise[-1]].get("level")
    growth = []
    for m in methods:
        ratio, monotone = _growth(metrics, m, "mean_uncertainty")
        if ratio is not None:
            growth.append(f"{m} x{ratio:.2f}" + ("" if monotone else " (not monotone)"))
    error = [f"{m} x{r:.2f}" for m in methods
             for r, _ in [_growth(metrics, m, "rmse")] if r is not None]
    if not growth:
        return []
    level = f" {last:g}" if _is_number(last) else ""
    text = (f"From clean inputs to the strongest noise{level}, the mean uncertainty grows "
            f"{', '.join(growth)}")
    if error:
        text += f", while the reconstruction error (RMSE) grows {', '.join(error)}"
    return [text + "."]


def _adversarial_sentence(case: dict) -> str:
    if not _is_number(case.get("objective_reduction")):
        return ""
    return (f"The adversarial search brought its objective to "
            f"{_pct(case['objective_reduction'])} of the start with a perturbation of "
            f"{_pct(case.get('relative_perturbation'))} of the input norm, changing "
            f"{_pct(case.get('changed_fraction'))} of the pixels.")


def _inn_sentences(metrics: dict) -> List[str]:
    if "INN" not in metrics["results"]:
        return []
    out = []
    clean = metrics["results"]["INN"].get("clean", {})
    target = metrics.get("training", {}).get("intervals", {}).get("target_coverage")
    if _is_number(clean.get("coverage")):
        text = (f"**INN intervals.** They contain the clean test target at "
                f"{_pct(clean['coverage'])} of the pixels (mean width {_fmt(clean.get('mean_width'))})")
        text += f", calibrated to {_pct(target)} on validation data." if _is_number(target) \
            else "."
        out.append(text)
    parts = []
    for case in ("clean", "adversarial", "artifact"):
        result = metrics["results"]["INN"].get(case, {})
        accuracy = result.get("direction_accuracy", {}).get("2")
        share = result.get("direction_fraction", {}).get("2")
        if not _is_number(accuracy):
            continue
        verdict = "above" if accuracy > 0.5 + TIE else "below" if accuracy < 0.5 - TIE \
            else "at"
        parts.append(f"{case} {_pct(accuracy)} ({verdict} chance; {_pct(share)} of pixels "
                     f"have a ratio >= 2)")
    if parts:
        out.append("**Direction.** Where the INN interval is at least twice as long on one side "
                   "of the reconstruction, the longer side points toward the target for: "
                   + "; ".join(parts) + ". Chance is 50%, all a symmetric method (MCDROP, "
                   "PROBOUT) can reach.")
    return out


def _speed_sentence(metrics: dict) -> str:
    timing = metrics.get("inference_time", {})
    per_image = {m: t["per_image_s"] for m, t in timing.items()
                 if _is_number(t.get("per_image_s"))}
    if not per_image:
        return ""
    listed = ", ".join(f"{m} {1e3 * v:.3g} ms" for m, v in per_image.items())
    methods = [m for m in metrics["results"] if m in per_image]
    fastest = min(methods, key=per_image.get) if methods else None
    tail = f"; the fastest uncertainty method is {fastest}." if fastest else "."
    return f"**Inference time per image.** {listed}{tail}"


# ------------------------------------------------------------------------------------ tables

def _table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


MAIN_COLUMNS = (("rmse", "RMSE"), ("mean_uncertainty", "mean unc."), ("spearman", "Spearman"),
                ("pearson", "Pearson"), ("cosine", "cosine"), ("ause", "AUSE"),
                ("pixel_auroc", "pixel AUROC"), ("pixel_aupr", "pixel AUPR"),
                ("image_auroc", "image AUROC"))


def main_table(metrics: dict) -> str:
    """Every scalar metric per (failure case, method)."""
    rows = []
    for case in metrics["cases"]:
        for method, results in metrics["results"].items():
            r = results.get(case, {})
            rows.append([case, method] + [_fmt(r.get(k)) for k, _ in MAIN_COLUMNS])
    return _table(["case", "method"] + [label for _, label in MAIN_COLUMNS], rows)


def interval_table(metrics: dict) -> str:
    """Coverage, width and direction accuracy (with the share of qualifying pixels)."""
    thresholds = None
    rows = []
    for case in metrics["cases"]:
        for method, results in metrics["results"].items():
            r = results.get(case, {})
            acc, share = r.get("direction_accuracy", {}), r.get("direction_fraction", {})
            thresholds = thresholds or list(acc)
            cells = [f"{_fmt(acc.get(t))} ({_pct(share.get(t))})" if _is_number(acc.get(t))
                     else "–" for t in thresholds]
            rows.append([case, method, _fmt(r.get("coverage")), _fmt(r.get("mean_width"))]
                        + cells)
    header = ["case", "method", "coverage", "mean width"] + \
        [f"dir. acc. t={t}" for t in (thresholds or [])]
    return _table(header, rows)


def _details_table(data: Dict[str, dict], first: str, second: str) -> str:
    """One row per entry: its defined values as ``name value`` pairs."""
    rows = [[name, ", ".join(f"{k} {v if isinstance(v, str) else _fmt(v)}"
                             for k, v in entry.items() if isinstance(v, str) or _is_number(v))]
            for name, entry in data.items()]
    return _table([first, second], rows)


def winners_table(rows: List[dict]) -> str:
    methods = list(rows[0]["values"]) if rows else []
    body = [[MODE_TITLES[r["mode"]], r["criterion"], _join(r["best"])] +
            [_fmt(r["values"][m]) for m in methods] for r in rows]
    return _table(["failure mode", "criterion", "best"] + methods, body)


def render(metrics: dict, figure_files: List[str], *, noise_label: str = "noise") -> str:
    s = metrics["settings"]
    env = metrics.get("environment", {})
    timings = metrics.get("timings_s", {})
    total = timings.get("total")
    rows = winners(metrics)
    parts = [
        f"# INN failure-mode study: {s['task']} (preset `{s['preset']}`)",
        "",
        f"Interval neural network (INN) uncertainty versus MC dropout (MCDROP) and a "
        f"probabilistic output (PROBOUT) on {metrics['cases']['clean']['images']} test "
        f"{'images' if s['task'] == 'ct' else 'signals'}, under clean inputs, "
        f"{noise_label} ({', '.join(f'{v:g}' for v in s['noise_levels'])}), adversarial "
        f"inputs and atypical artifacts. Wall time {_fmt(total, 1)} s on {env.get('device')} "
        f"({env.get('cpu_count')} CPUs, load average "
        f"{env.get('load_average_start')} at the start). All numbers below are measured in "
        f"this run; the findings are generated from them.",
        "",
        "## Findings",
        "",
        *[f"- {line}" for line in findings(metrics)],
        "",
        winners_table(rows) if rows else "",
        "",
        "## Figures",
        "",
        *[f"![{name}]({name})\n" for name in figure_files],
        "## All metrics per failure case and method",
        "",
        "Uncertainty maps against the absolute error of each method's reconstruction "
        "(INN and MCDROP: the point network's; PROBOUT: its own mean). Spearman/Pearson/cosine: "
        "per image, averaged; AUSE: normalised sparsification error (lower is better); pixel "
        "AUROC/AUPR: detecting the changed region (adversarial) or the artifact footprint "
        "(artifact) by thresholding the uncertainty; image AUROC: telling the case's images "
        "from the clean ones by their mean uncertainty (0.5 = chance).",
        "",
        main_table(metrics),
        "",
        "## Intervals and direction",
        "",
        "Coverage: share of target pixels inside [lo, hi] (INN only). Direction accuracy at "
        "threshold t: among pixels whose interval is at least t times longer on one side of "
        "the reconstruction (their share in brackets), how often the longer side points at the "
        "target; symmetric methods qualify only at t=1 and score 0.5.",
        "",
        interval_table(metrics),
        "",
        "## Failure cases",
        "",
        _details_table(metrics["cases"], "case", "details"),
        "",
        "## Training",
        "",
        _details_table(metrics.get("training", {}), "stage", "final values"),
        "",
        "## Inference time",
        "",
        _details_table(metrics.get("inference_time", {}), "method", "timing"),
        "",
        "## Stage timings (s)",
        "",
        _table(["stage", "seconds", "resumed"],
               [[k, _fmt(v, 1), "yes" if metrics.get("resumed", {}).get(k) else ""]
                for k, v in timings.items()]),
        "",
        f"Environment: inn_cuda {env.get('inn_cuda')}, torch {env.get('torch')}, "
        f"torch threads: {env.get('torch_threads')}, load average {env.get('load_average_start')} "
        f"(start) / {env.get('load_average_end')} (end); ops served by compiled kernels: "
        f"{', '.join(env.get('compiled_ops', [])) or 'none'}; by the pure-PyTorch reference: "
        f"{', '.join(env.get('reference_ops', [])) or 'none'}.",
        "",
        "## Settings",
        "",
        _table(["setting", "value"], [[k, f"`{v}`"] for k, v in s.items()]),
        "",
    ]
    return "\n".join(parts)


def _jsonable(value):
    """NaN/inf become null (strict JSON), tuples lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(out, metrics: dict, figure_files: List[str], *,
                 noise_label: str = "noise") -> List[Path]:
    """Write ``report.md`` and ``metrics.json`` (with the findings) into ``out``."""
    out = Path(out)
    metrics["winners"] = winners(metrics)
    metrics["findings"] = findings(metrics)
    metrics_path = out / METRICS_FILE
    metrics_path.write_text(json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n")
    report_path = out / REPORT_FILE
    report_path.write_text(render(metrics, figure_files, noise_label=noise_label))
    return [report_path, metrics_path]
