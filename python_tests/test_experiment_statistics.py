"""The study's statistics (paired tests against scipy, Holm by hand, bootstrap intervals) and the
verdict rule on synthetic per-image tables: a significant winner, no significant difference,
every method at chance, a method below its controls."""

import math

import numpy as np
import pytest
from scipy import stats

from inn_cuda.experiment import report, statistics as S, verdict


def test_paired_test_matches_scipy_on_a_known_case():
    a = [0.61, 0.70, 0.55, 0.80, 0.66, 0.72, 0.59, 0.64, None, 0.70]
    b = [0.50, 0.52, 0.56, 0.60, 0.51, 0.55, 0.49, 0.64, 0.90, 0.58]
    test = S.paired_test(a, b)
    d = np.array([x - y for x, y in zip(a, b) if x is not None])
    assert test["n"] == 9 and test["greater"] == 7 and test["less"] == 1  # one zero difference
    assert test["mean_difference"] == pytest.approx(d.mean())
    assert test["wilcoxon_p"] == pytest.approx(stats.wilcoxon(d[d != 0]).pvalue)
    assert test["sign_p"] == pytest.approx(stats.binomtest(7, 8, 0.5).pvalue)
    # the sign test by hand: P(X >= 7 or X <= 1), X ~ Bin(8, 1/2) = 2 * (1 + 8) / 256
    assert test["sign_p"] == pytest.approx(2 * 9 / 256)
    same = S.paired_test([0.5, 0.5], [0.5, 0.5])
    assert same["wilcoxon_p"] == 1.0 and same["sign_p"] == 1.0
    assert S.paired_test([None], [1.0])["wilcoxon_p"] is None
    with pytest.raises(ValueError, match="same images"):
        S.paired_test([1.0], [1.0, 2.0])


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 of m = 3: x3, x2, x1 -> 0.03, 0.06, 0.04 -> monotone 0.06
    assert S.holm([0.04, 0.01, None, 0.03]) == pytest.approx([0.06, 0.03, None, 0.06])
    assert S.holm([0.5, 0.9]) == [1.0, 1.0]
    assert S.holm([]) == []


def test_bootstrap_interval():
    values = np.random.default_rng(0).normal(1.0, 0.1, 40)
    low, high = S.bootstrap_ci(values)
    assert low < values.mean() < high and high - low < 0.1
    assert S.bootstrap_ci(values) == (low, high)  # seeded: reproducible
    assert S.bootstrap_ci([0.5] * 5) == (0.5, 0.5)  # constant: no spread
    assert S.bootstrap_ci([0.5, None]) == (None, None)


METHODS = ("INN", "MCDROP", "PROBOUT")


def _metrics(values: dict, clean_control: dict = None):
    """A metrics dict whose artifact case holds the given per-image pixel AUROCs."""
    results = {}
    for name, v in values.items():
        per_image = {"pixel_auroc": list(v)}
        if clean_control and name in clean_control:
            per_image["pixel_auroc_clean_control"] = list(clean_control[name])
        results[name] = {"artifact": {"per_image": per_image}}
    return {"cases": {"clean": {"kind": "clean"}, "artifact": {"kind": "artifact"}},
            "controls": ["EDGE", "INTENSITY"], "results": results}


def _row(metrics):
    rows = verdict.analyse(metrics)
    assert len(rows) == 1
    return rows[0]


RNG = np.random.default_rng(1)
NOISE = RNG.normal(0, 0.01, (5, 24))


def test_a_significant_winner_is_best_and_beats_its_controls():
    values = {"INN": 0.9 + NOISE[0], "MCDROP": 0.7 + NOISE[1], "PROBOUT": 0.6 + NOISE[2],
              "EDGE": 0.65 + NOISE[3], "INTENSITY": 0.55 + NOISE[4]}
    row = _row(_metrics(values, {"INN": 0.6 + NOISE[1]}))
    assert row["best"] == "INN"
    assert row["at_chance"] == []
    assert row["beats_controls"]["INN"] is True
    assert row["beats_controls"]["PROBOUT"] is False
    assert row["below_controls"]["PROBOUT"] == ["EDGE"]
    low, high = row["entries"]["INN"]["ci"]
    assert low < 0.9 < high
    text = report.row_sentence(row)
    assert "INN is best" in text and "PROBOUT is not above EDGE" in text
    assert "INN and MCDROP significantly beat every control" in text  # MCDROP: 0.7 > 0.65


def test_no_significant_difference_names_no_winner():
    values = {"INN": 0.80 + NOISE[0], "MCDROP": 0.80 + NOISE[1], "PROBOUT": 0.60 + NOISE[2]}
    metrics = _metrics(values)
    metrics["controls"] = []
    row = _row(metrics)
    assert row["best"] is None  # INN's mean may be highest, but not significantly above MCDROP
    assert sorted(row["tied"]) == ["INN", "MCDROP"]  # both significantly above PROBOUT
    text = report.row_sentence(row)
    assert "No significant difference between" in text and "no method is best" in text
    assert " is best (" not in text and "PROBOUT" not in text.split("No significant")[1]
    table = report.summary_table([row])
    assert "no significant difference (" in table


def test_everything_at_chance_is_said_plainly():
    values = {m: 0.5 + NOISE[k] for k, m in enumerate(METHODS)}
    values.update(EDGE=0.8 + NOISE[3], INTENSITY=0.7 + NOISE[4])
    metrics = _metrics(values)
    row = _row(metrics)
    assert row["best"] is None and row["at_chance"] == list(METHODS)
    text = report.row_sentence(row)
    assert "Every method is at or below chance" in text
    assert "INN is not above EDGE and INTENSITY" in text
    findings = report.findings(metrics)
    assert any("No method is above chance and significantly better than every control" in line
               for line in findings)
    assert "all at chance" in report.summary_table([row])
    assert report.summary_table([row]).count("no significant difference") == 1
    assert not any("Outright wins" in line or "tally" in line for line in findings)


def test_holm_runs_over_the_whole_table():
    """A difference that is significant alone stops being so among many comparisons."""
    values = {"INN": 0.52 + NOISE[0], "MCDROP": 0.5 + NOISE[1]}
    metrics = _metrics(values)
    metrics["controls"] = []
    row = _row(metrics)
    (comparison,) = row["comparisons"]
    assert comparison["p_adjusted"] == pytest.approx(comparison["test"]["wilcoxon_p"])
    metrics["results"]["INN"]["clean"] = {"per_image": {"spearman": list(0.3 + NOISE[2])}}
    metrics["results"]["MCDROP"]["clean"] = {"per_image": {"spearman": list(0.3 + NOISE[3])}}
    rows = verdict.analyse(metrics)
    adjusted = [c["p_adjusted"] for r in rows for c in r["comparisons"]]
    raw = [c["test"]["wilcoxon_p"] for r in rows for c in r["comparisons"]]
    assert adjusted == pytest.approx(S.holm(raw))
    assert not math.isclose(adjusted[0], raw[0]) or raw[0] * 2 > 1
