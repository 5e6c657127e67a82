"""The report's findings come from the numbers: winners, ties, undefined values, chance levels
and the generated text, on hand-made metric dicts."""

import json
import math

import pytest

from inn_cuda.experiment import report


def _metrics(results, cases=None, **extra):
    cases = cases or {"clean": {"kind": "clean", "images": 4},
                      "noise 0.01": {"kind": "noise", "images": 4, "level": 0.01},
                      "noise 0.04": {"kind": "noise", "images": 4, "level": 0.04},
                      "adversarial": {"kind": "adversarial", "images": 4,
                                      "objective_reduction": 0.05,
                                      "relative_perturbation": 0.1, "changed_fraction": 0.04},
                      "artifact": {"kind": "artifact", "images": 4}}
    return {"cases": cases, "results": results, **extra}


def _row(rows, mode, metric):
    return next(r for r in rows if r["mode"] == mode and r["metric"] == metric)


def test_winners_pick_the_best_method_per_criterion():
    results = {
        "INN": {"clean": {"spearman": 0.6, "ause": 0.05},
                "adversarial": {"pixel_auroc": 0.9, "image_auroc": 0.7}},
        "MCDROP": {"clean": {"spearman": 0.4, "ause": 0.02},
                   "adversarial": {"pixel_auroc": 0.6, "image_auroc": 0.95}},
    }
    rows = report.winners(_metrics(results))
    assert _row(rows, "clean", "spearman")["best"] == ["INN"]
    assert _row(rows, "clean", "spearman")["margin"] == pytest.approx(0.2)
    assert _row(rows, "clean", "ause")["best"] == ["MCDROP"]  # lower is better
    assert _row(rows, "adversarial", "pixel_auroc")["best"] == ["INN"]
    assert _row(rows, "adversarial", "image_auroc")["best"] == ["MCDROP"]
    # criteria without any value are left out
    assert not [r for r in rows if r["mode"] == "artifact"]


def test_ties_within_tolerance_and_undefined_values():
    results = {"INN": {"artifact": {"pixel_auroc": 0.800}},
               "MCDROP": {"artifact": {"pixel_auroc": 0.800 - report.TIE / 2}},
               "PROBOUT": {"artifact": {"pixel_auroc": None}}}
    row = _row(report.winners(_metrics(results)), "artifact", "pixel_auroc")
    assert row["best"] == ["INN", "MCDROP"] and row["margin"] is None
    assert row["values"]["PROBOUT"] is None
    text = " ".join(report.findings(_metrics(results)))
    assert "INN and MCDROP tie at localising the artifact" in text
    results["PROBOUT"]["artifact"]["pixel_auroc"] = math.nan  # NaN counts as undefined too
    assert _row(report.winners(_metrics(results)), "artifact", "pixel_auroc")["best"] == \
        ["INN", "MCDROP"]


def test_noise_criterion_averages_over_levels_and_uses_the_last_level():
    results = {"INN": {"noise 0.01": {"image_auroc": 0.6, "spearman": 0.1},
                       "noise 0.04": {"image_auroc": 1.0, "spearman": 0.2}},
               "MCDROP": {"noise 0.01": {"image_auroc": 0.9, "spearman": 0.5},
                          "noise 0.04": {"image_auroc": 0.9, "spearman": 0.05}}}
    rows = report.winners(_metrics(results))
    auroc = _row(rows, "noise", "image_auroc")
    assert auroc["values"] == {"INN": pytest.approx(0.8), "MCDROP": pytest.approx(0.9)}
    assert auroc["best"] == ["MCDROP"]
    last = _row(rows, "noise", "spearman")
    assert last["case"] == "noise 0.04" and last["best"] == ["INN"]


def test_findings_state_chance_growth_and_direction_from_the_numbers():
    results = {
        "INN": {"clean": {"mean_uncertainty": 0.1, "rmse": 0.02, "coverage": 0.88,
                          "mean_width": 0.1, "direction_accuracy": {"2": 0.7},
                          "direction_fraction": {"2": 0.3}},
                "noise 0.01": {"mean_uncertainty": 0.2, "rmse": 0.03, "image_auroc": 0.95},
                "noise 0.04": {"mean_uncertainty": 0.4, "rmse": 0.06, "image_auroc": 1.0},
                "adversarial": {"direction_accuracy": {"2": 0.42},
                                "direction_fraction": {"2": 0.2}}},
        "MCDROP": {"clean": {"mean_uncertainty": 0.05, "rmse": 0.02},
                   "noise 0.01": {"mean_uncertainty": 0.04, "rmse": 0.03, "image_auroc": 0.3},
                   "noise 0.04": {"mean_uncertainty": 0.06, "rmse": 0.06, "image_auroc": 0.5}},
    }
    metrics = _metrics(results, training={"intervals": {"target_coverage": 0.9}},
                       inference_time={"INN": {"per_image_s": 0.002},
                                       "MCDROP": {"per_image_s": 0.01},
                                       "point network": {"per_image_s": 0.001}})
    lines = report.findings(metrics)
    text = "\n".join(lines)
    assert "INN is best at telling noisy from clean images" in text
    assert "MCDROP is at or below chance (0.5)" in text
    assert "INN x4.00" in text and "MCDROP x1.20 (not monotone)" in text
    assert "RMSE) grows INN x3.00, MCDROP x3.00" in text
    assert "88% of the pixels" in text and "calibrated to 90%" in text
    assert "clean 70% (above chance; 30% of pixels" in text
    assert "adversarial 42% (below chance" in text
    assert "brought its objective to 5% of the start" in text
    assert "fastest uncertainty method is INN" in text  # the point network is not a method
    assert lines[-1].startswith("**Overall.** Outright wins over the 1 criterion above: INN 1")


def test_findings_change_with_the_numbers():
    """Swapping two methods' numbers swaps the stated winner: nothing is hard-coded."""
    a = {"clean": {"spearman": 0.7}}
    b = {"clean": {"spearman": 0.3}}
    first = " ".join(report.findings(_metrics({"INN": a, "MCDROP": b})))
    second = " ".join(report.findings(_metrics({"INN": b, "MCDROP": a})))
    assert "INN is best at ranking the error" in first
    assert "MCDROP is best at ranking the error" in second


def test_tables_list_every_case_and_method():
    results = {m: {c: {"rmse": 0.1, "spearman": 0.5, "coverage": None,
                       "direction_accuracy": {"1": 0.5, "2": None},
                       "direction_fraction": {"1": 1.0, "2": 0.0}}
                   for c in ("clean", "noise 0.01", "noise 0.04", "adversarial", "artifact")}
               for m in ("INN", "MCDROP", "PROBOUT")}
    metrics = _metrics(results)
    main = report.main_table(metrics)
    intervals = report.interval_table(metrics)
    for case in metrics["cases"]:
        for method in results:
            assert f"| {case} | {method} |" in main
            assert f"| {case} | {method} |" in intervals
    assert "0.500 (100%)" in intervals and "| – |" in intervals


def test_write_report_writes_strict_json_and_markdown(tmp_path):
    results = {"INN": {"clean": {"spearman": math.nan, "rmse": 0.1}}}
    metrics = _metrics(results, settings={"task": "ct", "preset": "tiny", "noise_levels": [0.01]},
                       cases={"clean": {"kind": "clean", "images": 2}})
    files = report.write_report(tmp_path, metrics, ["cases.png"], noise_label="noise")
    assert [f.name for f in files] == [report.REPORT_FILE, report.METRICS_FILE]
    loaded = json.loads((tmp_path / report.METRICS_FILE).read_text())  # no NaN tokens
    assert loaded["results"]["INN"]["clean"]["spearman"] is None
    assert isinstance(loaded["findings"], list)
    text = (tmp_path / report.REPORT_FILE).read_text()
    assert "![cases.png](cases.png)" in text and "## Settings" in text
