"""The tile configurations of the CUDA tile kernel (csrc/kernels/tile_config.cuh) and the launch
plan's choice among them (tile_runner.cuh: choose_tile), in the CPU emulation of the CUDA kernels
(cuda_emulation/): every configuration, forced on every op, is exact against the brute-force
float64 oracle (bound_oracle.py) on integer operands with exact zeros and infinite bounds, with
and without depth splits; and representative layers get the configuration the rule documents.
Not a GPU run: the emulation checks the kernels' logic, not their speed."""

import pytest
import torch

from bound_oracle import check, conv_terms, linear_terms, with_infinities
from cuda_emulation import emulated_ops

# One xdist group: every test here loads the same emulation build (built once, minutes), so
# `pytest -n N --dist loadgroup` runs them on one worker while the others take the rest.
pytestmark = [
    pytest.mark.skipif(emulated_ops.compiler() is None,
                       reason="g++ not found: the CUDA kernel emulation needs a C++20 "
                               "host compiler"),
    pytest.mark.xdist_group("cuda_emulation"),
]

# tile_config.cuh's configurations in Tile order: (rows, cols, depth step).
SQUARE, FEW_ROWS, FEW_COLS, SHALLOW = (64, 64, 16), (16, 128, 16), (128, 16, 16), (16, 128, 8)
TILES = [SQUARE, FEW_ROWS, FEW_COLS, SHALLOW]
TILE_PARAMS = [pytest.param(i, id="x".join(map(str, dims))) for i, dims in enumerate(TILES)]

# (op, x shape, w shape, config after the bias). Per op the three problems (forward, input
# gradient, weight gradient) have other (rows, cols, depth); between them the cases put partial
# tiles and several tiles in both dims of every configuration, depths of 1 to 162 (one partial
# step up to several steps of 8 and 16), 1-channel inputs and heads, groups, stride, padding,
# dilation and stride phases of conv_transpose2d without pixels or without taps.
CASES = [
    # rows 130 (> 128), cols 3, depth 20 / rows 130, cols 20, depth 3 / rows 3, cols 20, depth 130
    ("linear", (130, 20), (3, 20), ()),
    # rows 20, cols 140 (> 128), depth 12 / depth 140 / rows 140, cols 12, depth 20
    ("linear", (20, 12), (140, 12), ()),
    # a 1-channel input, 3x3: 8 rows, 162 columns, 9 terms / 1 row, 72 terms / 8 x 9, 162 terms
    ("conv2d", (2, 1, 9, 9), (8, 1, 3, 3), ((1, 1), (1, 1), (1, 1), 1)),
    # a 1x1 head over 8 channels: 1 row, 8 terms / 8 rows, 1 term / 1 x 8, 70 terms
    ("conv2d", (2, 8, 5, 7), (1, 8, 1, 1), ((1, 1), (0, 0), (1, 1), 1)),
    ("conv2d", (2, 6, 10, 9), (20, 3, 3, 2), ((2, 1), (1, 0), (1, 2), 2)),  # groups, all args
    ("conv2d", (1, 2, 9, 9), (70, 2, 1, 1), ((1, 1), (0, 0), (1, 1), 1)),  # 70 rows
    ("conv2d", (2, 2, 1, 7), (3, 2, 1, 3), ((2, 2), (0, 1), (1, 2), 1)),  # a phase without pixels
    # a U-Net upsampling (2x2, stride 2: one tap per phase)
    ("conv_transpose2d", (2, 16, 3, 4), (16, 8, 2, 2), ((2, 2), (0, 0), (0, 0), 1, (1, 1))),
    ("conv_transpose2d", (1, 4, 3, 4), (4, 3, 3, 2), ((2, 2), (1, 0), (1, 1), 2, (1, 1))),
    # stride phases without taps
    ("conv_transpose2d", (2, 2, 3, 4), (2, 3, 3, 3), ((2, 2), (1, 2), (1, 0), 1, (2, 2))),
]
CASE_PARAMS = [pytest.param(*case, id=f"{case[0]}-{i}") for i, case in enumerate(CASES)]
PLANS = [pytest.param((132, 512), id="one-slice"), pytest.param((64, 16), id="split-depth")]
MODES = [pytest.param(False, id="general"), pytest.param(True, id="nonneg")]


@pytest.fixture(scope="module")
def kernels():
    return emulated_ops.EmulatedKernels(emulated_ops.build())


def test_the_configurations_are_the_tested_ones(kernels):
    """A configuration added to tile_config.cuh fails here until the tests below run it."""
    assert kernels.tile_configs() == TILES


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("tile", TILE_PARAMS)
@pytest.mark.parametrize("op,x_shape,w_shape,config", CASE_PARAMS)
def test_every_tile_exact(kernels, op, x_shape, w_shape, config, tile, nonneg, plan):
    terms = (linear_terms(x_shape[0], w_shape[0], x_shape[1]) if op == "linear"
             else conv_terms(op, x_shape, w_shape, config))
    operands = with_infinities(x_shape, w_shape, terms[3], nonneg=nonneg, dtype=torch.float64,
                               seed=sum(x_shape) + sum(w_shape), share=0.05)
    emulated = kernels.with_plan(*plan).with_tile(tile)
    check(emulated, "interval_" + op, terms, list(config), operands, nonneg,
          convention_matters=False)
    assert emulated.last_tile() == TILES[tile]


@pytest.mark.parametrize("rows,cols,depth,expected", [
    # the U-Net of the demo (width 8; batch 16 of 64 x 64 images): conv2d 1 -> 8, 3x3
    (8, 16 * 64 * 64, 9, FEW_ROWS),  # forward: 8 output channels, 9 terms
    (1, 16 * 64 * 64, 72, FEW_ROWS),  # input gradient: 1 input channel
    (8, 9, 16 * 64 * 64, FEW_ROWS),  # weight gradient: 8 x 9 weights, both small
    (1, 16 * 64 * 64, 8, SHALLOW),  # the 1x1 head 8 -> 1: 1 row, 8 terms
    (8, 16 * 64 * 64, 1, SHALLOW),  # its input gradient: 1 term
    (32, 16 * 16 * 16, 288, FEW_ROWS),  # 32 -> 32, 3x3: the threshold's last few-row layer
    (33, 16 * 16 * 16, 288, SQUARE),
    (64, 16 * 8 * 8, 576, SQUARE),  # 64 channels
    (32, 16 * 16 * 16, 9, FEW_ROWS),  # 9 terms: one 16-deep step beats two 8-deep ones
    # linear layers (rows: batch, cols: outputs, depth: inputs)
    (256, 10, 784, FEW_COLS),  # a 10-class head
    (256, 784, 10, SQUARE),  # its input gradient
    (10, 784, 256, FEW_ROWS),  # its weight gradient
    (1024, 1024, 1024, SQUARE),
    (256, 32, 4, FEW_COLS),  # short reductions over many rows keep 16-deep steps
    (20, 10, 100, FEW_COLS),  # both small: tiles along the larger
])
def test_choose_tile(kernels, rows, cols, depth, expected):
    assert kernels.chosen_tile(rows, cols, depth) == expected


def test_launchers_use_the_chosen_tile(kernels):
    """The ops' problems reach choose_tile with their own (rows, cols, depth): a 1x1 head, its
    input gradient (a big-image output of one term per stride phase) and a 3x3 layer."""
    operands = with_infinities((2, 8, 6, 5), (1, 8, 1, 1), (2, 1, 6, 5), nonneg=True,
                               dtype=torch.float32, seed=0, share=0.0)
    x_lo, x_hi, w_lo, w_hi, g_lo, g_hi = operands
    cfg = ((1, 1), (0, 0), (1, 1), 1)
    kernels.interval_conv2d(x_lo, x_hi, w_lo, w_hi, None, None, *cfg, True)
    assert kernels.last_tile() == SHALLOW  # 1 row, 8 terms
    kernels.interval_conv2d_backward_input(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *cfg, True)
    assert kernels.last_tile() == SHALLOW  # 8 rows, 1 term
    kernels.interval_conv2d_backward_weight(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *cfg, True)
    assert kernels.last_tile() == FEW_ROWS  # 1 x 8 weights, 60 terms
    w = torch.zeros(40, 8, 3, 3)
    kernels.interval_conv2d(x_lo, x_hi, w, w, None, None, (1, 1), (1, 1), (1, 1), 1, True)
    assert kernels.last_tile() == SQUARE  # 40 rows, 72 terms


def test_depth_slices_follow_the_tile_depth_step(kernels):
    """A depth slice is a whole number of the configuration's steps: 50 terms in slices of at
    least 16 make 3 slices of 24 (3 x 8) in the 8-deep configuration, 2 of 32 in a 16-deep one."""
    forcing = kernels.with_plan(64, 16)
    assert forcing.with_tile(TILES.index(SHALLOW)).plan_splits(1, 70, 50) == 3
    assert forcing.with_tile(TILES.index(FEW_ROWS)).plan_splits(1, 70, 50) == 2
    assert forcing.plan_splits(1, 70, 50) == 2  # choose_tile: 50 terms, so FEW_ROWS
