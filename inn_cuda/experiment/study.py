"""The end-to-end study: data -> point network -> INN (conversion and interval fit) -> PROBOUT
fine-tuning -> MC dropout -> failure cases -> evaluation of every method on every case ->
report folder.

Every training stage runs the shared loop of :mod:`inn_cuda.train` with its run directory under
``<out>/stages/``: a rerun with the same ``out`` and settings resumes each stage where it stopped
(a finished stage is loaded, not recomputed); the failure cases (the adversarial search is the
costly part) are cached in ``<out>/stages/cases.pt``. A rerun with other settings refuses to mix
them with the saved stages unless ``overwrite``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from .. import __version__, failure, info
from ..baselines import ProbOut, probout_loss, split_probout
from ..convert import to_interval
from ..nn import interval_layers
from ..train import evaluate, fit_intervals, fit_point, run_training, upcast
from ..train.checkpoint import load_verified, save_verified
from . import figures, report
from .evaluate import case_metrics, image_detection, inference_time
from .methods import (control_methods, inn_method, mc_dropout_method, predict_all,
                      probout_method)
from . import bands, failure_cases, noise_protocol, report_failures
from .presets import Settings
from .problems import Problem, Split, make_problem, _seed

STAGES_DIR = "stages"
SETTINGS_FILE = "settings.json"
DATA_FILE = "data.pt"
CASES_FILE = "cases.pt"
LOG_FILE = "log.txt"
FIGURE_CASES = ("clean", "adversarial", "artifact")
EXAMPLE_INDEX = 0  # the test image the figures show


class StudyError(RuntimeError):
    """The study cannot run as asked (e.g. the output folder holds another study)."""


@dataclass
class Case:
    """One failure case over the test images: network inputs, targets, optional mask."""

    kind: str  # clean | noise | adversarial | artifact
    inputs: torch.Tensor
    targets: torch.Tensor
    mask: Optional[torch.Tensor] = None
    level: Optional[float] = None
    info: Dict[str, float] = field(default_factory=dict)


@dataclass
class StudyResult:
    out: Path
    metrics: dict
    files: List[Path]


# ------------------------------------------------------------------------------ bookkeeping

class _Journal:
    """Progress messages (to the terminal and ``log.txt``) and stage timings."""

    def __init__(self, out: Path, progress: bool):
        self.path = out / LOG_FILE
        self.progress = progress
        self.timings: Dict[str, float] = {}
        self.resumed: Dict[str, bool] = {}

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        with open(self.path, "a") as file:
            file.write(line + "\n")
        if self.progress:
            tqdm.write(line)

    @contextmanager
    def stage(self, name: str):
        self(f"[{name}] start")
        began = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - began
        note = " (resumed from saved work)" if self.resumed.get(name) else ""
        self(f"[{name}] done in {self.timings[name]:.1f} s{note}")


def _comparable(settings: Settings) -> dict:
    values = settings.as_dict()
    for name in ("device", "threads"):  # a stage may resume on another device
        values.pop(name)
    return values


def _prepare_out(out: Path, settings: Settings, overwrite: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / SETTINGS_FILE
    current = _comparable(settings)
    if path.exists() and not overwrite:
        saved = json.loads(path.read_text())
        if saved != current:
            changed = sorted(k for k in set(saved) | set(current) if saved.get(k) !=
                             current.get(k))
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
                               for k in changed[:6])
            raise StudyError(f"{out} holds a study with other settings ({detail}); pass "
                             f"--overwrite to replace it, or choose another --out")
    if overwrite:
        shutil.rmtree(out / STAGES_DIR, ignore_errors=True)
        (out / LOG_FILE).unlink(missing_ok=True)
    (out / STAGES_DIR).mkdir(exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n")


def _loader(split: Split, batch: int, *, shuffle: bool = False, seed: int = 0,
            limit: Optional[int] = None) -> DataLoader:
    inputs, targets = split.inputs[:limit], split.targets[:limit]
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(inputs, targets), batch_size=batch, shuffle=shuffle,
                      generator=generator)


def _run_dir(out: Path, name: str):
    """``(run directory, resume?)`` of a training stage."""
    run_dir = out / STAGES_DIR / name
    return run_dir, (run_dir / "checkpoint.pt").exists()


def _summary(history: list, keys) -> dict:
    last = history[-1] if history else {}
    summary = {k: last[k] for k in keys if k in last}
    summary["epochs"] = last.get("epoch", 0)
    summary["train_time_s"] = sum(r.get("time_s", 0.0) for r in history)
    return summary


# ---------------------------------------------------------------------------------- stages

def _train_point(problem: Problem, train: Split, val: Split, s: Settings, out: Path,
                 device, progress: bool, journal: _Journal):
    torch.manual_seed(s.seed)
    model = problem.network()
    run_dir, resume = _run_dir(out, "point")
    journal.resumed["point network"] = resume
    result = fit_point(model, _loader(train, s.batch_size, shuffle=True, seed=s.seed),
                       _loader(val, s.eval_batch_size), epochs=s.epochs, lr=s.lr,
                       run_dir=run_dir, resume=resume, seed=s.seed, device=device,
                       progress=progress)
    model.eval()
    return model, _summary(result.history, ("train_loss", "val_loss", "val_mae"))


def _fit_inn(problem: Problem, point, train: Split, val: Split, s: Settings, out: Path, device,
             progress: bool, journal: _Journal):
    point.eval()  # converted as used for inference (NonNegativeOutput's clamp included)
    model = to_interval(point, last=s.inn_last)
    run_dir, resume = _run_dir(out, "intervals")
    journal.resumed["intervals"] = resume
    result = fit_intervals(
        model, _loader(train, s.inn_batch_size, shuffle=True, seed=s.seed + 1,
                       limit=s.inn_train_images),
        _loader(val, s.eval_batch_size), beta=s.inn_beta,
        target_coverage=s.inn_target_coverage, calibration_factor=s.inn_calibration_factor,
        dropout=s.inn_fit_dropout, epochs=s.inn_epochs, lr=s.inn_lr, support=problem.support,
        run_dir=run_dir, resume=resume, seed=s.seed, device=device, progress=progress)
    model.eval()
    layers = sum(1 for _ in interval_layers(model))
    summary = _summary(result.history, ("val_coverage", "val_width", "val_hinge"))
    summary.update(beta=result.beta, coverage=result.coverage, width=result.width,
                   target_coverage=result.target_coverage, interval_layers=layers,
                   coverage_on="the object support of the validation targets")
    return model, summary


def _probout_metrics(module, batch):
    x, y = batch
    out, y = upcast(module(x), y)
    mu, s = split_probout(out)
    return {"loss": probout_loss(out, y), "mae": (mu - y).abs().mean(),
            "sigma": (0.5 * s).exp().mean()}


def _probout_bias(point, val: Split, s: Settings, device) -> float:
    """The log-variance head's starting bias: ``log(MSE / 3)`` of the point network on the
    validation data (the loss's optimum for a constant variance) unless set."""
    if s.probout_bias_init is not None:
        return s.probout_bias_init
    rec = _reconstruct(point, val.inputs, s.eval_batch_size, device)
    mse = float((rec - val.targets).double().square().mean())
    return math.log(max(mse, 1e-30) / 3.0)


def _fine_tune_probout(point, train: Split, val: Split, s: Settings, out: Path, device,
                       progress: bool, journal: _Journal):
    bias = _probout_bias(point, val, s, device)
    # the variance may fall at most 100x in std below its start (see ProbOut.min_log_variance)
    model = ProbOut(copy.deepcopy(point), bias_init=bias,
                    min_log_variance=bias - 2 * math.log(100.0))
    params = list(model.parameters() if s.probout_params == "all"
                  else model.logvar_head.parameters())
    run_dir, resume = _run_dir(out, "probout")
    journal.resumed["probout"] = resume

    def loss_fn(module, batch):
        x, y = batch
        output, y = upcast(module(x), y)
        return probout_loss(output, y)

    val_loader = _loader(val, s.eval_batch_size)
    result = run_training(
        model, loss_fn, params, _loader(train, s.batch_size, shuffle=True, seed=s.seed + 2),
        epochs=s.probout_epochs, lr=s.probout_lr,
        validate=lambda m: evaluate(m, val_loader, _probout_metrics, progress=progress),
        # dropout off: the variance head learns the error of the eval-mode mean it is used with
        set_mode=torch.nn.Module.eval, kind="probout", run_dir=run_dir, resume=resume,
        seed=s.seed, device=device, progress=progress, desc="probout", show=("loss",))
    model.eval()
    summary = _summary(result.history, ("train_loss", "val_loss", "val_mae", "val_sigma"))
    summary["bias_init"] = bias
    return model, summary


@torch.no_grad()
def _reconstruct(model, inputs, batch, device):
    model.eval()
    return torch.cat([model(inputs[i:i + batch].to(device)).cpu()
                      for i in range(0, inputs.shape[0], batch)])


def _adversarial_case(problem: Problem, point, test: Split, s: Settings, device,
                      progress: bool) -> Case:
    parts = []
    chunks = range(0, len(test), s.eval_batch_size)
    for i in tqdm(chunks, desc="adversarial search", disable=not progress, leave=False):
        x = test.inputs[i:i + s.eval_batch_size].to(device)
        with torch.no_grad():
            point.eval()
            rec = point(x)
        target = problem.adversarial_target(rec, seed=_seed(s, 20) + i)
        parts.append(failure.adversarial_search(
            point, x, target.target.to(device), mask=target.mask, optimizer=s.adv_optimizer,
            max_iter=s.adv_max_iter, bound=s.adv_bound))
    x_adv = torch.cat([p.x_adv.cpu() for p in parts])
    mask = torch.cat([p.mask.cpu() for p in parts])
    norms = torch.cat([p.perturbation_norm.cpu() for p in parts])
    start = torch.cat([p.objective_start.cpu() for p in parts])
    end = torch.cat([p.objective_end.cpu() for p in parts])
    input_norms = test.inputs.flatten(1).norm(dim=1)
    info_ = {"perturbation_norm": float(norms.mean()),
             "relative_perturbation": float((norms / input_norms.clamp(min=1e-12)).mean()),
             "objective_start": float(start.mean()), "objective_end": float(end.mean()),
             "objective_reduction": float((end / start.clamp(min=1e-30)).mean()),
             "iterations": round(sum(p.iterations for p in parts) / len(parts)),
             "changed_fraction": float(mask.double().mean())}
    return Case("adversarial", x_adv, test.targets, mask, info=info_)


def _build_cases(problem: Problem, point, probout, test: Split, s: Settings, device,
                 progress: bool) -> Dict[str, Case]:
    cases = {"clean": Case("clean", test.inputs, test.targets)}
    for k, level in enumerate(s.noise_levels):
        cases[f"noise {level:g}"] = Case("noise", problem.noisy_inputs(test, level, _seed(s, 10 + k)),
                                         test.targets, level=level)
    if s.adv_domain == "image":
        cases["adversarial"] = _adversarial_case(problem, point, test, s, device, progress)
    else:
        attacked = {"adversarial": point}
        if s.adv_against_probout:
            attacked["adversarial vs PROBOUT"] = failure_cases.MeanOf(probout)
        for name, model in attacked.items():
            inputs, targets, mask, info_ = failure_cases.measurement_adversarial(
                problem, model, test, s, device, _seed(s, 20), progress)
            cases[name] = Case("adversarial", inputs, targets, mask, info=info_)
    artifact = problem.artifact_case(test, _seed(s, 30))
    keep, info_ = failure_cases.artifact_check(point, test, artifact.input.float(),
                                               artifact.ground_truth.float(), artifact.mask, s,
                                               device)
    # a case that is no failure of the network stays on record (the report warns) but is not
    # evaluated: `dropped`
    cases["artifact"] = Case("artifact", artifact.input.float(), artifact.ground_truth.float(),
                             artifact.mask, info={"footprint_fraction":
                                                  float(artifact.mask.double().mean()),
                                                  **info_, "dropped": not keep})
    return cases


def _save(path: Path, obj) -> None:
    """Atomic (an interrupted run never leaves a torn file) and with a digest checked on
    loading (a damaged file is an error naming it, not a silent resume)."""
    save_verified(obj, path)


def _save_cases(path: Path, cases: Dict[str, Case]) -> None:
    _save(path, {name: vars(case) for name, case in cases.items()})


def _load_cases(path: Path) -> Dict[str, Case]:
    return {name: Case(**fields) for name, fields in
            load_verified(path).items()}


def _example(case: Case, preds: dict) -> dict:
    """The figure's slice of one case: image EXAMPLE_INDEX of every tensor, as float arrays."""
    take = lambda t: t[EXAMPLE_INDEX, 0].float().numpy()  # noqa: E731
    return {"input": take(case.inputs), "target": take(case.targets),
            "mask": None if case.mask is None else case.mask[EXAMPLE_INDEX, 0].numpy(),
            "methods": {name: {k: take(getattr(p, k)) for k in ("rec", "lo", "hi",
                                                                 "uncertainty")}
                        for name, p in preds.items()}}


def _evaluate(problem: Problem, methods, cases: Dict[str, Case], s: Settings, device,
              progress: bool):
    """Every metric of every method on every case, on the task's object support, with the clean
    case's maps as each method's control; the clean predictions and one case's predictions in
    memory at a time. Returns (results[method][case], figure examples[case])."""
    results = {m.name: {} for m in methods}
    clean_preds, examples = {}, {}
    bar = tqdm(total=len(cases) * len(methods), desc="evaluate", disable=not progress,
               leave=False)
    with bar:
        for name, case in cases.items():
            support = problem.support(case.targets)
            preds = {}
            for method in methods:
                bar.set_postfix_str(f"{method.name} on {name}")
                pred = predict_all(method, case.inputs, s.eval_batch_size, device)
                clean = clean_preds.get(method.name)
                metrics = case_metrics(
                    method, pred, case.targets, case.mask, support=support,
                    clamped=problem.clamped(pred.rec),
                    clean_uncertainty=None if clean is None else clean.uncertainty)
                if case.kind == "clean":
                    clean_preds[method.name] = pred
                else:
                    detection = image_detection(results[method.name]["clean"], metrics)
                    metrics["image_detection"] = detection
                    metrics["image_auroc"] = detection["mean"]["auroc"]
                results[method.name][name] = metrics
                if name in FIGURE_CASES and not method.control:
                    preds[method.name] = pred
                bar.update()
            if name in FIGURE_CASES:
                examples[name] = _example(case, preds)
    return results, examples


def _environment(device) -> dict:
    served = info()["ops"]
    side = "cuda" if device.type == "cuda" else "cpu"
    return {"inn_cuda": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": str(device), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "compiled_ops": sorted(op for op, by in served.items() if by[side] == "compiled"),
            "reference_ops": sorted(op for op, by in served.items() if by[side] != "compiled")}


def _load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ------------------------------------------------------------------------------------ study

def run_study(settings: Settings, out, *, progress: bool = True,
              overwrite: bool = False) -> StudyResult:
    """Run the whole study with ``settings`` and write the report folder ``out`` (``report.md``,
    ``metrics.json``, PNG figures, ``settings.json``, ``log.txt`` and the ``stages/`` that a
    rerun resumes from)."""
    settings.validate()
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        return _run_stages(settings, Path(out), progress, overwrite)
    finally:
        torch.set_num_threads(threads)


def _run_stages(settings: Settings, out: Path, progress: bool, overwrite: bool) -> StudyResult:
    s = settings
    device = torch.device(s.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StudyError(f"device {s.device!r}: CUDA is not available on this machine "
                         f"(torch {torch.__version__}); use --device cpu")
    _prepare_out(out, s, overwrite)
    journal = _Journal(out, progress)
    began = time.perf_counter()
    load_before = _load_average()
    journal(f"study: task {s.task}, preset {s.preset}, device {device}, out {out}")
    problem = make_problem(s)

    data_path = out / STAGES_DIR / DATA_FILE
    journal.resumed["data"] = data_path.exists()
    with journal.stage("data"):
        if data_path.exists():
            train, val, test = (Split(**fields) for fields in load_verified(data_path))
        else:
            train, val, test = problem.splits()
            _save(data_path, [vars(split) for split in (train, val, test)])
    with journal.stage("point network"):
        point, point_summary = _train_point(problem, train, val, s, out, device, progress,
                                            journal)
    with journal.stage("intervals"):
        inn, inn_summary = _fit_inn(problem, point, train, val, s, out, device, progress,
                                    journal)
    with journal.stage("probout"):
        probout, probout_summary = _fine_tune_probout(point, train, val, s, out, device,
                                                      progress, journal)
    cases_path = out / STAGES_DIR / CASES_FILE
    journal.resumed["failure cases"] = cases_path.exists()
    with journal.stage("failure cases"):
        if cases_path.exists():
            cases = _load_cases(cases_path)
        else:
            cases = _build_cases(problem, point, probout, test, s, device, progress)
            _save_cases(cases_path, cases)
    warnings_ = failure_cases.dropped_warnings(cases)
    for line in warnings_:
        journal(f"warning: {line}")
    kept_cases = {n: c for n, c in cases.items() if not c.info.get("dropped")}
    methods = [inn_method(inn), mc_dropout_method(point, s.mc_passes, _seed(s, 40)),
               probout_method(probout)]
    controls = control_methods(point)
    with journal.stage("evaluation"):
        results, examples = _evaluate(problem, methods + controls, kept_cases, s, device,
                                      progress)
        batch = test.inputs[:s.eval_batch_size].to(device)
        timing = {m.name: inference_time(m.predict, batch, s.timing_repeats) for m in methods}
        timing["point network"] = inference_time(point, batch, s.timing_repeats)
    with journal.stage("calibrated bands"):
        bands_ = bands.calibrated_bands(methods, problem, val, test, s, device)
    protocol = None
    if s.noise_retrain:
        with journal.stage("noise protocol"):
            protocol = noise_protocol.run_noise_protocol(problem, s, out, device, journal,
                                                         point)

    metrics = {
        "settings": s.as_dict(),
        "environment": {**_environment(device), "load_average_start": load_before},
        "training": {"point": point_summary, "intervals": inn_summary,
                     "probout": probout_summary},
        "cases": {name: {"kind": c.kind, "images": int(c.inputs.shape[0]),
                         **({"level": c.level} if c.level is not None else {}), **c.info}
                  for name, c in cases.items()},
        "controls": [c.name for c in controls],
        "results": results,
        "inference_time": timing,
        "bands": bands_,
        "noise_protocol": protocol,
        "warnings": warnings_,
    }
    with journal.stage("report"):
        files = figures.make_figures(out, examples, metrics, problem.spatial_dims,
                                     problem.noise_label)
        metrics["environment"]["load_average_end"] = _load_average()
        metrics["timings_s"] = {**journal.timings, "total": time.perf_counter() - began}
        metrics["resumed"] = dict(journal.resumed)
        files += report_failures.noise_protocol_figure(out, protocol, problem.noise_label)
        files += report.write_report(out, metrics, [f.name for f in files],
                                     noise_label=problem.noise_label)
        report_failures.append_sections(out / report.REPORT_FILE, metrics, problem.noise_label)
    journal(f"study finished in {time.perf_counter() - began:.1f} s; report: "
            f"{out / report.REPORT_FILE}")
    return StudyResult(out, metrics, files)
