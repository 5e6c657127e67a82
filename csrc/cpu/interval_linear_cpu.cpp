// CPU kernels of the interval linear ops: check the arguments (op_checks.h), view the operands as
// 2-D matrices with unit column stride and call the fused interval GEMMs. The GEMM chooses its
// paths by the column strides, so a copy where they are not 1 makes the result independent of the
// input's memory layout; row strides are kept (an expanded input stays a view).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

#include "../backend_registry.h"
#include "../library/library_path.h"
#include "../op_checks.h"
#include "tensor_views.h"

namespace inn::cpu {
namespace {

using Pair = std::tuple<at::Tensor, at::Tensor>;

at::Tensor unit_columns(const at::Tensor& m) {
  // A single column has no column stride to speak of: say 1.
  if (m.size(1) <= 1) return m.as_strided({m.size(0), m.size(1)}, {m.stride(0), 1});
  return m.stride(1) == 1 ? m : m.contiguous();
}

at::Tensor matrix(const at::Tensor& t, int64_t cols) { return unit_columns(as_matrix(t, cols)); }

Pair linear_forward(const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                    const at::Tensor& w_hi, const std::optional<at::Tensor>& b_lo,
                    const std::optional<at::Tensor>& b_hi, bool input_nonneg) {
  const auto [M, N, K] = check_linear("interval_linear", x_lo, x_hi, w_lo, w_hi, b_lo, b_hi);
  if (auto r = library::forward("interval_linear", library::Map::linear(), x_lo, x_hi, w_lo, w_hi,
                                b_lo, b_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const at::Tensor xl = matrix(x_lo, K), xh = matrix(x_hi, K);
  const at::Tensor wl = unit_columns(w_lo), wh = unit_columns(w_hi);
  at::Tensor y_lo = at::empty({M, N}, x_lo.options());
  at::Tensor y_hi = at::empty({M, N}, x_lo.options());
  const bool has_bias = b_lo.has_value();
  if (has_bias) {
    y_lo.copy_(b_lo->expand({M, N}));
    y_hi.copy_(b_hi->expand({M, N}));
  }
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_linear_cpu", [&] {
    interval_gemm_forward<scalar_t>(M, N, K, const_view<scalar_t>(xl), const_view<scalar_t>(xh),
                                    const_view<scalar_t>(wl), const_view<scalar_t>(wh),
                                    view<scalar_t>(y_lo), view<scalar_t>(y_hi), input_nonneg,
                                    has_bias);
  });
  auto out_shape = x_lo.sizes().vec();
  out_shape.back() = N;
  return {y_lo.view(out_shape), y_hi.view(out_shape)};
}

// The fused kernels of interval_linear_backward_input (kWeight false) and _backward_weight
// (true), on checked operands.
template <bool kWeight>
Pair linear_backward_fused(const LinearShape& shape, const at::Tensor& grad_lo,
                           const at::Tensor& grad_hi, const at::Tensor& x_lo,
                           const at::Tensor& x_hi, const at::Tensor& w_lo, const at::Tensor& w_hi,
                           bool input_nonneg) {
  const auto [M, N, K] = shape;
  const at::Tensor gl = matrix(grad_lo, N), gh = matrix(grad_hi, N);
  const at::Tensor xl = matrix(x_lo, K), xh = matrix(x_hi, K);
  const at::Tensor wl = unit_columns(w_lo), wh = unit_columns(w_hi);
  at::Tensor out_lo = at::empty({kWeight ? N : M, K}, x_lo.options());
  at::Tensor out_hi = at::empty_like(out_lo);
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_linear_backward_cpu", [&] {
    const auto gemm =
        kWeight ? interval_gemm_backward_weight<scalar_t> : interval_gemm_backward_input<scalar_t>;
    gemm(M, N, K, const_view<scalar_t>(gl), const_view<scalar_t>(gh), const_view<scalar_t>(xl),
         const_view<scalar_t>(xh), const_view<scalar_t>(wl), const_view<scalar_t>(wh),
         view<scalar_t>(out_lo), view<scalar_t>(out_hi), input_nonneg, false);
  });
  if (kWeight) return {out_lo, out_hi};
  return {out_lo.view(x_lo.sizes()), out_hi.view(x_lo.sizes())};
}

// interval_linear_backward_input (kWeight false) and interval_linear_backward_weight (true).
template <bool kWeight>
Pair linear_backward(const at::Tensor& grad_lo, const at::Tensor& grad_hi, const at::Tensor& x_lo,
                     const at::Tensor& x_hi, const at::Tensor& w_lo, const at::Tensor& w_hi,
                     bool input_nonneg) {
  const LinearShape shape = check_linear_backward(
      kWeight ? "interval_linear_backward_weight" : "interval_linear_backward_input", grad_lo,
      grad_hi, x_lo, x_hi, w_lo, w_hi);
  if (auto r = library::backward(
          kWeight ? "interval_linear_backward_weight" : "interval_linear_backward_input",
          library::Map::linear(), kWeight, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  return linear_backward_fused<kWeight>(shape, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi,
                                        input_nonneg);
}

// interval_linear_backward_weight_point: dw_lo + dw_hi of the point weight w (library_path.h),
// else the fused kernel's two bounds summed.
at::Tensor linear_backward_weight_point(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                                        const at::Tensor& x_lo, const at::Tensor& x_hi,
                                        const at::Tensor& w, bool input_nonneg) {
  constexpr const char* op = "interval_linear_backward_weight_point";
  const LinearShape shape =
      check_linear_backward(kLinearPointChecks, grad_lo, grad_hi, x_lo, x_hi, w, w);
  if (auto r = library::weight_grad_point(op, library::Map::linear(), grad_lo, grad_hi, x_lo,
                                          x_hi, w, input_nonneg)) {
    return r->total;
  }
  auto [lo, hi] =
      linear_backward_fused<true>(shape, grad_lo, grad_hi, x_lo, x_hi, w, w, input_nonneg);
  return lo.add_(hi);
}

const BackendOps registered("cpu", {"interval_linear", "interval_linear_backward_input",
                                    "interval_linear_backward_weight",
                                    "interval_linear_backward_weight_point"});

}  // namespace
}  // namespace inn::cpu

TORCH_LIBRARY_IMPL(inn_cuda, CPU, m) {
  m.impl("interval_linear", &inn::cpu::linear_forward);
  m.impl("interval_linear_backward_input", &inn::cpu::linear_backward<false>);
  m.impl("interval_linear_backward_weight", &inn::cpu::linear_backward<true>);
  m.impl("interval_linear_backward_weight_point", &inn::cpu::linear_backward_weight_point);
}
