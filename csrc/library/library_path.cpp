// The library path (see library_path.h): the dispatch rule, the routing of non-finite operands,
// and the sign-split / midpoint formulas on top of ATen's mm / convolution.
#include "library_path.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <algorithm>
#include <array>

#include "algorithm.h"
#include "sum_difference.h"

namespace inn::library {
namespace {

using at::Tensor;
using Kind = Map::Kind;

// ------------------------------------------------------------------------ the bilinear map

// A size-only stand-in for convolution_backward's input / weight argument (never read), in t's
// memory format: oneDNN picks the order of the products from it.
Tensor like(at::IntArrayRef sizes, const Tensor& t) {
  return at::empty(sizes, t.options().memory_format(t.suggest_memory_format()));
}

Tensor apply(const Map& m, const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias) {
  if (m.kind == Kind::kLinear) return bias ? at::addmm(*bias, x, w.t()) : at::mm(x, w.t());
  return at::convolution(x, w, bias, m.stride, m.padding, m.dilation,
                         m.kind == Kind::kConvTranspose, m.output_padding, m.groups);
}

// The adjoint in x of apply(., w): the input gradient for an upstream gradient g.
Tensor adjoint_x(const Map& m, const Tensor& g, const Tensor& w, at::IntArrayRef x_sizes) {
  if (m.kind == Kind::kLinear) return at::mm(g, w);
  return std::get<0>(at::convolution_backward(g, like(x_sizes, g), w, std::nullopt, m.stride,
                                              m.padding, m.dilation,
                                              m.kind == Kind::kConvTranspose, m.output_padding,
                                              m.groups, {true, false, false}));
}

// The adjoint in w of apply(x, .): the weight gradient.
Tensor adjoint_w(const Map& m, const Tensor& g, const Tensor& x, at::IntArrayRef w_sizes) {
  if (m.kind == Kind::kLinear) return at::mm(g.t(), x);
  return std::get<1>(at::convolution_backward(g, x, like(w_sizes, g), std::nullopt, m.stride,
                                              m.padding, m.dilation,
                                              m.kind == Kind::kConvTranspose, m.output_padding,
                                              m.groups, {false, true, false}));
}

// Dims of the reduction (in) and output (out) channels; x and y hold theirs in dim 1 (linear on
// (rows, features) matrices). Weight dim 0 is split by groups (conv: outputs, transposed: inputs).
int64_t w_in_dim(const Map& m) { return m.kind == Kind::kConvTranspose ? 0 : 1; }
int64_t w_out_dim(const Map& m) { return m.kind == Kind::kConvTranspose ? 1 : 0; }
int64_t dim_groups(const Map& m, int64_t w_dim) { return w_dim == 0 ? m.groups : 1; }

// Stacks equally shaped tensors along `dim` group by group: group j of the result holds group j
// of each tensor in turn (so a grouped map pairs stacked inputs with stacked weights).
Tensor stack_parts(const std::vector<Tensor>& parts, int64_t dim, int64_t groups) {
  std::vector<Tensor> split;
  for (const Tensor& t : parts) split.push_back(t.unflatten(dim, {groups, t.size(dim) / groups}));
  return at::stack(split, dim + 1).flatten(dim, dim + 2);
}

// Part i of k of a tensor stacked by stack_parts.
Tensor part(const Tensor& t, int64_t dim, int64_t groups, int64_t k, int64_t i) {
  return t.unflatten(dim, {groups, k, t.size(dim) / (groups * k)}).select(dim + 1, i).flatten(
      dim, dim + 1);
}

std::vector<int64_t> scaled(at::IntArrayRef sizes, int64_t dim, int64_t factor) {
  std::vector<int64_t> out = sizes.vec();
  out[dim] *= factor;
  return out;
}

Tensor positive_part(const Tensor& t) { return at::clamp_min(t, 0); }
Tensor negative_part(const Tensor& t) { return at::clamp_max(t, 0); }

// ----------------------------------------------------------------------------- dispatch

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.is_same(b) || (a.const_data_ptr() == b.const_data_ptr() && a.sizes() == b.sizes() &&
                          a.strides() == b.strides() && a.dtype() == b.dtype());
}

bool any_empty(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t->numel() == 0) return true;
  }
  return false;
}

// Point-weight convolutions (not transposed) on the CPU take the fused kernel under `auto` where
// it measured faster than the two oneDNN products: with at most kPointFusedMaxTerms terms per
// output (input channels per group x taps: a first layer on one channel, a 1x1 output head),
// forward and backward; with at most kPointFusedMaxOutChannels output channels per group, the
// forward only. Measured interleaved against the plain layer, 2026-12-03, this 2-core Xeon, the
// demo U-Net: forward, the 1->8, 8->8, 16->8 and 8->1 layers 0.55-1.8x against 1.0-2.4x for
// the library path (the paper U-Net's 1->64 first layer 1.15x against 2.15x), but 8->16 2.8x
// against 2.4x and 64->64 7.9x against 2.0x; forward+backward, 1->8 and 8->1 1.35x and 0.85x
// against 2.2x and 1.95x, but 8->8 and 16->8 3.2x and 3.8x against 2.3x and 3.7x (the fused
// general-mode weight gradient). Transposed convs run channels last on oneDNN at 0.2-0.6x their
// channels-first time and keep the library path.
constexpr int64_t kPointFusedMaxTerms = 16;
constexpr int64_t kPointFusedMaxOutChannels = 8;

int64_t out_channels_per_group(const Map& m, const Tensor& w) {
  return m.kind == Kind::kConvTranspose ? w.size(1) : w.size(0) / m.groups;
}

bool point_conv_prefers_fused(const Map& m, const Tensor& w, bool forward) {
  if (m.kind != Kind::kConv) return false;
  const int64_t terms = w.size(1) * w.size(2) * w.size(3);
  return terms <= kPointFusedMaxTerms ||
         (forward && out_channels_per_group(m, w) <= kPointFusedMaxOutChannels);
}

// The documented rule (README "Library path"): general-mode interval weights always take the
// fused kernel (no linear form exists); otherwise `fused` / `library` as set, and under `auto`
// the library path, except on the CPU for nonneg interval weights, where the fused SIMD kernel
// does half the arithmetic of the four-product split and measured faster, and for point-weight
// convolutions with few terms per output or few output channels (point_conv_prefers_fused).
// An expanded (broadcast) input also stays on the fused kernels, which read it through its
// strides: the library path would materialise it (a (2049, 2^20) view of one row: 17 GB).
bool choose_library(const Map& m, bool point, bool nonneg, const Tensor& x_lo,
                    const Tensor& x_hi, const Tensor& w, bool forward) {
  if (!point && !nonneg) return false;
  if (!x_lo.is_non_overlapping_and_dense() || !x_hi.is_non_overlapping_and_dense()) return false;
  switch (algorithm()) {
    case Algorithm::kFused: return false;
    case Algorithm::kLibrary: return true;
    default:
      if (x_lo.is_cuda()) return true;
      return point && !point_conv_prefers_fused(m, w, forward);
  }
}

// Whether the library result can stand: every library product came out finite. A product of
// finite operands is exactly what the fused kernel sums; an infinite or NaN operand that takes
// part in any product (0 * inf included) makes that product, hence the sum, inf or NaN. So a
// check of the results replaces one of the operands (and an overflowing sum only sends a finite
// call to the fused kernel too). On the CPU a host check: false sends the call to the fused
// kernel. On CUDA always true, with `nonfinite` a device flag for the launcher's guarded rerun.
bool results_finite(std::initializer_list<Tensor> ts, Tensor& nonfinite) {
  Tensor total;
  for (const Tensor& t : ts) {
    const auto acc = t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    const Tensor s = at::sum(t, acc);
    total = total.defined() ? total + s : s;
  }
  const Tensor finite = at::isfinite(total);
  if (finite.is_cuda()) {
    nonfinite = at::logical_not(finite);
    return true;
  }
  return finite.item<bool>();
}

// (*, cols) -> (rows, cols) for the linear map; conv operands unchanged.
Tensor as_operand(const Map& m, const Tensor& t, int64_t cols) {
  if (m.kind != Kind::kLinear) return t;
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) rows *= t.size(d);
  return t.reshape({rows, cols});
}

// The midpoint form costs two products where the split costs four, but rounds S and D before
// combining them: used where the products are computed in at least float32.
bool midpoint_form(const Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble;
}

// Whether the products should see channels-last operands. oneDNN computes a float32 conv on the
// CPU in a blocked or channels-last order; given channels-first operands it reorders them and
// its result on every call, which the point-weight form would pay twice. The passes around the
// products change the order instead (channel_order.h). Measured on this project's 2-core Xeon,
// one conv on channels-last input took 0.85-1.0x the channels-first time up to 128 channels and
// 1.03-1.07x at 256-512; a 2x2 stride-2 transposed conv took 0.2-0.6x at every width. So
// transposed convs always, convs up to kChannelsLastMaxChannels on either side.
constexpr int64_t kChannelsLastMaxChannels = 128;

bool prefers_channels_last(const Map& m, const Tensor& x, const Tensor& w) {
  if (m.kind == Kind::kLinear || !x.device().is_cpu() || x.scalar_type() != at::kFloat ||
      !at::globalContext().userEnabledMkldnn()) {
    return false;
  }
  return m.kind == Kind::kConvTranspose ||
         std::max(x.size(1), w.size(0)) <= kChannelsLastMaxChannels;
}

// W and |W| in the memory format of the operand they multiply: ATen would otherwise copy a
// channels-first weight into the channels-last order on each of the two oneDNN calls.
std::pair<Tensor, Tensor> weight_and_magnitude(const Tensor& w, const Tensor& operand) {
  const Tensor laid_out = w.dim() == 4 ? w.contiguous(operand.suggest_memory_format()) : w;
  return {laid_out, at::abs(laid_out)};
}

// The operands of a backward call as the map takes them: (g_lo, g_hi, l, h).
std::array<Tensor, 4> backward_operands(const Map& m, const Tensor& grad_lo, const Tensor& grad_hi,
                                        const Tensor& x_lo, const Tensor& x_hi, const Tensor& w) {
  const int64_t K = w.size(w_in_dim(m)), N = w.size(w_out_dim(m));
  return {as_operand(m, grad_lo, N), as_operand(m, grad_hi, N), as_operand(m, x_lo, K),
          as_operand(m, x_hi, K)};
}

Routed done(const char* op, Tensor lo, Tensor hi, Tensor nonfinite) {
  record(op, true);
  return {lo.contiguous(), hi.contiguous(), std::move(nonfinite)};
}

}  // namespace

std::optional<Routed> forward(const char* op, const Map& m, const Tensor& x_lo_,
                              const Tensor& x_hi_, const Tensor& w_lo, const Tensor& w_hi,
                              const std::optional<Tensor>& b_lo, const std::optional<Tensor>& b_hi,
                              bool input_nonneg) {
  const bool point = same_tensor(w_lo, w_hi);
  if (any_empty({&x_lo_, &w_lo}) ||
      !choose_library(m, point, input_nonneg, x_lo_, x_hi_, w_lo, true)) {
    record(op, false);
    return std::nullopt;
  }
  const int64_t K = w_lo.size(w_in_dim(m));
  const Tensor l = as_operand(m, x_lo_, K), h = as_operand(m, x_hi_, K);
  Tensor nonfinite, y_lo, y_hi;
  if (point && midpoint_form(l)) {
    // y = W·c ∓ |W|·r, computed on twice the midpoint and radius (bias included):
    // S = W·(l + h) + (b_lo + b_hi), D = |W|·(h - l) + (b_hi - b_lo), y = (S ∓ D) / 2
    const auto [s, d] = sum_difference(l, h, prefers_channels_last(m, l, w_lo));
    std::optional<Tensor> bs, bd;
    if (b_lo) std::tie(bs, bd) = sum_difference(*b_lo, *b_hi);
    const auto [w, w_abs] = weight_and_magnitude(w_lo, s);
    y_lo = apply(m, s, w, bs);
    y_hi = apply(m, d, w_abs, bd);
    if (!halve_sum_difference_(y_lo, y_hi, nonfinite)) return record(op, false), std::nullopt;
  } else {
    // y_lo = [l h]·[a⁺; a⁻], y_hi = [l h]·[b⁻; b⁺]: two calls on stacked operands
    const int64_t in = w_in_dim(m), groups = dim_groups(m, in);
    const Tensor x = stack_parts({l, h}, 1, m.groups);
    y_lo = apply(m, x, stack_parts({positive_part(w_lo), negative_part(w_lo)}, in, groups), b_lo);
    y_hi = apply(m, x, stack_parts({negative_part(w_hi), positive_part(w_hi)}, in, groups), b_hi);
    if (!results_finite({y_lo, y_hi}, nonfinite)) return record(op, false), std::nullopt;
  }
  if (m.kind == Kind::kLinear) {
    std::vector<int64_t> shape = x_lo_.sizes().vec();
    shape.back() = w_lo.size(0);
    y_lo = y_lo.view(shape);
    y_hi = y_hi.view(shape);
  }
  return done(op, y_lo, y_hi, nonfinite);
}

namespace {

// dx for both cases. General-mode point weights: at a point input (l == h) both candidates of a
// bound tie and the one built from l is selected, so x_lo takes the whole gradient; so it does at
// a NaN input (a NaN candidate is selected). `tie_to_l` marks both: !(l < h).
std::pair<Tensor, Tensor> input_grad(const Map& m, bool point, bool nonneg, const Tensor& g_lo,
                                     const Tensor& g_hi, const Tensor& l, const Tensor& h,
                                     const Tensor& a, const Tensor& b, Tensor& nonfinite,
                                     bool& ok) {
  Tensor dx_lo, dx_hi;
  if (point && midpoint_form(l)) {
    // y_lo = P - Q, y_hi = P + Q with P = W·c, Q = |W|·r: with S = (g_lo + g_hi)·W and
    // D = (g_hi - g_lo)·|W|, dx_lo = (S - D) / 2, dx_hi = (S + D) / 2
    const auto [gs, gd] = sum_difference(g_lo, g_hi, prefers_channels_last(m, l, a));
    const auto [w, w_abs] = weight_and_magnitude(a, gs);
    dx_lo = adjoint_x(m, gs, w, l.sizes());
    dx_hi = adjoint_x(m, gd, w_abs, l.sizes());
    ok = nonneg ? halve_sum_difference_(dx_lo, dx_hi, nonfinite)
                : halve_sum_difference_tie_(dx_lo, dx_hi, l, h, nonfinite);
    if (!ok) return {};
    return {dx_lo, dx_hi};
  }
  // dx_lo = [g_lo g_hi]·[a⁺; b⁻], dx_hi = [g_lo g_hi]·[a⁻; b⁺]
  const int64_t out = w_out_dim(m), groups = dim_groups(m, out);
  const Tensor g = stack_parts({g_lo, g_hi}, 1, m.groups);
  dx_lo = adjoint_x(m, g, stack_parts({positive_part(a), negative_part(b)}, out, groups),
                    l.sizes());
  dx_hi = adjoint_x(m, g, stack_parts({negative_part(a), positive_part(b)}, out, groups),
                    l.sizes());
  ok = results_finite({dx_lo, dx_hi}, nonfinite);
  if (!ok) return {};
  if (point && !nonneg) {
    const Tensor tie_to_l = at::logical_not(at::lt(l, h));
    dx_lo = at::where(tie_to_l, at::add(dx_lo, dx_hi), dx_lo);
    dx_hi = at::where(tie_to_l, at::zeros({}, dx_hi.options()), dx_hi);
  }
  return {dx_lo, dx_hi};
}

// The products of the upstream gradients [g_lo g_hi] with input parts xs, all in one call on
// stacked operands: d(bound, i) is bound's (0: lo, 1: hi) gradient times part i, reduced over the
// batch into a weight-shaped tensor; `all` the stacked result.
struct StackedWeightProducts {
  Tensor all;
  int64_t k, in, out, in_groups, out_groups;
  Tensor operator()(int64_t bound, int64_t i) const {
    return part(part(all, out, out_groups, 2, bound), in, in_groups, k, i);
  }
};

StackedWeightProducts weight_products(const Map& m, const Tensor& g_lo, const Tensor& g_hi,
                                      const std::vector<Tensor>& xs, at::IntArrayRef w_sizes) {
  const int64_t in = w_in_dim(m), out = w_out_dim(m);
  const int64_t k = static_cast<int64_t>(xs.size());
  const Tensor g = stack_parts({g_lo, g_hi}, 1, m.groups);
  return {adjoint_w(m, g, stack_parts(xs, 1, m.groups), scaled(scaled(w_sizes, in, k), out, 2)),
          k, in, out, dim_groups(m, in), dim_groups(m, out)};
}

// dw: sums over the batch of the upstream gradient times the input bound each weight bound
// selected, all products in one call on stacked operands.
std::pair<Tensor, Tensor> weight_grad(const Map& m, bool nonneg, const Tensor& g_lo,
                                      const Tensor& g_hi, const Tensor& l, const Tensor& h,
                                      const Tensor& a, const Tensor& b, Tensor& nonfinite,
                                      bool& ok) {
  const auto product = [&](const std::vector<Tensor>& xs) {
    return weight_products(m, g_lo, g_hi, xs, a.sizes());
  };
  if (nonneg) {
    // lo = a·(a >= 0 ? l : h), hi = b·(b >= 0 ? h : l)
    const auto d = product({l, h});
    Tensor dw_lo = at::where(at::ge(a, 0), d(0, 0), d(0, 1));
    Tensor dw_hi = at::where(at::ge(b, 0), d(1, 1), d(1, 0));
    ok = results_finite({dw_lo, dw_hi}, nonfinite);
    return {dw_lo, dw_hi};
  }
  // General mode, point weight w = a = b: the lower bound selects s_lo = (w >= 0 ? l : h), the
  // upper s_hi = (w > 0 ? h : l) (at w = 0 both candidates are 0 and l wins the tie); a selected
  // input bound s sends g·s to w_lo when s >= 0 and to w_hi otherwise for the lower bound, the
  // other way round for the upper bound.
  const auto d = product({positive_part(l), negative_part(l), positive_part(h), negative_part(h)});
  enum { kLPos, kLNeg, kHPos, kHNeg };
  const Tensor w_nonneg = at::ge(a, 0), w_pos = at::gt(a, 0);
  const Tensor dw_lo = at::where(w_nonneg, d(0, kLPos), d(0, kHPos)) +
                       at::where(w_pos, d(1, kHNeg), d(1, kLNeg));
  const Tensor dw_hi = at::where(w_nonneg, d(0, kLNeg), d(0, kHNeg)) +
                       at::where(w_pos, d(1, kHPos), d(1, kLPos));
  // The selection above is the kernels' only for a finite weight: an infinite one makes both
  // candidates infinite, a tie the kernels give to l. Such calls take the fused kernel too.
  ok = results_finite({dw_lo, dw_hi, a}, nonfinite);
  return {dw_lo, dw_hi};
}

}  // namespace

std::optional<Routed> backward(const char* op, const Map& m, bool weight, const Tensor& grad_lo,
                               const Tensor& grad_hi, const Tensor& x_lo_, const Tensor& x_hi_,
                               const Tensor& w_lo, const Tensor& w_hi, bool input_nonneg) {
  const bool point = same_tensor(w_lo, w_hi);
  if (any_empty({&x_lo_, &w_lo, &grad_lo}) ||
      !choose_library(m, point, input_nonneg, x_lo_, x_hi_, w_lo, false)) {
    record(op, false);
    return std::nullopt;
  }
  const auto [g_lo, g_hi, l, h] = backward_operands(m, grad_lo, grad_hi, x_lo_, x_hi_, w_lo);
  Tensor nonfinite;
  bool ok = false;
  auto [lo, hi] = weight ? weight_grad(m, input_nonneg, g_lo, g_hi, l, h, w_lo, w_hi, nonfinite, ok)
                         : input_grad(m, point, input_nonneg, g_lo, g_hi, l, h, w_lo, w_hi,
                                      nonfinite, ok);
  if (!ok) {
    record(op, false);
    return std::nullopt;
  }
  if (!weight && m.kind == Kind::kLinear) {
    lo = lo.view(x_lo_.sizes());
    hi = hi.view(x_lo_.sizes());
  }
  return done(op, lo, hi, nonfinite);
}

std::optional<RoutedTotal> weight_grad_point(const char* op, const Map& m,
                                             const Tensor& grad_lo, const Tensor& grad_hi,
                                             const Tensor& x_lo_, const Tensor& x_hi_,
                                             const Tensor& w, bool input_nonneg) {
  if (any_empty({&x_lo_, &w, &grad_lo}) ||
      !choose_library(m, true, input_nonneg, x_lo_, x_hi_, w, false)) {
    record(op, false);
    return std::nullopt;
  }
  const auto [g_lo, g_hi, l, h] = backward_operands(m, grad_lo, grad_hi, x_lo_, x_hi_, w);
  Tensor nonfinite;
  if (midpoint_form(l)) {
    // The selection is the kernels' only for a finite weight (an infinite one makes candidates
    // infinite, a NaN one is selected by neither sign rule): such calls are routed (the CPU
    // checks w in the select pass, on CUDA w joins the device flag). At w == 0 nonneg mode takes
    // the w >= 0 form, general mode the tie: a third product, on the CPU only when some w is 0.
    const bool channels_last = prefers_channels_last(m, l, w);
    const auto [s, d] = sum_difference(g_lo, g_hi, channels_last);
    const auto [c2, r2] = sum_difference(l, h, channels_last);
    Tensor total = adjoint_w(m, s, c2, w.sizes());
    const Tensor q = adjoint_w(m, d, r2, w.sizes());
    bool any_zero = false;
    if (!select_point_weight_grad_(total, q, w, input_nonneg, nonfinite, any_zero) ||
        (!input_nonneg && any_zero &&
         !take_tie_where_zero_(total, adjoint_w(m, s, l, w.sizes()), w, nonfinite))) {
      return record(op, false), std::nullopt;
    }
    record(op, true);
    return RoutedTotal{total.contiguous(), nonfinite};
  }
  // Narrow dtypes: the four products g_lo·l, g_lo·h, g_hi·l, g_hi·h in one stacked call (no
  // host check: these dtypes run on CUDA only).
  const StackedWeightProducts d = weight_products(m, g_lo, g_hi, {l, h}, w.sizes());
  Tensor total = at::where(input_nonneg ? at::ge(w, 0) : at::gt(w, 0), d(0, 0) + d(1, 1),
                           d(0, 1) + d(1, 0));
  if (!input_nonneg) total = at::where(at::eq(w, 0), d(0, 0) + d(1, 0), total);
  if (!results_finite({d.all, w}, nonfinite)) return record(op, false), std::nullopt;
  record(op, true);
  return RoutedTotal{total.contiguous(), nonfinite};
}

}  // namespace inn::library
