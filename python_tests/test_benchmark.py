"""Smoke tests of the benchmark harness (inn_cuda.benchmark): the statistics on a fake clock, the
case shapes, tiny op and network runs, and the written report. No timing is asserted."""

import json

import pytest
import torch

from inn_cuda import cli
from inn_cuda.benchmark import cases, network, ops, report, timing
from inn_cuda.tasks import UNet

from helpers import ALL_DEVICES


class FakeClock:
    """A clock that only moves when a fake call runs: each call takes the next scripted
    duration, and uses `cpu_share` of it as CPU time."""

    def __init__(self, durations, cpu_share=0.5):
        self.durations, self.cpu_share = list(durations), cpu_share
        self.wall = self.cpu = 0.0
        self.calls = 0

    def call(self):
        step = self.durations[self.calls]
        self.calls += 1
        self.wall += step
        self.cpu += step * self.cpu_share


# ------------------------------------------------------------------------------- statistics

def test_summarize_quartiles_median_extremes():
    stats = timing.summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (stats.median, stats.q1, stats.q3, stats.min, stats.max, stats.n) == (3, 2, 4, 1, 5, 5)
    assert stats.iqr == 2 and stats.spread == pytest.approx(2 / 3)
    single = timing.summarize([0.25])
    assert (single.median, single.q1, single.q3, single.iqr) == (0.25, 0.25, 0.25, 0)
    with pytest.raises(ValueError, match="at least one sample"):
        timing.summarize([])


def test_time_call_on_a_fake_clock_excludes_the_warm_up_and_fits_the_budget():
    # warm-up 0.5 s (a one-time cost) then calls of 0.1 .. 0.4 s: budget 1.0 s / 0.5 s = 2 < 3
    clock = FakeClock([0.5, 0.1, 0.3, 0.2, 0.4, 9.9])
    result = timing.time_call(clock.call, "cpu", budget_s=1.0, min_repeats=3, max_repeats=10,
                              clock=lambda: clock.wall, cpu_clock=lambda: clock.cpu)
    assert clock.calls == 4  # warm-up + min_repeats
    assert result.wall_samples == pytest.approx([0.1, 0.3, 0.2])
    assert result.wall.median == pytest.approx(0.2) and result.wall.n == 3
    assert result.cpu.median == pytest.approx(0.1)
    assert result.cpu_samples == pytest.approx([0.05, 0.15, 0.1])


def test_interleaved_rounds_rotate_and_paired_ratios_cancel_a_load_step():
    # A and B alternate; the machine slows down 3x from round 2 on (another job starts): the
    # paired ratio B/A stays 2 in every round, the ratio of medians would not
    order, now = [], [0.0]

    def make(name, cost):
        def call():
            order.append(name)
            now[0] += cost * (3.0 if len(order) > 4 else 1.0)
        return call

    result = timing.time_interleaved({"a": make("a", 1.0), "b": make("b", 2.0)}, "cpu", 4,
                                     clock=lambda: now[0], cpu_clock=lambda: now[0])
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]  # the start rotates per round
    assert result["a"].wall_samples == [1.0, 1.0, 3.0, 3.0]
    ratio = timing.paired_ratios(result["b"].wall_samples, result["a"].wall_samples)
    assert (ratio.median, ratio.iqr, ratio.n) == (2.0, 0.0, 4)
    with pytest.raises(ValueError, match="equal length"):
        timing.paired_ratios([1.0], [1.0, 2.0])


def test_busy_means_load_above_half_the_cores():
    assert timing.busy(1.5, cpus=2) and not timing.busy(1.0, cpus=2)
    assert not timing.busy(None, cpus=2)


def test_repeats_follow_the_warm_up_pace_within_bounds():
    assert timing.repeats_for(0.01, budget_s=1.0, min_repeats=3, max_repeats=30) == 30
    assert timing.repeats_for(0.1, budget_s=1.0, min_repeats=3, max_repeats=30) == 10
    assert timing.repeats_for(5.0, budget_s=1.0, min_repeats=3, max_repeats=30) == 3
    with pytest.raises(ValueError, match="min_repeats <= max_repeats"):
        timing.repeats_for(1.0, budget_s=1.0, min_repeats=5, max_repeats=2)


# ------------------------------------------------------------------------------------ cases

@pytest.mark.parametrize("case", [
    cases.Case("linear", "t", "l", batch=3, c_in=5, c_out=7),
    cases.Case("conv2d", "t", "c", batch=2, c_in=3, c_out=4, kernel=3, size=9, stride=2,
               padding=1),
    cases.Case("conv_transpose2d", "t", "u", batch=2, c_in=4, c_out=3, kernel=2, size=5,
               stride=2),
], ids=lambda c: c.op)
def test_case_shapes_and_work_match_the_plain_layer(case):
    x, w = torch.randn(case.x_shape), torch.randn(case.w_shape)
    options = {} if case.op == "linear" else dict(stride=case.stride, padding=case.padding)
    y = ops.PLAIN[case.op](x, w, **options)
    assert tuple(y.shape) == case.y_shape
    # multiply-adds: every output of a conv/linear sums c_in * k^2 products; every input of a
    # transposed conv feeds c_out * k^2 outputs
    expected = (x.numel() * case.c_out * case.kernel ** 2 if case.op == "conv_transpose2d"
                else y.numel() * case.c_in * case.kernel ** 2)
    assert case.macs == expected
    assert ops.gemm_work(case, "plain", "forward") == 2 * expected
    assert ops.gemm_work(case, "fused_general", "forward_backward") == 12 * expected


def test_unet_cases_are_the_layers_of_the_real_model():
    found = cases.unet_cases("demo-unet", width=8, depth=3, image_size=64, batch=16)
    layers = [m for m in UNet(width=8, depth=3).modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert sum(c.count for c in found) == len(layers)
    assert len({c.describe() for c in found}) == len(found)  # equal shapes merged
    first, last = found[0], found[-1]
    assert (first.op, first.c_in, first.c_out, first.kernel, first.size, first.batch) == \
        ("conv2d", 1, 8, 3, 64, 16)
    assert (last.name, last.c_in, last.c_out, last.kernel) == ("demo-unet head", 8, 1, 1)
    ups = [c for c in found if c.op == "conv_transpose2d"]
    assert [(c.c_in, c.size, c.stride) for c in ups] == [(64, 8, 2), (32, 16, 2), (16, 32, 2)]
    paper = cases.op_cases(quick=False, groups=["paper-unet"], paper_image_size=64)
    assert paper[0].size == 64 and max(c.c_in for c in paper) == 1024


# ------------------------------------------------------------------------------------- runs

TINY = dict(budget_s=0.0, min_repeats=2, max_repeats=2)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_run_case_times_every_implementation_and_counts_the_outputs_memory(device):
    case = cases.Case("conv2d", "t", "tiny conv", batch=2, c_in=3, c_out=4, kernel=3, size=6,
                      padding=1)
    dtype = torch.float16 if device == "cuda" else torch.float32
    rows = ops.run_case(case, device, dtype, reference_general_max_macs=1 << 20, **TINY)
    assert {(r["impl"], r["phase"]) for r in rows} == \
        {(i, p) for i in ops.IMPLS for p in ops.PHASES}
    out_bytes = dtype.itemsize * torch.Size(case.y_shape).numel()
    for row in rows:
        assert row["time_s"]["n"] == 2 and row["gflops"] > 0 and row["dtype"] == str(dtype)[6:]
        assert ("cpu_time_s" in row) == (device == "cpu")  # CUDA: event time only
        bounds = 1 if row["impl"] == "plain" else 2
        assert row["peak_bytes"] >= bounds * out_bytes, row  # the outputs, at least
        # interleaved: paired ratios to every other implementation of the phase
        assert set(row["ratio_to"]) == set(ops.IMPLS) - {row["impl"]}
        assert row["ratio_to"][row["impl"] == "plain" and "fused_nonneg" or "plain"]["n"] == 2
    skipped = ops.run_case(case, device, dtype, impls=["reference_general"],
                           phases=["forward"], reference_general_max_macs=10, **TINY)
    assert "skipped above 10" in skipped[0]["skipped"] and "time_s" not in skipped[0]


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_fused_and_reference_implementations_compute_the_same_bounds(op):
    case = cases.Case(op, "t", "tiny", batch=2, c_in=3, c_out=2, kernel=3, size=5, stride=2,
                      padding=1)
    operands = ops.make_operands(case, "cpu", torch.float64)
    for mode in ("nonneg", "general"):
        fused = ops.make_forward(case, f"fused_{mode}", operands)[0]()
        composed = ops.make_forward(case, f"reference_{mode}", operands)[0]()
        torch.testing.assert_close(fused, composed)
    assert ops.make_forward(case, "plain", operands)[0]()[0].shape == case.y_shape


@pytest.mark.slow
@pytest.mark.parametrize("device", ALL_DEVICES)
def test_network_rows_including_the_reference_subprocess(device):
    net = network.Network("tiny-unet", width=2, depth=1, image_size=16, batch=2, dropout=0.2,
                          inn_last=2, mc_passes=2, mc_max_batch=4)
    rows = network.run_network(net, device, budget_s=0.0, min_repeats=1, max_repeats=1)
    assert [r["row"] for r in rows] == list(network.ROWS)
    for row in rows:
        assert "error" not in row, row
        assert row["time_s"]["n"] == 1 and row["peak_bytes"] > 0
    assert rows[3]["label"] == "INN, last 2 layers: reconstruction + bounds"


def test_network_reference_row_is_skipped_above_its_general_mode_work():
    net = network.Network("tiny-unet", width=2, depth=1, image_size=16, batch=2, dropout=0.2,
                          inn_last=2, mc_passes=2, mc_max_batch=4)
    # general mode: the first conv (1 -> 2 channels, 3x3) and the conv after the concatenation
    # (4 -> 2, 3x3), both on 2 images of 16x16
    assert network.general_mode_macs(net) == 2 * 16 * 16 * 2 * 9 * (1 + 4)
    rows = network.run_network(net, "cpu", rows=["point", "inn_bounds_reference"], budget_s=0.0,
                               min_repeats=1, max_repeats=1, reference_max_general_macs=1000)
    assert rows[1]["skipped"] == "skipped: 4.6e+04 multiply-adds in general mode (limit 1e+03)"


# ----------------------------------------------------------------------------------- output

def test_cli_bench_writes_table_json_and_figure_and_rereads_them(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "--device", "cpu", "--quick", "--only", "linear 256x256x256",
            "--impls", "plain", "fused_nonneg", "reference_nonneg", "--networks", "none",
            "--budget-s", "0", "--min-repeats", "1", "--max-repeats", "1", "--quiet",
            "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| linear 256x256x256 | 256x256 -> 256 |" in printed
    assert "#### cpu float32, forward+backward" in printed
    saved = json.loads((out / "results.json").read_text())
    assert {r["impl"] for r in saved["ops"]} == {"plain", "fused_nonneg", "reference_nonneg"}
    assert saved["meta"]["machine"]["torch_threads"] == torch.get_num_threads()
    assert (out / "tables.md").read_text().startswith("inn_cuda ")
    assert (out / "throughput_cpu_float32.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again"
    assert cli.main(["bench", "--from", str(out / "results.json"), "--out", str(again)]) == 0
    assert (again / "tables.md").read_text() == (out / "tables.md").read_text()


def test_tables_show_ratios_of_medians_and_errors():
    def op_row(impl, seconds):
        shape = cases.Case("linear", "sweep", "lin", batch=4, c_in=4, c_out=4).as_dict()
        stats = timing.summarize([seconds * 0.9, seconds, seconds * 1.1]).as_dict()
        return dict(op="linear", group="sweep", case="lin", shape=shape, device="cpu",
                    dtype="float32", impl=impl, phase="forward", work_flops=128,
                    time_s=stats, peak_bytes=2 ** 20)

    net_rows = [dict(network="n", config=dict(width=1, depth=1, batch=1, image_size=8),
                     device="cpu", row="point", label="point forward",
                     time_s=timing.summarize([0.01]).as_dict(), peak_bytes=0),
                dict(network="n", config={}, device="cpu", row="inn_bounds_reference",
                     label="ref", error="reference worker failed (exit 1): boom")]
    rep = dict(meta=dict(date="d", command="c", devices=["cpu"], load_start=1.0, load_end=2.0,
                         machine=dict(report.machine_info(), cpu_count=2)),
               ops=[op_row("plain", 0.001), op_row("fused_nonneg", 0.002),
                    dict(op_row("library_nonneg", 0.001), path={"interval_linear": "library"}),
                    op_row("reference_nonneg", 0.008)],
               networks=net_rows)
    text = report.render(rep)
    line = next(s for s in text.splitlines() if s.startswith("| lin |"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[3] == "1 ±10%" and cells[4] == "2 ±10%"
    assert cells[6] == "1 ±10% [library]"  # library nonneg, and the path that served it
    assert cells[10:16] == ["0.25x", "-", "2.00x", "-", "0.50x", "-"]
    assert "| ref | reference worker failed (exit 1): boom |" in text
    assert "WARNING: the machine was busy (load average up to 2 on 2 cores)" in text
    # interleaved rows: the paired ratio (median ± IQR / median) replaces the ratio of medians
    rep["ops"][1]["ratio_to"] = {"plain": timing.summarize([1.9, 2.0, 2.1]).as_dict()}
    rep["meta"].update(load_start=0.5, load_end=0.5)
    text = report.render(rep)
    line = next(s for s in text.splitlines() if s.startswith("| lin |"))
    assert [c.strip() for c in line.split("|")[1:-1]][12] == "2.00x ±5%"
    assert "WARNING" not in text
