"""``inn-cuda demo --ablate``: the spec's parsing and one tiny end-to-end run."""

import json

import pytest

from inn_cuda.experiment import make_settings
from inn_cuda.experiment.ablation import _override, parse_ablate, run_ablations


def test_parse_ablate_reads_axes_and_refuses_bad_values():
    spec = parse_ablate(["last=2,4,all;beta=fixed,calibrated", "dropout=on", "last=7"])
    assert spec == {"last": ["2", "4", "all", "7"], "beta": ["fixed", "calibrated"],
                    "dropout": ["on"]}
    for bad, match in (("depth=2", "AXIS one of"), ("last=0", "last"), ("beta=big", "beta"),
                       ("coverage=1.5", "coverage"), ("dropout=maybe", "dropout"),
                       ("last=", "at least one value")):
        with pytest.raises(ValueError, match=match):
            parse_ablate([bad])
    s = make_settings("ct", "tiny")
    assert _override("beta", "fixed", s) == {"inn_beta": 1e-4, "inn_target_coverage": None}
    assert _override("last", "all", s) == {"inn_last": None}
    assert _override("dropout", "on", s) == {"inn_fit_dropout": True}


@pytest.mark.slow
def test_tiny_ablation_writes_table_figure_and_json(tmp_path):
    s = make_settings("deconv1d", "tiny", device="cpu")
    files = run_ablations(s, tmp_path, {"last": ["1", "all"]}, progress=False)
    # the study underneath wrote this report sections and numbers
    report = (tmp_path / "report.md").read_text()
    for heading in ("## Failure cases: are they failures?",
                    "## Calibrated intervals (every method, same coverage)",
                    "## Noise protocol: retrained per noise level"):
        assert heading in report
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["bands"]["methods"]) == {"INN", "MCDROP", "PROBOUT"}
    for band in metrics["bands"]["methods"].values():
        assert band["interval_score"] >= band["width"]  # the penalty is never negative
    attack = metrics["cases"]["adversarial"]
    assert attack["domain"] == "measurement" and attack["noise_ratio"] <= s.adv_bound_k + 1e-6
    assert "adversarial vs PROBOUT" in metrics["cases"]
    assert [e["level"] for e in metrics["noise_protocol"]["levels"]] == list(s.noise_levels)
    assert (tmp_path / "noise_protocol.png").exists()
    artifact = metrics["cases"]["artifact"]
    assert artifact["kind"] == "artifact" and artifact["artifact_kind"] == "spike"
    assert artifact["dropped"] == \
        (artifact["error_rise"] < s.artifact_min_rise)
    assert (("dropped" in " ".join(metrics["warnings"])) == artifact["dropped"])
    assert (tmp_path / "ablation.md").exists() and (tmp_path / "ablation_last.png").exists()
    rows = json.loads((tmp_path / "ablation.json").read_text())["last"]
    assert [r["value"] for r in rows] == ["1", "all"]
    assert all(0.0 <= r["coverage"] <= 1.0 for r in rows)
    assert tmp_path / "ablation.md" in files
