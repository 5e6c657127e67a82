"""The report's findings come from the numbers: the verdict per criterion, chance levels, noise
growth, interval coverage, direction against its base rate, and the tables, on hand-made metric
dicts (the verdict rule itself: test_experiment_statistics.py)."""

import json
import math

import numpy as np

from inn_cuda.experiment import make_settings, report

CASES = {"clean": {"kind": "clean", "images": 4},
         "noise 0.01": {"kind": "noise", "images": 4, "level": 0.01},
         "noise 0.04": {"kind": "noise", "images": 4, "level": 0.04},
         "adversarial": {"kind": "adversarial", "images": 4, "objective_reduction": 0.05,
                         "relative_perturbation": 0.1, "changed_fraction": 0.04},
         "artifact": {"kind": "artifact", "images": 4}}


def _metrics(results, cases=None, **extra):
    return {"cases": cases or CASES, "results": results, **extra}


def _spread(center, n=12, seed=0):
    return list(center + np.random.default_rng(seed).normal(0, 0.01, n))


def test_findings_follow_the_per_image_values():
    """Swapping two methods' per-image values swaps the stated winner: nothing is hard-coded."""
    high, low = _spread(0.7, seed=1), _spread(0.3, seed=2)
    first = " ".join(report.findings(_metrics({
        "INN": {"clean": {"per_image": {"spearman": high}}},
        "MCDROP": {"clean": {"per_image": {"spearman": low}}}})))
    second = " ".join(report.findings(_metrics({
        "INN": {"clean": {"per_image": {"spearman": low}}},
        "MCDROP": {"clean": {"per_image": {"spearman": high}}}})))
    assert "INN is best (its paired difference" in first
    assert "MCDROP is best (its paired difference" in second


def test_findings_state_growth_coverage_direction_and_speed():
    results = {
        "INN": {"clean": {"mean_uncertainty": 0.1, "rmse": 0.02, "coverage": 0.88,
                          "mean_width": 0.1, "all_pixels": {"coverage": 0.95},
                          "direction_accuracy": 0.74, "direction_base_rate": 0.74,
                          "direction_balanced_accuracy": 0.5},
                "noise 0.01": {"mean_uncertainty": 0.2, "rmse": 0.03},
                "noise 0.04": {"mean_uncertainty": 0.4, "rmse": 0.06}},
        "MCDROP": {"clean": {"mean_uncertainty": 0.05, "rmse": 0.02},
                   "noise 0.01": {"mean_uncertainty": 0.04, "rmse": 0.03},
                   "noise 0.04": {"mean_uncertainty": 0.06, "rmse": 0.06}},
    }
    metrics = _metrics(results, training={"intervals": {"target_coverage": 0.9}},
                       inference_time={"INN": {"per_image_s": 0.002},
                                       "MCDROP": {"per_image_s": 0.01},
                                       "point network": {"per_image_s": 0.001}})
    text = "\n".join(report.findings(metrics))
    assert "INN x4.00" in text and "MCDROP x1.20 (not monotone)" in text
    assert "RMSE) grows INN x3.00, MCDROP x3.00" in text
    assert "88% of the object's pixels" in text and "over all pixels 95%" in text
    assert "calibrated to 90%" in text
    assert "INN accuracy 74% against a majority base rate of 74%, balanced accuracy 0.500" in text
    assert "brought its objective to 5% of the start" in text
    assert "fastest uncertainty method is INN" in text  # the point network is not a method


def test_tables_list_every_case_and_method():
    per_image = {"coverage": [0.8, 0.9], "mean_width": [0.1, 0.2], "pixel_auroc": [0.6, 0.7],
                 "direction_auroc": [0.5, 0.5], "direction_balanced_accuracy": [0.5, None]}
    results = {m: {c: {"rmse": 0.1, "spearman": 0.5, "coverage": 0.85 if m == "INN" else None,
                       "all_pixels": {"spearman": 0.9}, "per_image": per_image}
                   for c in CASES} for m in ("INN", "MCDROP", "EDGE")}
    metrics = _metrics(results, controls=["EDGE"])
    main = report.main_table(metrics)
    for case in metrics["cases"]:
        for method in results:
            assert f"| {case} | {method} |" in main
    assert "(Spearman, all px)" in main and "| 0.900 |" in main
    intervals = report.interval_table(metrics)
    assert "| clean | INN | 0.850 [0.800, 0.900] |" in intervals and "MCDROP" not in intervals
    direction = report.direction_table(metrics)
    assert "EDGE" not in direction  # controls have no direction
    detection = report.detection_table(metrics)
    assert "| artifact | EDGE | 0.650 [0.600, 0.700] |" in detection


def test_write_report_writes_strict_json_and_markdown(tmp_path):
    results = {"INN": {"clean": {"spearman": math.nan, "rmse": 0.1,
                                 "per_image": {"spearman": [None, 0.2, 0.3]}}}}
    metrics = _metrics(results, settings={"task": "ct", "preset": "tiny", "seed": 0,
                                          "noise_levels": [0.01]},
                       cases={"clean": {"kind": "clean", "images": 3}})
    files = report.write_report(tmp_path, metrics, ["cases.png"], noise_label="noise")
    assert [f.name for f in files] == [report.REPORT_FILE, report.METRICS_FILE]
    loaded = json.loads((tmp_path / report.METRICS_FILE).read_text())  # no NaN tokens
    assert loaded["results"]["INN"]["clean"]["spearman"] is None
    assert loaded["results"]["INN"]["clean"]["per_image"]["spearman"] == [None, 0.2, 0.3]
    assert isinstance(loaded["findings"], list) and loaded["analysis"]
    text = (tmp_path / report.REPORT_FILE).read_text()
    assert "![cases.png](cases.png)" in text and "## Settings" in text
    assert "## Summary" in text and "## Paired comparisons" in text


def test_report_states_the_mc_dropout_rate_and_passes(tmp_path):
    """The report's head says what MC dropout ran with (rate, placement, T) next to the paper's,
    and plainly where the rate is not the paper's."""
    cases = {"clean": {"kind": "clean", "images": 3}}
    results = {"INN": {"clean": {"rmse": 0.1, "per_image": {}}}}
    s = make_settings("ct", "default").as_dict()
    report.write_report(tmp_path, _metrics(results, settings=s, cases=cases), [])
    text = (tmp_path / report.REPORT_FILE).read_text()
    sentence = report.mc_dropout_sentence(s)
    assert sentence in text and "**MC dropout as run.**" in sentence
    assert "T = 16 stochastic passes" in sentence and "rate p = 0.2" in sentence
    assert "not the paper's 0.7" in sentence and "RMSE" in sentence  # deviation and why
    assert "--set dropout=0.7 --set upsampling=paper" in sentence

    paper = report.mc_dropout_sentence(make_settings("ct", "paper").as_dict())
    assert "T = 16" in paper and "p = 0.7 on the decoder's concatenations" in paper
    assert "not the paper's" not in paper
    half = report.mc_dropout_sentence(make_settings("ct", "default", dropout=0.7).as_dict())
    assert "The rate is the paper's; the placement is not" in half
    deconv = report.mc_dropout_sentence(make_settings("deconv1d", "default").as_dict())
    assert "T = 50" in deconv and "rates 0.2, 0.5, 0.5" in deconv
    assert "not the paper's" not in deconv and "differs" not in deconv
    assert report.mc_dropout_sentence({"task": "ct"}) == ""  # settings that do not say
