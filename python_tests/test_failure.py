"""Failure-mode generators: noise, adversarial targets and search, atypical artifacts."""

import numpy as np
import pytest
import torch

from helpers import ALL_DEVICES
from inn_cuda.failure import (add_noise, adversarial_examples, adversarial_search,
                              adversarial_target, bird_silhouette, disk_mask, insert_artifact,
                              load_shape, noise_sweep, square_mask)
from inn_cuda.tasks.ct import LimitedAngleCT, disc_mask
from inn_cuda.tasks.data import CTPhantomDataset
from inn_cuda.tasks.models import UNet


def _disc_image(size=64, value=1.0):
    return (disc_mask(size).to(torch.float32) * value)[None, None]


def test_noise_levels():
    x = torch.zeros(4, 1, 32, 32)
    sweep = noise_sweep(x, [0.0, 0.1, 0.3], seed=5)
    assert [s for s, _ in sweep] == [0.0, 0.1, 0.3]
    assert torch.equal(sweep[0][1], x)
    for sigma, noisy in sweep[1:]:
        assert abs(float(noisy.std()) - sigma) < 0.03 * sigma
    again = noise_sweep(x, [0.0, 0.1], seed=5)
    torch.testing.assert_close(again[1][1], sweep[1][1])
    with pytest.raises(ValueError, match="sigma"):
        add_noise(x, -1.0)


@pytest.mark.parametrize("shape", ["square", "disk"])
def test_adversarial_target_blob_mask_and_clip(shape):
    rec = _disc_image(64).repeat(3, 1, 1, 1)  # mean pi/4: fill 1.18 > 1, so the blob clips
    res = adversarial_target(rec, shape=shape, seed=3)
    assert res.target.shape == rec.shape and res.mask.shape == (3, 1, 64, 64)
    extent = 50 * 64 / 512 if shape == "square" else 20 * 64 / 512
    for i, (row, col) in enumerate(res.centers):
        assert bool(disc_mask(64)[row, col])
        mask = res.mask[i, 0]
        # the changed region: the footprint, widened by the blur (sigma 0.5 px at 64: 2 px halo)
        grown = square_mask(64, 64, (row, col), extent + 4) if shape == "square" else \
            disk_mask(64, 64, (row, col), extent + 2)
        core = square_mask(64, 64, (row, col), extent - 2) if shape == "square" else \
            disk_mask(64, 64, (row, col), extent - 1)
        assert bool(mask[core].all()) and not bool(mask[~grown].any())
        torch.testing.assert_close(res.target[i, 0][~mask], rec[i, 0][~mask], rtol=0, atol=0.012)
        assert float(res.target[i, 0][core].max()) == 0.0  # clipped to min(rec) = 0
    assert float(res.target.min()) >= 0.0
    again = adversarial_target(rec, shape=shape, seed=3)
    assert again.centers == res.centers and torch.equal(again.target, res.target)
    assert adversarial_target(rec, shape=shape, seed=4).centers != res.centers


def test_adversarial_target_leaves_existing_negatives():
    rec = _disc_image(32, 0.2) - 0.05  # negative outside the disc
    res = adversarial_target(rec, shape="disk", seed=0, extent=3.0)
    torch.testing.assert_close(res.target[~res.mask], rec[~res.mask], rtol=0, atol=0.01)
    with pytest.raises(ValueError, match="shape"):
        adversarial_target(rec, shape="star")
    with pytest.raises(ValueError, match="rec"):
        adversarial_target(rec[0])


def _ct_batch(size=32, count=2):
    return CTPhantomDataset(count, LimitedAngleCT(size), seed=11).tensors()


@pytest.mark.slow
@pytest.mark.parametrize("device", ALL_DEVICES)
def test_adversarial_search_lowers_objective_and_changes_mostly_the_mask(device):
    torch.manual_seed(0)
    x, _ = _ct_batch()
    x = x.to(device)
    model = UNet(width=4, depth=2).to(device)
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    res = adversarial_examples(model, x, shape="square", seed=1, max_iter=30)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert bool((res.objective_end < 0.1 * res.objective_start).all())
    assert res.iterations >= 1 and res.evaluations >= res.iterations
    model.eval()
    with torch.no_grad():
        change = (model(res.x_adv) - model(x)).abs()
    inside, outside = change[res.mask].mean(), change[~res.mask].mean()
    assert float(inside) > 10 * float(outside)
    torch.testing.assert_close(res.perturbation_norm, (res.x_adv - x).flatten(1).norm(dim=1))


def test_adversarial_search_adam_and_norm_bounds():
    torch.manual_seed(0)
    x, _ = _ct_batch()
    model = UNet(width=4, depth=2).eval()
    with torch.no_grad():
        target = adversarial_target(model(x), seed=2)
    free = adversarial_search(model, x, target.target, mask=target.mask, optimizer="adam",
                              max_iter=12, lr=0.02)
    assert bool((free.objective_end < free.objective_start).all()) and free.iterations == 12
    assert torch.equal(free.mask, target.mask)
    l2 = adversarial_search(model, x, target.target, max_iter=6, bound=0.3, norm="l2")
    assert float(l2.perturbation_norm.max()) <= 0.3 + 1e-5
    assert bool((l2.objective_end < l2.objective_start).all())
    linf = adversarial_search(model, x, target.target, optimizer="adam", max_iter=10, lr=0.01,
                              bound=0.01, norm="linf")
    assert float((linf.x_adv - x).abs().max()) <= 0.01 + 1e-7
    for bad, match in [({"optimizer": "sgd"}, "optimizer"), ({"norm": "l1"}, "norm"),
                       ({"bound": 0.0}, "bound"), ({"max_iter": 0}, "max_iter")]:
        with pytest.raises(ValueError, match=match):
            adversarial_search(model, x, target.target, **bad)


def test_bird_silhouette_is_seeded_and_bird_sized():
    birds = [bird_silhouette(64, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(birds[0], birds[1]) and not torch.equal(birds[0], birds[2])
    for bird in birds:
        assert bird.dtype == torch.bool and bird.shape == (64, 64)
        assert 0.1 < float(bird.float().mean()) < 0.45
        rows, cols = torch.nonzero(bird, as_tuple=True)
        assert int(rows.min()) > 0 and int(cols.min()) > 0  # fits in the canvas
        assert int(rows.max()) < 63 and int(cols.max()) < 63


def test_insert_artifact_is_seeded_and_masks_are_exact():
    ct = LimitedAngleCT(32)
    _, gt = _ct_batch(32, 3)
    case = insert_artifact(gt, ct.simulate, seed=4)
    assert case.input.shape == gt.shape and case.mask.shape == (3, 1, 32, 32)
    fill = gt.mean(dim=(1, 2, 3))
    for i in range(3):
        mask = case.mask[i, 0]
        assert int(mask.sum()) > 10
        assert not bool((mask & ~disc_mask(32)).any())
        assert bool((case.ground_truth[i, 0][mask] == fill[i]).all())
        assert torch.equal(case.ground_truth[i, 0][~mask], gt[i, 0][~mask])
    torch.testing.assert_close(case.input, ct.simulate(case.ground_truth))
    again = insert_artifact(gt, ct.simulate, seed=4)
    assert torch.equal(again.mask, case.mask) and torch.equal(again.input, case.input)
    other = insert_artifact(gt, ct.simulate, seed=5)
    assert not torch.equal(other.mask, case.mask)


def test_insert_artifact_from_user_png_and_tensor(tmp_path):
    from PIL import Image
    picture = np.full((40, 40), 255, np.uint8)
    picture[10:30, 10:30] = 0  # a dark square on white
    Image.fromarray(picture).save(tmp_path / "shape.png")
    shape = load_shape(tmp_path / "shape.png", 20)
    assert int(shape.sum()) == 100 and bool(shape[5:15, 5:15].all())
    _, gt = _ct_batch(32, 2)
    case = insert_artifact(gt, lambda im: im * 2, shape=tmp_path / "shape.png", scale=0.5, seed=0)
    assert [int(m.sum()) for m in case.mask] == [64, 64]  # the square: 8 x 8 of a 16 px canvas
    torch.testing.assert_close(case.input, 2 * case.ground_truth)
    square = torch.ones(4, 4, dtype=torch.bool)
    assert int(insert_artifact(gt, lambda im: im, shape=square, scale=0.25).mask[0].sum()) == 64
    with pytest.raises(ValueError, match="scale"):
        insert_artifact(gt, lambda im: im, scale=0.0)
    with pytest.raises(ValueError, match="empty"):
        insert_artifact(gt, lambda im: im, shape=torch.zeros(4, 4, dtype=torch.bool))
