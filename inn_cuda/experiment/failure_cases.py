"""The study's stages that make failures fail: the data-consistent adversarial case (a bounded
perturbation of the measurement, :func:`inn_cuda.failure.measurement_attack`, against the point
network or against PROBOUT's own mean) and the check that an artifact case is a failure of the
network at all (:func:`inn_cuda.failure.error_rise`).

Each returns the case's tensors and an ``info`` dict of plain numbers for the report; the study
wraps them into its ``Case`` records.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn
from tqdm import tqdm

from .. import failure
from ..baselines import split_probout
from .presets import Settings
from .problems import Problem, Split


class MeanOf(nn.Module):
    """PROBOUT's mean ``mu`` as a network of its own (the attack's target model)."""

    def __init__(self, probout: nn.Module):
        super().__init__()
        self.probout = probout

    def forward(self, x):
        return split_probout(self.probout(x))[0]


def measurement_adversarial(problem: Problem, model: nn.Module, test: Split, s: Settings, device,
                            seed: int, progress: bool = False
                            ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Dict[str, float]]:
    """``(inputs, targets, mask, info)`` of the data-consistent adversarial case: per batch of
    test images, the measurement (simulated as the data were, seeded), a perturbation within
    ``adv_bound_k`` x the norm of one draw of the reference noise, and the reconstruction's
    realised change as the mask."""
    level = problem.adversarial_noise()
    parts = []
    chunks = range(0, len(test), s.eval_batch_size)
    for i in tqdm(chunks, desc="adversarial search (measurement)", disable=not progress,
                  leave=False):
        truth = test.truth[i:i + s.eval_batch_size]
        measurement = problem.measurement(truth, test.inputs[i:i + s.eval_batch_size],
                                          seed + i).to(device)
        parts.append(failure.measurement_attack(
            model, measurement, problem.from_measurement,
            lambda rec: problem.adversarial_target(rec, seed=seed + 7 + i),
            noise_std=problem.noise_std(measurement, level), k=s.adv_bound_k,
            truth=test.targets[i:i + s.eval_batch_size].to(device),
            mask_fraction=s.adv_mask_fraction, optimizer=s.adv_optimizer,
            max_iter=s.adv_max_iter))
    cat = lambda get: torch.cat([get(p).detach().cpu() for p in parts])  # noqa: E731
    mask = cat(lambda p: p.mask)
    start, end = cat(lambda p: p.search.objective_start), cat(lambda p: p.search.objective_end)
    x_adv, x_clean = cat(lambda p: p.x_adv), cat(lambda p: p.x_clean)
    relative = (x_adv - x_clean).flatten(1).norm(dim=1) / \
        x_clean.flatten(1).norm(dim=1).clamp(min=1e-12)
    info = {"domain": "measurement", "noise_level": level, "bound_k": s.adv_bound_k,
            # the network input's change, as the image-domain attack reports it
            "relative_perturbation": float(relative.mean()),
            "noise_ratio": float(cat(lambda p: p.noise_ratio).mean()),
            "change_vs_clean_error": float(cat(lambda p: p.change_ratio).mean()),
            "realised_share": float(cat(lambda p: p.realised).mean()),
            "objective_reduction": float((end / start.clamp(min=1e-30)).mean()),
            "changed_fraction": float(mask.double().mean()),
            "intended_fraction": float(cat(lambda p: p.intended_mask).double().mean()),
            "iterations": round(sum(p.search.iterations for p in parts) / len(parts))}
    return x_adv.float(), test.targets, mask, info


@torch.no_grad()
def _predict(model: nn.Module, inputs: torch.Tensor, batch: int, device) -> torch.Tensor:
    model.eval()
    return torch.cat([model(inputs[i:i + batch].to(device)).cpu()
                      for i in range(0, inputs.shape[0], batch)])


def artifact_check(model: nn.Module, clean: Split, inputs: torch.Tensor, targets: torch.Tensor,
                   mask: torch.Tensor, s: Settings, device) -> Tuple[bool, Dict[str, float]]:
    """Is the artifact case a failure of the network? ``(keep, info)``: keep when the mean
    absolute error inside the footprint rises at least ``artifact_min_rise`` times over the
    clean image's error on the same footprint (mean of the per-image ratios)."""
    rise = failure.error_rise(_predict(model, inputs, s.eval_batch_size, device), targets,
                              _predict(model, clean.inputs, s.eval_batch_size, device),
                              clean.targets, mask)
    ratio = float(rise.ratio.mean())
    info = {"artifact_kind": s.artifact_kind, "error_rise": ratio,
            "footprint_error": float(rise.artifact_error.mean()),
            "clean_footprint_error": float(rise.clean_error.mean()),
            "images_with_rise": float((rise.ratio >= s.artifact_min_rise).double().mean()),
            "min_rise": s.artifact_min_rise}
    return ratio >= s.artifact_min_rise, info


def dropped_warnings(cases) -> list:
    """One sentence per case that the study dropped as no failure of the network."""
    out = []
    for name, case in cases.items():
        info = case.info
        if info.get("dropped"):
            rise = info.get("error_rise", float("nan"))
            out.append(f"the {name} case ({info.get('artifact_kind')}) was dropped: the "
                       f"network's error inside the footprint rose only x{rise:.2f} over the "
                       f"clean image's (needed x{info.get('min_rise')}), so it is no failure "
                       f"for an uncertainty method to flag")
    return out
