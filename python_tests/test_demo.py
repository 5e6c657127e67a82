"""``inn-cuda demo`` end to end on the tiny preset: every report file is written and complete, a
rerun resumes the saved stages and reproduces the numbers, and bad arguments get clear errors."""

import json

import pytest
import torch
from PIL import Image

from inn_cuda.cli import main
from inn_cuda.experiment import METHODS, make_settings, run_study
from inn_cuda.experiment.study import StudyError

REPORT_FILES = ("report.md", "metrics.json", "cases.png", "direction_accuracy.png",
                "noise.png", "settings.json", "log.txt")


def _check_report(out, task):
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["settings"]
    cases = ["clean", *(f"noise {v:g}" for v in s["noise_levels"]), "adversarial",
             *(["adversarial vs PROBOUT"] if s["adv_against_probout"] else []), "artifact"]
    assert list(metrics["cases"]) == cases
    assert set(metrics["results"]) == {*METHODS, "EDGE", "INTENSITY"}
    assert metrics["controls"] == ["EDGE", "INTENSITY"]
    report = (out / "report.md").read_text()
    # a case that is no failure of the network is on record but not evaluated
    evaluated = [c for c in cases if not metrics["cases"][c].get("dropped")]
    assert set(metrics["results"]["INN"]) == set(evaluated)
    for case in evaluated:
        images = metrics["cases"][case]["images"]
        for method in metrics["results"]:
            result = metrics["results"][method][case]
            assert {"rmse", "mean_uncertainty", "spearman", "pearson", "cosine", "ause",
                    "direction_accuracy", "direction_base_rate", "direction_auroc",
                    "direction_accuracy_by_ratio", "all_pixels", "per_image"} <= set(result)
            assert (result["coverage"] is not None) == (method == "INN")
            # every per-image value behind the statistics is kept
            assert all(len(v) == images for v in result["per_image"].values())
            if case != "clean":
                assert "image_auroc" in result and "placement_local_max" in result["per_image"]
            # the adversarial mask is the realised change: a search that moved nothing has none
            moved = metrics["cases"][case].get("changed_fraction", 1.0) > 0
            if metrics["cases"][case]["kind"] in ("adversarial", "artifact") and moved:
                assert 0.0 <= result["pixel_auroc"] <= 1.0
                assert "pixel_auroc_clean_control" in result["per_image"]
            assert f"| {case} | {method} |" in report
    assert "## Summary" in report and "## Paired comparisons" in report
    localised = [c for c in evaluated if metrics["cases"][c]["kind"] in ("adversarial", "artifact")
                 and metrics["cases"][c].get("changed_fraction", 1.0) > 0]
    if localised:  # (the tiny preset's 1D attack can move nothing, its artifact be dropped)
        assert {row["metric"] for row in metrics["analysis"]} >= {"pixel_auroc"}
    assert set(metrics["inference_time"]) == {*METHODS, "point network"}
    assert metrics["findings"] and "## Findings" in report
    for line in metrics["findings"]:
        assert line in report
    for stage in ("data", "point network", "intervals", "probout", "failure cases",
                  "evaluation", "total"):
        assert metrics["timings_s"][stage] >= 0
    for name in ("cases.png", "direction_accuracy.png", "noise.png"):
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100
        assert f"]({name})" in report
    assert s["task"] == task
    # the MC-dropout rate and T are stated in the text, not only in the settings table
    assert "**MC dropout as run.**" in report and f"T = {s['mc_passes']} stochastic" in report
    return metrics


@pytest.mark.slow
def test_ct_demo_writes_the_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "ct"
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--quiet", "--seed", "1"]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    first = _check_report(out, "ct")
    assert not any(first["resumed"].values())
    assert first["settings"]["seed"] == 1
    # the training stages wrote their logs and checkpoints through the shared loop
    for stage in ("point", "intervals", "probout"):
        assert (out / "stages" / stage / "checkpoint.pt").is_file()
        assert (out / "stages" / stage / "metrics.jsonl").is_file()
    assert first["training"]["intervals"]["interval_layers"] == 3

    again = run_study(make_settings("ct", "tiny", seed=1), out, progress=False).metrics
    assert all(again["resumed"].values())
    assert again["results"] == first["results"]  # resumed stages reproduce every number
    assert again["cases"] == first["cases"]

    with pytest.raises(StudyError, match=r"other settings \(epochs: 1 -> 2\).*--overwrite"):
        run_study(make_settings("ct", "tiny", seed=1, epochs=2), out, progress=False)


def test_deconv1d_demo_writes_the_report(tmp_path):
    out = tmp_path / "deconv"
    assert main(["demo", "--task", "deconv1d", "--preset", "tiny", "--out", str(out),
                 "--quiet"]) == 0
    metrics = _check_report(out, "deconv1d")
    assert metrics["cases"]["artifact"]["footprint_fraction"] > 0


@pytest.mark.slow
def test_seeds_repeat_the_study_and_report_across_them(tmp_path):
    out = tmp_path / "seeds"
    assert main(["demo", "--task", "deconv1d", "--preset", "tiny", "--out", str(out), "--quiet",
                 "--seed", "3", "--seeds", "2"]) == 0
    for seed in (3, 4):
        per_seed = json.loads((out / f"seed-{seed}" / "metrics.json").read_text())
        assert per_seed["settings"]["seed"] == seed
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["seeds"] == [3, 4]
    row = next(r for r in summary["criteria"] if r["mode"] == "clean")
    across = row["across_seeds"]["INN"]
    values = [row["per_seed"]["INN"][str(k)]["mean"] for k in (3, 4)]
    assert across["mean"] == pytest.approx(sum(values) / 2)
    assert across["sd"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    report = (out / "report.md").read_text()
    assert "2 seeds" in report and "(seed-3/report.md)" in report and "± " in report
    assert "**MC dropout as run.**" in report


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds: expected an int >= 1, got 0"),
    (["--size", "30"], "size: expected an image side >= 16 divisible by 2**depth = 4, got 30"),
    (["--set", "bogus=1"], "unknown setting 'bogus'"),
    (["--set", "inn_last=abc"], "inn_last: cannot read 'abc'"),
    (["--set", "epochs"], "--set: expected NAME=VALUE"),
    (["--epochs", "-1"], "epochs: expected an int >= 0, got -1"),
    (["--task", "mri"], "invalid choice: 'mri'"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--preset", "tiny", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage: inn-cuda demo" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--preset", "tiny", "--device", "cuda", "--out",
                 str(tmp_path / "x"), "--quiet"]) == 2
    assert "CUDA is not available on this machine" in capsys.readouterr().err


def test_other_settings_in_the_same_folder_are_refused(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "settings.json").write_text(json.dumps({"task": "ct", "preset": "tiny"}))
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--quiet"]) == 2
    assert "holds a study with other settings" in capsys.readouterr().err
