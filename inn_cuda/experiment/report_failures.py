"""The report's sections on the failure cases themselves, the calibrated bands and the noise
protocol, appended to ``report.md`` after the main report (so they stay separate functions of
their own), and the noise protocol's figure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List

NOISE_PROTOCOL_FIGURE = "noise_protocol.png"


def _fmt(value, digits: int = 3) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        return "–"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 10 ** -digits):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def _table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def failure_checks_section(metrics: dict) -> str:
    """Are the failure cases failures? The attack's size against the noise and its effect
    against the clean error; each artifact's error rise; the dropped cases' warnings."""
    cases = metrics.get("cases", {})
    parts = ["## Failure cases: are they failures?", ""]
    attacks = [(n, c) for n, c in cases.items() if c.get("kind") == "adversarial"]
    rows = []
    for name, c in attacks:
        if c.get("domain") == "measurement":
            rows.append([name, "measurement", f"{_fmt(c.get('noise_level'), 4)}",
                         _fmt(c.get("noise_ratio")), _fmt(c.get("change_vs_clean_error")),
                         _fmt(c.get("realised_share")), _fmt(c.get("changed_fraction")),
                         _fmt(c.get("intended_fraction"))])
        else:
            rows.append([name, "network input (paper)", "–", "unbounded", "–", "–",
                         _fmt(c.get("changed_fraction")), "–"])
    if rows:
        parts += [
            "Adversarial cases perturb the *measurement* (CT: the sinogram, 1D: the blurred "
            "signal) within `adv_bound_k` x the norm of one draw of the reference noise, so the "
            "perturbed data are as plausible as a noisy measurement, and drive the "
            "reconstruction toward the target feature (a dark blob). The mask is where the "
            "reconstruction *actually* changed (more than `adv_mask_fraction` of the intended "
            "depth). `||delta|| / noise`: the perturbation's norm over one noise draw's; "
            "`change / clean error`: the norm of the reconstruction's change over the norm of "
            "the clean reconstruction's error; `realised`: the share of the intended change "
            "obtained (projection).",
            "",
            _table(["case", "perturbs", "noise level", "||delta|| / noise",
                    "change / clean error", "realised", "changed share", "intended share"],
                   rows), ""]
    artifacts = [(n, c) for n, c in cases.items() if c.get("kind") == "artifact"]
    if artifacts:
        parts += [
            "Artifact cases: the network's mean absolute error inside the footprint, with the "
            "artifact and on the clean image (same footprint). A case whose error does not rise "
            "by `artifact_min_rise` is no failure of the network and is dropped.",
            "",
            _table(["case", "kind", "error inside (artifact)", "error inside (clean)",
                    "rise", "images rising", "evaluated"],
                   [[n, str(c.get("artifact_kind")), _fmt(c.get("footprint_error")),
                     _fmt(c.get("clean_footprint_error")), _fmt(c.get("error_rise"), 2),
                     _fmt(c.get("images_with_rise"), 2), "no (dropped)" if c.get("dropped")
                     else "yes"] for n, c in artifacts]), ""]
    for line in metrics.get("warnings", []):
        parts.append(f"> **Warning:** {line}.")
        parts.append("")
    noise = [c.get("level") for c in cases.values() if c.get("kind") == "noise"]
    if noise:
        parts += ["The *noise* cases of the tables above add noise at test time to a network "
                  "trained without it (a distribution shift, not the paper's protocol); the "
                  "paper's protocol, retraining per noise level, has its own section below when "
                  "enabled (`noise_retrain`).", ""]
    return "\n".join(parts)


def bands_section(bands: dict) -> str:
    if not bands:
        return ""
    rows = [[name, _fmt(v["scale"]), _fmt(v["coverage"]), _fmt(v["width"]),
             _fmt(v["interval_score"]), _fmt(v["raw_coverage"]), _fmt(v["raw_width"])]
            for name, v in bands["methods"].items()]
    best = min(bands["methods"].items(), key=lambda kv: kv[1]["interval_score"]
               if math.isfinite(kv[1]["interval_score"]) else math.inf)[0]
    return "\n".join([
        "## Calibrated intervals (every method, same coverage)", "",
        f"Each method's band around its reconstruction (INN `[lo, hi]`; MCDROP the point "
        f"network's reconstruction -+ the dropout std; PROBOUT `mu -+ sigma`) scaled by the "
        f"factor `k` that covers {100 * bands['coverage']:.0f} % of the targets of "
        f"{bands['calibration_images']} validation images ({bands['region']}), then scored on "
        f"the clean test images ({bands['region']}): coverage, mean width and the "
        f"interval (Winkler) score `width + (2/alpha) x distance outside`, alpha = "
        f"{1 - bands['coverage']:.2f} (lower is better). `raw`: the band before scaling. "
        f"Lowest interval score here: {best} (one seed, no test of significance).", "",
        _table(["method", "k", "coverage", "width", "interval score", "raw coverage",
                "raw width"], rows), ""])


def noise_protocol_section(protocol: dict, noise_label: str) -> str:
    if not protocol:
        return ""
    rows = [[_fmt(e["level"], 4), str(e["seeds"]),
             f"{_fmt(e['width'])} ± {_fmt(e['width_sd'])}",
             f"{_fmt(e['coverage'])} ± {_fmt(e['coverage_sd'])}",
             f"{_fmt(e['raw_width'])} ± {_fmt(e['raw_width_sd'])}",
             f"{_fmt(e['raw_coverage'])} ± {_fmt(e['raw_coverage_sd'])}",
             f"{_fmt(e['rmse'])} ± {_fmt(e['rmse_sd'])}", _fmt(e["beta"])]
            for e in protocol["levels"]]
    widths = [e["width"] for e in protocol["levels"]]
    monotone = all(b >= a for a, b in zip(widths, widths[1:]))
    verdict = ("grows monotonically with the noise level" if monotone else
               "does not grow monotonically with the noise level")
    return "\n".join([
        "## Noise protocol: retrained per noise level", "",
        f"For each level ({noise_label}) the point network and the INN are retrained on data "
        f"with that noise ({protocol['train_images']} training images, {protocol['epochs']} + "
        f"{protocol['inn_epochs']} epochs, "
        + ("from scratch" if protocol.get("start") == "scratch" else
           "warm-started from the study's point network (a CPU-budget shortcut; the paper "
           "trained from scratch)")
        + f"; 1D: noise on input and target, CT: on the sinogram), "
        f"then the INN's band is scaled to the study's interval coverage on that level's "
        f"validation data (as every method's band in the section above) and its width measured "
        f"on fresh test data of that noise ({protocol['region']}); `raw`: the band as fitted. "
        f"Mean ± sd over seeds. The mean calibrated width {verdict} here.", "",
        _table(["level", "seeds", "INN width", "coverage", "raw width", "raw coverage", "RMSE",
                "beta"], rows), "",
        f"![INN width against the noise level under retraining]({NOISE_PROTOCOL_FIGURE})", ""])


def noise_protocol_figure(out: Path, protocol: dict, noise_label: str) -> List[Path]:
    if not protocol:
        return []
    from .figures import _pyplot
    plt = _pyplot()
    levels = [e["level"] for e in protocol["levels"]]
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for run in sorted({r["seed"] for r in protocol["runs"]}):
        mine = [r for r in protocol["runs"] if r["seed"] == run]
        ax.plot([r["level"] for r in mine], [r["width"] for r in mine], "o", color="0.6",
                ms=3, label="one seed" if run == 0 else None)
    ax.errorbar(levels, [e["width"] for e in protocol["levels"]],
                yerr=[e["width_sd"] or 0.0 for e in protocol["levels"]], color="k",
                capsize=3, label="mean ± sd")
    ax.set_xlabel(noise_label)
    ax.set_ylabel(f"INN width ({protocol['region']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out) / NOISE_PROTOCOL_FIGURE
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def append_sections(report_path: Path, metrics: dict, noise_label: str) -> None:
    """Append this module's sections to the written ``report.md``."""
    sections = [failure_checks_section(metrics), bands_section(metrics.get("bands")),
                noise_protocol_section(metrics.get("noise_protocol"), noise_label)]
    with open(report_path, "a") as file:
        file.write("\n" + "\n".join(s for s in sections if s))
