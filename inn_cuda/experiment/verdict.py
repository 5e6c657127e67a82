"""The verdict rule: what the report may claim about a criterion, from the per-image values in
``metrics.json`` alone.

Per criterion of :data:`CRITERIA` (one metric on one case, or on every noise case averaged per
image), every method and control map gets its mean over images with a bootstrap 95 % interval,
and the paired Wilcoxon signed-rank test (with the sign test beside it) compares each method with
each other method and with its controls: the two uncertainty-free maps (EDGE, INTENSITY) and,
for a pixel AUROC, the method's own map on the clean image. Holm's correction runs over every
comparison of the table at once. Then:

* a method is **best** only when its paired difference to each other method is significant
  (adjusted p < :data:`~.statistics.ALPHA`) in its favour; otherwise there is **no significant
  difference** between the top method and those it does not significantly beat (``tied``), and
  the numbers are shown as they are;
* a method is **at chance** when its interval reaches the chance level (or beyond);
* a method **beats its controls** only when it is significantly better than each of them; a
  method that does not, or whose mean does not exceed a control's, is named with that control.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from . import statistics as S


@dataclass(frozen=True)
class Criterion:
    mode: str  # clean | noise | adversarial | artifact
    label: str
    metric: str  # a per-image key of metrics.json
    case: str  # a case name, "noise" (every noise case, averaged per image) or "noise:last"
    higher: bool  # higher is better
    chance: Optional[float]  # the level of an uninformative map, None when there is none
    clean_control: Optional[str] = None  # the per-image key of the method's clean-image control
    trivial_controls: bool = True  # compare with EDGE and INTENSITY (not for the direction,
    # where a map without an interval is at chance by construction)


CRITERIA = (
    Criterion("clean", "ranking the error (Spearman of |error| and uncertainty)", "spearman",
              "clean", True, 0.0),
    Criterion("clean", "sparsification (AUSE, lower is better)", "ause", "clean", False, None),
    Criterion("clean", "direction (AUROC of the signed asymmetry for the side of the target)",
              "direction_auroc", "clean", True, 0.5, trivial_controls=False),
    Criterion("noise", "telling noisy from clean images (image AUROC of the mean uncertainty, "
              "averaged over levels)", "placement_mean", "noise", True, 0.5),
    Criterion("noise", "ranking the error under the strongest noise (Spearman)", "spearman",
              "noise:last", True, 0.0),
    Criterion("adversarial", "localising the changed region (pixel AUROC)", "pixel_auroc",
              "adversarial", True, 0.5, "pixel_auroc_clean_control"),
    Criterion("adversarial", "flagging attacked images (image AUROC of the largest local mean)",
              "placement_local_max", "adversarial", True, 0.5),
    Criterion("artifact", "localising the artifact (pixel AUROC)", "pixel_auroc", "artifact",
              True, 0.5, "pixel_auroc_clean_control"),
    Criterion("artifact", "flagging images with an artifact (image AUROC of the largest local "
              "mean)", "placement_local_max", "artifact", True, 0.5),
)

CLEAN_CONTROL = "{} on the clean image"


def cases_of(metrics: dict, kind: str) -> List[str]:
    """Case names of ``kind``, in the study's order."""
    return [name for name, case in metrics["cases"].items() if case["kind"] == kind]


def controls_of(metrics: dict) -> List[str]:
    return [m for m in metrics.get("controls", []) if m in metrics["results"]]


def methods_of(metrics: dict) -> List[str]:
    controls = set(metrics.get("controls", []))
    return [m for m in metrics["results"] if m not in controls]


def _where(metrics: dict, criterion: Criterion) -> List[str]:
    noise = cases_of(metrics, "noise")
    if criterion.case == "noise":
        return noise
    if criterion.case == "noise:last":
        return noise[-1:]
    return [criterion.case] if criterion.case in metrics["cases"] else []


def per_image(metrics: dict, name: str, cases: List[str], key: str) -> Optional[np.ndarray]:
    """The per-image values of ``key`` for ``name``, averaged over ``cases`` image by image;
    None when no case has them."""
    rows = [metrics["results"].get(name, {}).get(c, {}).get("per_image", {}).get(key)
            for c in cases]
    rows = [S.as_array(r) for r in rows if r is not None]
    if not rows:
        return None
    stacked = np.vstack(rows)
    defined = np.isfinite(stacked)
    with np.errstate(invalid="ignore"):
        return np.where(defined.any(0), np.nansum(stacked, 0) / defined.sum(0), np.nan)


def _summary(values: np.ndarray) -> dict:
    low, high = S.bootstrap_ci(values)
    return {"mean": S.mean(values), "ci": [low, high], "n": int(np.isfinite(values).sum())}


def _better(comparison: dict, higher: bool) -> bool:
    """Significant after correction and in the first one's favour."""
    p, d = comparison.get("p_adjusted"), comparison["test"]["mean_difference"]
    return p is not None and p < S.ALPHA and d is not None and (d > 0 if higher else d < 0)


def analyse(metrics: dict) -> List[dict]:
    """One row per criterion with values: every entry's mean and interval, the paired
    comparisons (Holm-adjusted over the whole table) and the verdicts."""
    methods, controls = methods_of(metrics), controls_of(metrics)
    rows = []
    for criterion in CRITERIA:
        cases = _where(metrics, criterion)
        compared = methods + (controls if criterion.trivial_controls else [])
        data = {m: per_image(metrics, m, cases, criterion.metric) for m in compared}
        data = {m: v for m, v in data.items() if v is not None and np.isfinite(v).any()}
        if not any(m in data for m in methods):
            continue
        own = {}
        if criterion.clean_control:
            for m in methods:
                v = per_image(metrics, m, cases, criterion.clean_control)
                if m in data and v is not None and np.isfinite(v).any():
                    own[m] = v
        entries = {m: _summary(v) for m, v in data.items()}
        entries.update({CLEAN_CONTROL.format(m): _summary(v) for m, v in own.items()})
        ranked = [m for m in methods if m in data]
        comparisons = [{"a": a, "b": b, "kind": "method", "test": S.paired_test(data[a], data[b])}
                       for i, a in enumerate(ranked) for b in ranked[i + 1:]]
        for m in ranked:
            against = ([(CLEAN_CONTROL.format(m), own[m])] if m in own else []) + \
                [(c, data[c]) for c in controls if c in data]
            comparisons += [{"a": m, "b": name, "kind": "control",
                             "test": S.paired_test(data[m], values)} for name, values in against]
        rows.append({"mode": criterion.mode, "criterion": criterion.label,
                     "metric": criterion.metric, "cases": cases, "higher": criterion.higher,
                     "chance": criterion.chance, "methods": ranked,
                     "controls": [c for c in controls if c in data], "entries": entries,
                     "comparisons": comparisons})
    family = [c for row in rows for c in row["comparisons"]]
    for c, p in zip(family, S.holm([c["test"]["wilcoxon_p"] for c in family])):
        c["p_adjusted"] = p
    for row in rows:
        _verdicts(row)
    return rows


def _verdicts(row: dict) -> None:
    higher, chance, entries = row["higher"], row["chance"], row["entries"]
    sign = 1.0 if higher else -1.0
    methods = row["methods"]
    top = max(methods, key=lambda m: sign * entries[m]["mean"])
    versus = {(c["a"], c["b"]): c for c in row["comparisons"]}

    def beats(a, b):
        if (a, b) in versus:
            return _better(versus[(a, b)], higher)
        flipped = versus[(b, a)]
        return _better({**flipped, "test": {**flipped["test"], "mean_difference": -(
            flipped["test"]["mean_difference"] or 0.0)}}, higher)

    others = [m for m in methods if m != top]
    row["best"] = top if others and all(beats(top, m) for m in others) else None
    # no best: the top method and those it does not significantly beat
    row["tied"] = [] if row["best"] or not others else \
        [top] + [m for m in others if not beats(top, m)]
    row["at_chance"] = [m for m in methods if _at_chance(entries[m], chance, higher)]
    row["beats_controls"], row["below_controls"] = {}, {}
    for m in methods:
        mine = [c for c in row["comparisons"] if c["kind"] == "control" and c["a"] == m]
        if not mine:
            continue
        row["beats_controls"][m] = all(_better(c, higher) for c in mine)
        below = [c["b"] for c in mine
                 if entries[c["b"]]["mean"] is not None and
                 sign * entries[c["b"]]["mean"] >= sign * entries[m]["mean"]]
        if below:
            row["below_controls"][m] = below


def _at_chance(entry: dict, chance: Optional[float], higher: bool) -> bool:
    if chance is None or entry["mean"] is None:
        return False
    low, high = entry["ci"]
    bound = (low if higher else high)
    bound = entry["mean"] if bound is None else bound
    return bound <= chance if higher else bound >= chance
