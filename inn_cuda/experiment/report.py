"""``report.md`` and ``metrics.json`` from the study's metrics dict.

The findings are derived from the numbers alone, through the verdict rule of :mod:`.verdict`:
per criterion every method's mean with its bootstrap 95 % interval, "best" only where the paired
differences to every other method survive Holm's correction, "no significant difference"
otherwise, and a plain statement wherever every method is at chance or a method does not beat
its controls. Nothing here knows what a run "should" show.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Dict, List, Optional

from ..baselines import PAPER_PASSES
from ..tasks.models import PAPER_CONV1D_DROPOUT
from . import statistics as S
from .presets import CT_DEFAULT_DROPOUT_NOTE, PAPER_DROPOUT
from .verdict import analyse, cases_of, controls_of, methods_of

REPORT_FILE = "report.md"
METRICS_FILE = "metrics.json"
MODES = ("clean", "noise", "adversarial", "artifact")
MODE_TITLES = {"clean": "clean data", "noise": "measurement noise",
               "adversarial": "adversarial inputs", "artifact": "atypical artifacts"}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _value(metrics: dict, method: str, case: str, metric: str) -> Optional[float]:
    value = metrics["results"].get(method, {}).get(case, {}).get(metric)
    return float(value) if _is_number(value) else None


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


def _growth(metrics: dict, method: str, metric: str):
    """(ratio highest-noise / clean, monotone?) of a metric along the noise levels."""
    noise = cases_of(metrics, "noise")
    series = [_value(metrics, method, c, metric) for c in ["clean", *noise]]
    if not noise or any(v is None for v in series) or series[0] <= 0:
        return None, None
    monotone = all(b >= a for a, b in zip(series, series[1:]))
    return series[-1] / series[0], monotone


def _ci(entry: dict) -> str:
    """``mean [low, high]`` of an analysed entry."""
    low, high = entry["ci"]
    if low is None:
        return _fmt(entry["mean"])
    return f"{_fmt(entry['mean'])} [{_fmt(low)}, {_fmt(high)}]"


def _p(value) -> str:
    if not _is_number(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def row_sentence(row: dict) -> str:
    """What one criterion shows, under the verdict rule."""
    entries = row["entries"]
    values = "; ".join(f"{m} {_ci(entries[m])}" for m in row["methods"])
    text = f"{row['criterion'][0].upper()}{row['criterion'][1:]}: {values}"
    if row["controls"]:
        text += " (controls: " + "; ".join(f"{c} {_ci(entries[c])}" for c in row["controls"]) + ")"
    text += ". "
    if len(row["methods"]) < 2:
        pass
    elif row["best"]:
        text += (f"{row['best']} is best (its paired difference to each other method is "
                 f"significant, Holm-adjusted Wilcoxon p < {S.ALPHA:g}). ")
    else:
        text += (f"No significant difference between {_join(row['tied'])} (Holm-adjusted "
                 f"Wilcoxon p >= {S.ALPHA:g}): no method is best. ")
    chance = row["chance"]
    if chance is not None:
        at = row["at_chance"]
        if at and len(at) == len(row["methods"]):
            text += (f"Every method is at or below chance ({_fmt(chance, 1)} lies in or beyond "
                     f"each interval). ")
        elif at:
            text += (f"{_join(at)} {'is' if len(at) == 1 else 'are'} at or below chance "
                     f"({_fmt(chance, 1)}). ")
    below = row.get("below_controls", {})
    for m, names in below.items():
        text += f"{m} is not above {_join(names)}. "
    beaten = [m for m, ok in row.get("beats_controls", {}).items()
              if ok and m not in row["at_chance"]]
    missed = [m for m, ok in row.get("beats_controls", {}).items()
              if not ok and m not in below]
    if missed:
        text += (f"{_join(missed)} {'does' if len(missed) == 1 else 'do'} not significantly "
                 f"beat every control. ")
    if beaten:
        text += f"{_join(beaten)} significantly {'beats' if len(beaten) == 1 else 'beat'} every control. "
    return text.strip()


def findings(metrics: dict, rows: Optional[List[dict]] = None) -> List[str]:
    """Sentences stating what the numbers show, per failure mode and overall."""
    rows = analyse(metrics) if rows is None else rows
    methods = methods_of(metrics)
    out = []
    for mode in MODES:
        parts = [row_sentence(r) for r in rows if r["mode"] == mode]
        if mode == "noise":
            parts += _noise_sentences(metrics, methods)
        if mode == "adversarial" and "adversarial" in metrics["cases"]:
            parts.insert(0, _adversarial_sentence(metrics["cases"]["adversarial"]))
        if parts:
            out.append(f"**{MODE_TITLES[mode].capitalize()}.** " + " ".join(p for p in parts if p))
    out += _inn_sentences(metrics)
    detected = [f"{m} on {r['criterion'].split(' (')[0]}" for r in rows
                for m, ok in r.get("beats_controls", {}).items()
                if ok and m not in r["at_chance"]]
    if any(r.get("beats_controls") for r in rows):
        out.append("**Beyond the controls.** " + (
            "Above chance and significantly better than every control (both uncertainty-free "
            "maps, and its own map on the clean image where the criterion has one) only: "
            + "; ".join(detected) + "." if detected else
            "No method is above chance and significantly better than every control (both "
            "uncertainty-free maps, and its own map on the clean image where the criterion has "
            "one) on any criterion."))
    speed = _speed_sentence(metrics)
    if speed:
        out.append(speed)
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
        everywhere = clean.get("all_pixels", {}).get("coverage")
        text = (f"**INN intervals.** They contain the clean test target at "
                f"{_pct(clean['coverage'])} of the object's pixels (mean width "
                f"{_fmt(clean.get('mean_width'))}; over all pixels {_pct(everywhere)})")
        text += f", calibrated to {_pct(target)} on the validation objects." \
            if _is_number(target) else "."
        out.append(text)
    parts = []
    for method in methods_of(metrics):
        r = metrics["results"][method].get("clean", {})
        if not _is_number(r.get("direction_accuracy")):
            continue
        parts.append(f"{method} accuracy {_pct(r['direction_accuracy'])} against a majority "
                     f"base rate of {_pct(r.get('direction_base_rate'))}, balanced accuracy "
                     f"{_fmt(r.get('direction_balanced_accuracy'))}")
    if parts:
        out.append("**Direction (clean, object pixels with target != reconstruction, clamped "
                   "pixels left out).** " + "; ".join(parts) + ". An accuracy is informative "
                   "only above its base rate; the balanced accuracy and the AUROC above have "
                   "chance 0.5 whatever the base rate.")
    return out


def mc_dropout_sentence(s: dict) -> str:
    """What MC dropout ran with (rate, where the dropout sits, T) next to the paper's, and
    plainly where the rate deviates from it; "" when the settings do not say."""
    task, rate, passes = s.get("task"), s.get("dropout"), s.get("mc_passes")
    if task not in PAPER_DROPOUT or not _is_number(rate) or not _is_number(passes):
        return ""
    paper_rate, paper_passes = PAPER_DROPOUT[task], PAPER_PASSES[task]
    if task == "ct":
        layout = s.get("upsampling", "transpose")
        where = ("on the decoder's concatenations (the paper's layout)" if layout == "paper"
                 else "after every down- and upsampling of the U-Net")
        ran = f"rate p = {rate:g} {where}"
        paper = (f"The paper (CT): p = {paper_rate:g} on the decoder's concatenations, "
                 f"T = {paper_passes}.")
    else:
        layers = ", ".join(str(k) for k in PAPER_CONV1D_DROPOUT)
        ran = (f"rates {', '.join(f'{rate * r:g}' for r in PAPER_CONV1D_DROPOUT.values())} "
               f"after hidden layers {layers} (the paper's rates x {rate:g})")
        paper = (f"The paper (1D): rates "
                 f"{', '.join(f'{r:g}' for r in PAPER_CONV1D_DROPOUT.values())}, "
                 f"T = {paper_passes}.")
    text = (f"**MC dropout as run.** MCDROP: T = {passes} stochastic passes of the point "
            f"network with its training dropout, {ran}. {paper}")
    if rate != paper_rate:
        named = f"rate is not the paper's {paper_rate:g}" if task == "ct" else \
            "rates are not the paper's"
        text += f" This run's {named}" + (
            f": {CT_DEFAULT_DROPOUT_NOTE}." if task == "ct" and s.get("preset") == "default"
            and rate == 0.2 else f" (`--set dropout={paper_rate:g}`).")
    elif task == "ct" and s.get("upsampling") != "paper":
        text += (" The rate is the paper's; the placement is not (`--set upsampling=paper`).")
    if passes != paper_passes:
        text += f" T differs from the paper's {paper_passes}."
    return text


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
    def cells(row):  # a "|" in a cell (|error|) would end it
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
    lines = [cells(header), "|" + "|".join("---" for _ in header) + "|"]
    lines += [cells(r) for r in rows]
    return "\n".join(lines)


MAIN_COLUMNS = (("rmse", "RMSE"), ("mean_uncertainty", "mean unc."), ("spearman", "Spearman"),
                ("pearson", "Pearson"), ("cosine", "cosine"), ("ause", "AUSE"),
                ("pixel_auroc", "pixel AUROC"), ("image_auroc", "image AUROC"))
ALL_PIXEL_COLUMNS = (("spearman", "Spearman, all px"), ("pixel_auroc", "pixel AUROC, all px"))


def main_table(metrics: dict) -> str:
    """Every scalar metric per (failure case, method) on the object support; the last columns
    are all-pixel values, for comparison only."""
    rows = []
    for case in metrics["cases"]:
        for method, results in metrics["results"].items():
            r = results.get(case, {})
            everywhere = r.get("all_pixels", {})
            rows.append([case, method] + [_fmt(r.get(k)) for k, _ in MAIN_COLUMNS] +
                        [_fmt(everywhere.get(k)) for k, _ in ALL_PIXEL_COLUMNS])
    return _table(["case", "method"] + [label for _, label in MAIN_COLUMNS] +
                  [f"({label})" for _, label in ALL_PIXEL_COLUMNS], rows)


def _entry(metrics: dict, method: str, case: str, key: str) -> str:
    values = metrics["results"].get(method, {}).get(case, {}).get("per_image", {}).get(key)
    if values is None:
        return "–"
    low, high = S.bootstrap_ci(values)
    mean = S.mean(values)
    return _fmt(mean) if low is None else f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"


def interval_table(metrics: dict) -> str:
    """Coverage and width of the trained intervals, on the support (all pixels beside)."""
    rows = []
    for case in metrics["cases"]:
        for method, results in metrics["results"].items():
            r = results.get(case, {})
            if not _is_number(r.get("coverage")):
                continue
            rows.append([case, method, _entry(metrics, method, case, "coverage"),
                         _entry(metrics, method, case, "mean_width"),
                         _fmt(r.get("all_pixels", {}).get("coverage"))])
    return _table(["case", "method", "coverage", "mean width", "(coverage, all px)"], rows)


def direction_table(metrics: dict) -> str:
    """Direction per case and method: accuracy next to its majority base rate, balanced
    accuracy and the AUROC of the signed asymmetry."""
    rows = []
    for case in metrics["cases"]:
        for method in methods_of(metrics):
            r = metrics["results"][method].get(case, {})
            rows.append([case, method, _fmt(r.get("direction_accuracy")),
                         _fmt(r.get("direction_base_rate")),
                         _entry(metrics, method, case, "direction_balanced_accuracy"),
                         _entry(metrics, method, case, "direction_auroc")])
    return _table(["case", "method", "accuracy", "base rate", "balanced accuracy",
                   "asymmetry AUROC"], rows)


def verdict_of(row: dict) -> str:
    """The verdict cell of a criterion: the best method, or which ones do not differ."""
    if row["best"]:
        text = f"{row['best']} best"
    elif row["tied"]:
        text = f"no significant difference ({', '.join(row['tied'])})"
    else:
        text = "–"
    if row["chance"] is not None and len(row["at_chance"]) == len(row["methods"]):
        text += "; all at chance"
    return text


def summary_table(rows: List[dict]) -> str:
    """Per criterion: every method's and control's mean [95 % CI] and the verdict."""
    names = []
    for r in rows:
        names += [n for n in r["methods"] + r["controls"] if n not in names]
    body = []
    for r in rows:
        verdict = verdict_of(r)
        body.append([MODE_TITLES[r["mode"]], r["criterion"]] +
                     [_ci(r["entries"][n]) if n in r["entries"] else "–" for n in names] +
                     [verdict])
    return _table(["failure mode", "criterion"] + names + ["verdict"], body)


def comparison_table(rows: List[dict]) -> str:
    """Every paired comparison of the summary: images, mean difference, wins, both p-values
    and the Holm-adjusted Wilcoxon p over the whole table."""
    body = []
    for r in rows:
        for c in r["comparisons"]:
            t = c["test"]
            body.append([r["criterion"].split(" (")[0], f"{c['a']} vs {c['b']}", str(t["n"]),
                         _fmt(t["mean_difference"]), f"{t['greater']} / {t['less']}",
                         _p(t["wilcoxon_p"]), _p(t["sign_p"]), _p(c.get("p_adjusted"))])
    return _table(["criterion", "pair", "images", "mean diff.", "a > b / a < b", "Wilcoxon p",
                   "sign test p", "Holm p"], body)


def detection_table(metrics: dict) -> str:
    """Pixel AUROC of each method next to its two own controls, per masked case."""
    rows = []
    for case in [c for c in metrics["cases"] if c in ("adversarial", "artifact") or
                 metrics["cases"][c]["kind"] in ("adversarial", "artifact")]:
        for method in methods_of(metrics) + controls_of(metrics):
            rows.append([case, method, _entry(metrics, method, case, "pixel_auroc"),
                         _entry(metrics, method, case, "pixel_auroc_clean_control"),
                         _entry(metrics, method, case, "pixel_auroc_change")])
    return _table(["case", "map", "pixel AUROC", "same map, clean image",
                   "change u(x') - u(x)"], rows)


def image_table(metrics: dict) -> str:
    """Image-level detection per case, method and score: unpaired AUROC with its interval and
    the paired view (share of images whose score rose over their clean score, sign test and
    Wilcoxon p, Holm-adjusted over this table)."""
    body, family = [], []
    for case in metrics["cases"]:
        if metrics["cases"][case]["kind"] == "clean":
            continue
        for method in methods_of(metrics) + controls_of(metrics):
            r = metrics["results"][method].get(case, {})
            clean = metrics["results"][method].get("clean", {})
            for statistic in r.get("image_detection", {}):
                key = f"score_{statistic}"
                test = S.paired_test(r["per_image"][key], clean["per_image"][key])
                rise = r["image_detection"][statistic]["rise_share"]
                body.append([case, method, statistic,
                             _entry(metrics, method, case, f"placement_{statistic}"),
                             f"{_pct(rise)} ({test['greater']}/{test['n']})",
                             _p(test["sign_p"]), _p(test["wilcoxon_p"])])
                family.append(test["wilcoxon_p"])
    for line, p in zip(body, S.holm(family)):
        line.append(_p(p))
    return _table(["case", "map", "score", "AUROC vs clean", "rises (paired)", "sign test p",
                   "Wilcoxon p", "Holm p"], body)


def _details_table(data: Dict[str, dict], first: str, second: str) -> str:
    """One row per entry: its defined values as ``name value`` pairs."""
    rows = [[name, ", ".join(f"{k} {v if isinstance(v, str) else _fmt(v)}"
                             for k, v in entry.items() if isinstance(v, str) or _is_number(v))]
            for name, entry in data.items()]
    return _table([first, second], rows)


def render(metrics: dict, figure_files: List[str], *, noise_label: str = "noise",
           rows: Optional[List[dict]] = None) -> str:
    s = metrics["settings"]
    env = metrics.get("environment", {})
    timings = metrics.get("timings_s", {})
    total = timings.get("total")
    rows = analyse(metrics) if rows is None else rows
    parts = [
        f"# INN failure-mode study: {s['task']} (preset `{s['preset']}`, seed {s['seed']})",
        "",
        f"Interval neural network (INN) uncertainty versus MC dropout (MCDROP) and a "
        f"probabilistic output (PROBOUT) on {metrics['cases']['clean']['images']} test "
        f"{'images' if s['task'] == 'ct' else 'signals'}, under clean inputs, "
        f"{noise_label} ({', '.join(f'{v:g}' for v in s['noise_levels'])}), adversarial "
        f"inputs and atypical artifacts, with two uncertainty-free control maps evaluated "
        f"exactly like the methods (EDGE: Sobel edge magnitude of the reconstruction; "
        f"INTENSITY: the reconstruction itself). Wall time {_fmt(total, 1)} s on "
        f"{env.get('device')} ({env.get('cpu_count')} CPUs, load average "
        f"{env.get('load_average_start')} at the start). All numbers below are measured in "
        f"this run; the findings are generated from them by the verdict rule.",
        "",
        *([mc_dropout_sentence(s), ""] if mc_dropout_sentence(s) else []),
        "Pixel-level numbers are computed on the object support "
        f"({'the body: target > 0.01, dilated by 3 pixels' if s['task'] == 'ct' else 'every sample'})"
        " and averaged over images; values in brackets are bootstrap 95 % intervals over images "
        f"({S.RESAMPLES} resamples). Methods are compared image by image (Wilcoxon signed-rank "
        "and sign test), Holm-corrected over the whole summary table; a method is called best "
        f"only when it differs significantly (p < {S.ALPHA:g}) from each other method.",
        "",
        "## Findings",
        "",
        *[f"- {line}" for line in findings(metrics, rows)],
        "",
        "## Summary",
        "",
        summary_table(rows) if rows else "",
        "",
        "## Figures",
        "",
        *[f"![{name}]({name})\n" for name in figure_files],
        "## Paired comparisons",
        "",
        "Each method against each other method and against its controls, image by image, on "
        "the criteria of the summary. Holm p: the Wilcoxon p adjusted over every row of this "
        "table.",
        "",
        comparison_table(rows),
        "",
        "## Localisation against the controls",
        "",
        "Per-image pixel AUROC for the changed region (adversarial) or the artifact footprint, "
        "negatives from the object support; beside it the same method's map on the clean "
        "image (same mask) and the change of its map. A map that finds the region as well on "
        "the clean image is reacting to where the region lies, not to the perturbation.",
        "",
        detection_table(metrics),
        "",
        "## Image-level detection",
        "",
        "Telling each case's images from the clean ones by one score per image (the mean, the "
        "95 % quantile, or the largest local mean of the map over the support). Unpaired: the "
        "AUROC against the clean images. Paired: the share of images whose score rose over "
        "the same image's clean score.",
        "",
        image_table(metrics),
        "",
        "## All metrics per failure case and method",
        "",
        "On the object support, per image and averaged; the last columns (in brackets) over "
        "all pixels, for comparison only. Spearman/Pearson/cosine: |error| of each map's "
        "reconstruction against the map; AUSE: normalised sparsification error (lower is "
        "better); pixel AUROC: as above; image AUROC: by the mean score.",
        "",
        main_table(metrics),
        "",
        "## Intervals and direction",
        "",
        "Coverage: share of the object's target pixels inside the INN interval [lo, hi]. "
        "Direction: on object pixels where the target differs from the reconstruction (pixels "
        "at the output clamp left out), does the longer side of [lo, hi] point at the target? "
        "MCDROP's band is the 10-90 % quantile range of its passes; PROBOUT is symmetric.",
        "",
        interval_table(metrics),
        "",
        direction_table(metrics),
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


_FLAT_LIST = re.compile(r"\[\s+([^\[\]{}\"]*?)\s+\]")


def dumps(metrics: dict) -> str:
    """Strict JSON, indented, with lists of numbers on one line each (the per-image values
    would otherwise take a line per number)."""
    text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False)
    return _FLAT_LIST.sub(lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text) + "\n"


def write_report(out, metrics: dict, figure_files: List[str], *,
                 noise_label: str = "noise") -> List[Path]:
    """Write ``report.md`` and ``metrics.json`` (with the findings) into ``out``."""
    out = Path(out)
    rows = analyse(metrics)
    metrics["analysis"] = rows
    metrics["findings"] = findings(metrics, rows)
    metrics_path = out / METRICS_FILE
    metrics_path.write_text(dumps(metrics))
    report_path = out / REPORT_FILE
    report_path.write_text(render(metrics, figure_files, noise_label=noise_label, rows=rows))
    return [report_path, metrics_path]
