"""The settings of a study and the named presets.

One flat :class:`Settings` record holds every knob (the report prints it whole); the presets are
sets of overrides per task:

* ``default``: a 2-core CPU finishes the whole study in minutes, with numbers that mean something
  (the point network learns the task, the intervals are calibrated to a coverage); for CT its
  dropout rate is 0.2, not the paper's 0.7 (:data:`CT_DEFAULT_DROPOUT_NOTE` says why);
* ``paper``: the published settings (docs/method.md section 5.1): 512 x 512 images, the full U-Net
  (width 64, depth 4, dropout 0.7), 400 epochs; for a GPU;
* ``tiny``: seconds, for tests (numbers are not meaningful).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import torch

from ..tasks.phantoms import PHANTOM_KINDS

TASKS = ("ct", "deconv1d")
PRESETS = ("default", "paper", "tiny")
METHODS = ("INN", "MCDROP", "PROBOUT")

# The paper's MC-dropout rate per task, in the units of ``Settings.dropout`` (CT: the U-Net's
# rate, on the decoder's concatenations of its Keras layout; 1D: the scale of its rates 0.2,
# 0.5, 0.5). Its T is :data:`inn_cuda.baselines.PAPER_PASSES`.
PAPER_DROPOUT = {"ct": 0.7, "deconv1d": 1.0}
# Why the CT default keeps 0.2 (the report and README say so): measured 2026-12-03, `inn-cuda
# demo --set dropout=0.7`, seeds 0-2, 2 cores of an Intel Xeon. With the default's width-8
# U-Net, 30 epochs and dropout after every down- and upsampling, p = 0.7 left the point network's
# clean-test RMSE on the object at 0.056 / 0.154 / 0.085 against 0.043 / 0.041 / 0.052 at 0.2
# (seed 1's validation error rose from epoch 9 on); the paper's layout at width 8
# (`--set upsampling=paper`, seed 0) reached 0.093. A study of uncertainty around a point
# network that has not learnt the task compares little, so the CPU default keeps 0.2.
CT_DEFAULT_DROPOUT_NOTE = (
    "on the CPU default's width-8 U-Net (30 epochs) p = 0.7 left the point network's clean-test "
    "RMSE 1.3-3.8x that at 0.2 (seeds 0-2; the figures: docs/method.md, 'Fair baselines'); the "
    "paper's rate and layout: `--set dropout=0.7 --set upsampling=paper`, or the `paper` preset")


@dataclass(frozen=True)
class Settings:
    """Every setting of a study. ``size`` is the CT image side or the 1D signal length."""

    task: str = "ct"
    preset: str = "default"
    seed: int = 0
    # the first GPU when one is visible: the paper preset is meant for one
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    # CPU threads of torch (None: torch's default). The CPU presets use 1: the numbers are then
    # bit-identical on every machine, and small convolutions on a CPU shared with other jobs run
    # several times faster on one thread than on oversubscribed ones
    threads: Optional[int] = 1
    # data
    size: int = 64
    n_train: int = 512
    n_val: int = 64
    n_test: int = 32
    phantom: str = "mixed"  # CT phantom family (inn_cuda.tasks.phantoms)
    missing_wedge: float = 30.0  # CT: degrees of unmeasured angles
    blur_sigma: float = 4.0  # 1D: std of the Gaussian blur, in samples
    train_noise: float = 0.0  # CT: sinogram noise (x peak); 1D: noise std on input and target
    # point network (U-Net for CT, ConvNet1d for 1D)
    width: int = 8
    depth: int = 3  # U-Net levels (CT only)
    # U-Net decoder (CT only): "transpose" (ConvTranspose2d, dropout after every down- and
    # upsampling), "nearest" or "paper" (the paper's Keras layout: nearest + 2x2 conv, dropout
    # on the concatenation only; see inn_cuda.tasks.models.UNet)
    upsampling: str = "transpose"
    # residual: the network adds its input to its output. Off by default (Ronneberger's U-Net,
    # as in the paper): an identity path carries input changes to the output past every weight,
    # so no weight-based uncertainty (intervals, dropout) can see them
    residual: bool = False
    batchnorm: bool = False  # U-Net: BatchNorm after each convolution (CT only)
    nonneg_output: bool = True  # CT: reconstructions clamped at 0 (attenuation is >= 0)
    # U-Net rate (CT; the paper: 0.7, see PAPER_DROPOUT and CT_DEFAULT_DROPOUT_NOTE for why
    # the CPU default keeps 0.2); 1D: scale of the paper's rates (0.2, 0.5, 0.5)
    dropout: float = 0.2
    epochs: int = 30
    lr: float = 2e-3
    batch_size: int = 16
    # INN: intervals in the last `inn_last` parametrised layers (None: all)
    inn_last: Optional[int] = 6
    inn_epochs: int = 8
    inn_lr: float = 1e-3
    inn_batch_size: int = 16
    inn_train_images: Optional[int] = None  # fit the offsets on the first n training items
    inn_beta: Union[float, str] = "adaptive"  # start value (or the fixed value, without target)
    inn_target_coverage: Optional[float] = 0.9  # None: no calibration
    inn_calibration_factor: float = 2.0  # beta's first calibration step (x or /)
    inn_fit_dropout: bool = False  # dropout active while fitting the offsets (the paper: on)
    # probabilistic output: fine-tune all parameters (the paper; the default) or only the new
    # log-variance head (the reconstruction stays the point network's); the head's bias starts at
    # `probout_bias_init`, None = log(point validation MSE / 3), the loss's optimum for a
    # constant variance (the paper: -3)
    probout_epochs: int = 6
    # all parameters: a quarter of the point network's rate (1e-2, right for the head alone,
    # collapses the whole network to a constant output)
    probout_lr: float = 5e-4
    probout_params: str = "all"
    probout_bias_init: Optional[float] = None
    # MC dropout: T passes of the point network with its training dropout (the paper's T: CT 16,
    # 1D 50; inn_cuda.baselines.PAPER_PASSES)
    mc_passes: int = 16
    # calibrated bands: every method's band scaled on `calibration_images` validation images to
    # this coverage (support-restricted when the task defines a support), then compared by
    # width and interval score
    interval_coverage: float = 0.9
    calibration_images: int = 64
    # failure modes
    noise_levels: Tuple[float, ...] = (0.005, 0.01, 0.02, 0.04)  # CT: sinogram noise x peak
    adv_shape: str = "square"
    adv_optimizer: str = "lbfgs"
    adv_max_iter: int = 40
    # "measurement": perturb the measurement (CT sinogram, 1D blurred signal) within
    # ||delta||_2 <= adv_bound_k * noise std * sqrt(n); "image": the paper's attack on the
    # network input, bounded by adv_bound (None: unbounded)
    adv_domain: str = "measurement"
    adv_bound_k: float = 1.0
    # the noise std the bound refers to (CT: x the sinogram's peak); None: train_noise when
    # > 0, else the smallest of noise_levels
    adv_noise: Optional[float] = None
    adv_mask_fraction: float = 0.1  # mask: |realised change| > this x the intended depth
    adv_bound: Optional[float] = None  # image-domain L2 radius per image; None: unbounded
    adv_against_probout: bool = True  # also craft the attack against PROBOUT's own mean
    # CT: bright | metal | textured | mean (the paper's bird at the mean intensity);
    # 1D: spike | ramp | oscillation
    artifact_kind: str = "bright"
    artifact_scale: float = 0.4  # artifact bounding box / image side (1D: segment / length x 4)
    # an artifact case whose footprint error rises less than this (x the clean footprint error)
    # is no failure of the network: it is dropped, with a warning in the report
    artifact_min_rise: float = 1.5
    # noise protocol of the paper: per noise level retrain the point network and the INN with
    # that noise (1D: on input and target; CT: on the sinogram) on `retrain_images` training
    # images for `retrain_epochs` (+ `retrain_inn_epochs`), `retrain_seeds` seeds each, at
    # `retrain_levels` (empty: noise_levels); `retrain_from` "scratch" (the paper) or "study"
    # (warm start from the study's point network: the CPU budget's shortcut)
    noise_retrain: bool = False
    retrain_levels: Tuple[float, ...] = ()
    retrain_from: str = "scratch"
    retrain_images: int = 256
    retrain_epochs: int = 10
    retrain_inn_epochs: int = 4
    retrain_seeds: int = 2
    # evaluation
    eval_batch_size: int = 16
    timing_repeats: int = 3

    def validate(self) -> "Settings":
        """Raise ``ValueError`` naming the first setting that cannot work; return self."""
        def need(ok: bool, name: str, expected: str):
            if not ok:
                raise ValueError(f"{name}: expected {expected}, got {getattr(self, name)!r}")

        need(self.task in TASKS, "task", f"one of {TASKS}")
        need(self.preset in PRESETS, "preset", f"one of {PRESETS}")
        need(_device_usable(self.device), "device", "cpu or cuda[:index]")
        need(self.phantom in PHANTOM_KINDS, "phantom", f"one of {PHANTOM_KINDS}")
        need(isinstance(self.seed, int) and self.seed >= 0, "seed", "an int >= 0")
        need(self.blur_sigma > 0, "blur_sigma", "a positive blur width")
        for name in ("n_train", "n_val", "n_test", "width", "depth", "batch_size",
                     "inn_batch_size", "mc_passes", "adv_max_iter", "eval_batch_size",
                     "timing_repeats"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name,
                 "an int >= 1")
        need(self.threads is None or (isinstance(self.threads, int) and self.threads >= 1),
             "threads", "None or an int >= 1")
        need(self.n_test >= 2, "n_test", "at least 2 images (image-level AUROC)")
        need(self.mc_passes >= 2, "mc_passes", "at least 2 passes (a standard deviation)")
        for name in ("epochs", "inn_epochs", "probout_epochs"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name,
                 "an int >= 0")
        for name in ("lr", "inn_lr", "probout_lr"):
            need(getattr(self, name) > 0, name, "a positive learning rate")
        if self.task == "ct":
            need(isinstance(self.size, int) and self.size >= 16 and
                 self.size % 2 ** self.depth == 0, "size",
                 f"an image side >= 16 divisible by 2**depth = {2 ** self.depth}")
            need(0 <= self.missing_wedge < 180, "missing_wedge", "degrees in [0, 180)")
        else:
            need(isinstance(self.size, int) and self.size >= 64, "size",
                 "a signal length >= 64")
        top = 1.0 if self.task == "ct" else 2.0  # 1D: a scale of the paper's rates (<= 0.5)
        need(0 < self.dropout < top, "dropout",
             f"a value in (0, {top:g}) (MC dropout needs dropout)")
        need(self.train_noise >= 0, "train_noise", ">= 0")
        need(self.inn_last is None or self.inn_last >= 1, "inn_last", "None or an int >= 1")
        need(self.inn_train_images is None or self.inn_train_images >= 1, "inn_train_images",
             "None or an int >= 1")
        need(self.inn_beta == "adaptive" or (isinstance(self.inn_beta, (int, float)) and
                                             self.inn_beta > 0), "inn_beta",
             "'adaptive' or a positive number")
        need(self.inn_target_coverage is None or 0 < self.inn_target_coverage < 1,
             "inn_target_coverage", "None or a fraction in (0, 1)")
        need(self.inn_calibration_factor > 1, "inn_calibration_factor", "a factor > 1")
        need(self.probout_params in ("all", "head"), "probout_params", "'all' or 'head'")
        need(self.upsampling in ("transpose", "nearest", "paper"), "upsampling",
             "'transpose', 'nearest' or 'paper'")
        need(0 < self.interval_coverage < 1, "interval_coverage", "a fraction in (0, 1)")
        need(isinstance(self.calibration_images, int) and self.calibration_images >= 1,
             "calibration_images", "an int >= 1")
        need(self.adv_domain in ("measurement", "image"), "adv_domain",
             "'measurement' or 'image'")
        need(self.adv_bound_k > 0, "adv_bound_k", "> 0")
        need(self.adv_noise is None or self.adv_noise > 0, "adv_noise", "None or > 0")
        need(0 < self.adv_mask_fraction < 1, "adv_mask_fraction", "a fraction in (0, 1)")
        kinds = ("bright", "metal", "textured", "mean") if self.task == "ct" else \
            ("spike", "ramp", "oscillation")
        need(self.artifact_kind in kinds, "artifact_kind", f"one of {kinds} for {self.task}")
        need(self.artifact_min_rise >= 0, "artifact_min_rise", ">= 0")
        need(self.retrain_from in ("scratch", "study"), "retrain_from", "'scratch' or 'study'")
        need(all(v > 0 for v in self.retrain_levels) and
             list(self.retrain_levels) == sorted(self.retrain_levels), "retrain_levels",
             "increasing positive levels (empty: noise_levels)")
        for name in ("retrain_images", "retrain_epochs", "retrain_inn_epochs", "retrain_seeds"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name,
                 "an int >= 1")
        need(len(self.noise_levels) >= 1 and all(s > 0 for s in self.noise_levels) and
             list(self.noise_levels) == sorted(self.noise_levels), "noise_levels",
             "one or more increasing positive levels")
        need(self.adv_shape in ("square", "disk"), "adv_shape", "'square' or 'disk'")
        need(self.adv_optimizer in ("lbfgs", "adam"), "adv_optimizer", "'lbfgs' or 'adam'")
        need(self.adv_bound is None or self.adv_bound > 0, "adv_bound", "None or > 0")
        need(0 < self.artifact_scale <= 1, "artifact_scale", "a fraction in (0, 1]")
        return self

    def as_dict(self) -> Dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


# Overrides of the defaults above, per (task, preset).
_PRESETS: Dict[Tuple[str, str], Dict[str, Any]] = {
    # dropout 0.2 (the Settings default), not the paper's 0.7: CT_DEFAULT_DROPOUT_NOTE
    ("ct", "default"): {},
    # nonneg_output off: a network trained for seconds may still clamp to all zero
    ("ct", "tiny"): dict(nonneg_output=False, size=16, n_train=16, n_val=8, n_test=4, width=2, depth=2, epochs=1,
                         batch_size=8, inn_last=3, inn_epochs=1, inn_batch_size=8,
                         probout_epochs=1, mc_passes=3, noise_levels=(0.01, 0.04),
                         adv_max_iter=3, eval_batch_size=4, timing_repeats=1,
                         calibration_images=8, retrain_images=8, retrain_epochs=1,
                         retrain_inn_epochs=1, retrain_seeds=1),
    # docs/method.md section 5.1: AAPM-sized data (2580 slices split 8/1/1; phantoms here, or a user's
    # folder), the paper's U-Net layout (nearest + 2x2 conv, dropout 0.7 on the concatenations)
    # width 64 depth 4, 400 epochs lr 7.5e-5 batch 12; INN 15 epochs lr 1e-6 beta 1e-4 batch 6
    # in the last 12 Keras layers = the last 7 parametrised layers (PAPER_INN_LAST); MC dropout
    # T = 16; PROBOUT 400 more epochs lr 1e-7 on all parameters; L-BFGS adversarial search;
    # the noise protocol (retraining per noise level).
    ("ct", "paper"): dict(threads=None, size=512, n_train=2064, n_val=258, n_test=258, width=64, depth=4,
                          upsampling="paper", noise_retrain=True, retrain_images=2064,
                          retrain_epochs=100, retrain_inn_epochs=15, retrain_seeds=3,
                          dropout=PAPER_DROPOUT["ct"], epochs=400, lr=7.5e-5, batch_size=12,
                          inn_last=7,
                          inn_epochs=15, inn_lr=1e-6, inn_batch_size=6, inn_beta=1e-4,
                          inn_target_coverage=None, probout_epochs=400, probout_lr=1e-7,
                          probout_params="all", probout_bias_init=-3.0, mc_passes=16,
                          adv_max_iter=200, eval_batch_size=6),
    # the paper's dropout rates (0.2, 0.5, 0.5: dropout scale 1) and noise protocol (retraining
    # per level, noise on input and target)
    ("deconv1d", "default"): dict(size=512, n_train=800, n_val=200, n_test=64, width=4,
                                  dropout=PAPER_DROPOUT["deconv1d"], train_noise=0.02, epochs=30,
                                  batch_size=32,
                                  inn_last=4, inn_batch_size=32, mc_passes=50,
                                  noise_levels=(0.05, 0.08, 0.11, 0.14), eval_batch_size=64,
                                  artifact_kind="spike", noise_retrain=True,
                                  retrain_levels=(0.02, 0.08, 0.14), retrain_from="study",
                                  retrain_images=192, retrain_epochs=5, retrain_inn_epochs=3),
    ("deconv1d", "tiny"): dict(size=64, n_train=32, n_val=8, n_test=4, width=2, epochs=1,
                               batch_size=16, train_noise=0.02, inn_last=2, inn_epochs=1,
                               inn_batch_size=16, probout_epochs=1, mc_passes=3,
                               noise_levels=(0.05, 0.14), adv_max_iter=3, eval_batch_size=4,
                               timing_repeats=1, artifact_kind="spike", calibration_images=8,
                               noise_retrain=True, retrain_images=8, retrain_epochs=1,
                               retrain_inn_epochs=1, retrain_seeds=1),
    # the paper's 1D study: 1600 / 200 signals of length 512, width-16 network, 50 MC passes
    ("deconv1d", "paper"): dict(threads=None, size=512, n_train=1600, n_val=200, n_test=200, width=16,
                                dropout=PAPER_DROPOUT["deconv1d"], train_noise=0.05, epochs=200,
                                batch_size=32,
                                inn_last=None, inn_epochs=20, inn_batch_size=32, inn_beta=0.005,
                                inn_target_coverage=None, probout_epochs=200,
                                probout_lr=1e-4, probout_params="all", probout_bias_init=-3.0,
                                mc_passes=50, artifact_kind="spike", noise_retrain=True,
                                retrain_images=1600, retrain_epochs=200, retrain_inn_epochs=20,
                                retrain_seeds=3,
                                noise_levels=(0.02, 0.05, 0.08, 0.11, 0.14), adv_max_iter=200,
                                eval_batch_size=100),
}


def _device_usable(text) -> bool:
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        return False
    return device.type in ("cpu", "cuda")  # a missing GPU is the study's own error


def make_settings(task: str = "ct", preset: str = "default", **overrides) -> Settings:
    """The preset's settings with ``overrides`` (field name -> value) applied, validated."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {PRESETS}, got {preset!r}")
    names = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(names)}")
    values = {**_PRESETS[(task, preset)], **overrides, "task": task, "preset": preset}
    for name in ("noise_levels", "retrain_levels"):
        if name in values:
            values[name] = tuple(float(v) for v in values[name])
    return Settings(**values).validate()


# ------------------------------------------------------------------ parsing "name=value" strings

def _parse_scalar(kind: str, text: str):
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(text)
        return lowered in ("true", "1", "yes")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def parse_value(name: str, text: str):
    """The typed value of setting ``name`` from its text (``none`` for an optional setting,
    comma-separated numbers for a tuple)."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if name not in fields:
        raise ValueError(f"unknown setting {name!r}; known: {sorted(fields)}")
    annotation = str(fields[name].type)
    lowered = text.strip().lower()
    try:
        if annotation.startswith("Optional[") and lowered in ("none", "null", ""):
            return None
        if annotation.startswith("Tuple["):
            return tuple(float(v) for v in text.split(",") if v.strip())
        if annotation == "Union[float, str]":
            try:
                return float(text)
            except ValueError:
                return text
        kind = annotation.removeprefix("Optional[").removesuffix("]")
        value = _parse_scalar(kind, text)
    except ValueError:
        raise ValueError(f"{name}: cannot read {text!r} as {annotation}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {text!r}")
    return value


def parse_assignments(items) -> Dict[str, Any]:
    """``["name=value", ...]`` -> ``{name: typed value}``."""
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set: expected NAME=VALUE, got {item!r}")
        if name.strip() in ("task", "preset"):
            raise ValueError(f"--set {item}: the {name.strip()} is chosen with "
                             f"--{name.strip()}, not --set")
        out[name.strip()] = parse_value(name.strip(), text)
    return out
