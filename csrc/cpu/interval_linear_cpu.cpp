// CPU kernels of the interval linear ops: reshape to 2-D and call the fused interval GEMMs.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "../backend_registry.h"
#include "../library/library_path.h"
#include "tensor_views.h"

namespace inn::cpu {
namespace {

using Pair = std::tuple<at::Tensor, at::Tensor>;

// (*, cols) -> (rows, cols); explicit rows, since reshape cannot infer them when cols == 0.
at::Tensor as_matrix(const at::Tensor& t, int64_t cols) {
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) rows *= t.size(d);
  return t.reshape({rows, cols});
}

Pair linear_forward(const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                    const at::Tensor& w_hi, const std::optional<at::Tensor>& b_lo,
                    const std::optional<at::Tensor>& b_hi, bool input_nonneg) {
  const int64_t K = w_lo.size(1), N = w_lo.size(0);
  TORCH_CHECK(x_lo.size(-1) == K, "interval_linear: x has ", x_lo.size(-1),
              " features, w expects ", K);
  if (auto r = library::forward("interval_linear", library::Map::linear(), x_lo, x_hi, w_lo, w_hi,
                                b_lo, b_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const at::Tensor xl = as_matrix(x_lo, K), xh = as_matrix(x_hi, K);
  const int64_t M = xl.size(0);
  at::Tensor y_lo = at::empty({M, N}, x_lo.options());
  at::Tensor y_hi = at::empty({M, N}, x_lo.options());
  const bool has_bias = b_lo.has_value();
  if (has_bias) {
    y_lo.copy_(b_lo->expand({M, N}));
    y_hi.copy_(b_hi->expand({M, N}));
  }
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_linear_cpu", [&] {
    interval_gemm_forward<scalar_t>(M, N, K, const_view<scalar_t>(xl), const_view<scalar_t>(xh),
                                    const_view<scalar_t>(w_lo), const_view<scalar_t>(w_hi),
                                    view<scalar_t>(y_lo), view<scalar_t>(y_hi), input_nonneg,
                                    has_bias);
  });
  auto out_shape = x_lo.sizes().vec();
  out_shape.back() = N;
  return {y_lo.view(out_shape), y_hi.view(out_shape)};
}

Pair linear_backward_input(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                           const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                           const at::Tensor& w_hi, bool input_nonneg) {
  if (auto r = library::backward("interval_linear_backward_input", library::Map::linear(), false,
                                 grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const int64_t K = w_lo.size(1), N = w_lo.size(0);
  const at::Tensor gl = as_matrix(grad_lo, N), gh = as_matrix(grad_hi, N);
  const at::Tensor xl = as_matrix(x_lo, K), xh = as_matrix(x_hi, K);
  const int64_t M = xl.size(0);
  at::Tensor dx_lo = at::empty({M, K}, x_lo.options());
  at::Tensor dx_hi = at::empty({M, K}, x_lo.options());
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_linear_backward_input_cpu", [&] {
    interval_gemm_backward_input<scalar_t>(
        M, N, K, const_view<scalar_t>(gl), const_view<scalar_t>(gh), const_view<scalar_t>(xl),
        const_view<scalar_t>(xh), const_view<scalar_t>(w_lo), const_view<scalar_t>(w_hi),
        view<scalar_t>(dx_lo), view<scalar_t>(dx_hi), input_nonneg, false);
  });
  return {dx_lo.view(x_lo.sizes()), dx_hi.view(x_lo.sizes())};
}

Pair linear_backward_weight(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                            const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                            const at::Tensor& w_hi, bool input_nonneg) {
  if (auto r = library::backward("interval_linear_backward_weight", library::Map::linear(), true,
                                 grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const int64_t K = w_lo.size(1), N = w_lo.size(0);
  const at::Tensor gl = as_matrix(grad_lo, N), gh = as_matrix(grad_hi, N);
  const at::Tensor xl = as_matrix(x_lo, K), xh = as_matrix(x_hi, K);
  const int64_t M = xl.size(0);
  at::Tensor dw_lo = at::empty({N, K}, w_lo.options());
  at::Tensor dw_hi = at::empty({N, K}, w_lo.options());
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_linear_backward_weight_cpu", [&] {
    interval_gemm_backward_weight<scalar_t>(
        M, N, K, const_view<scalar_t>(gl), const_view<scalar_t>(gh), const_view<scalar_t>(xl),
        const_view<scalar_t>(xh), const_view<scalar_t>(w_lo), const_view<scalar_t>(w_hi),
        view<scalar_t>(dw_lo), view<scalar_t>(dw_hi), input_nonneg, false);
  });
  return {dw_lo, dw_hi};
}

const BackendOps registered("cpu", {"interval_linear", "interval_linear_backward_input",
                                    "interval_linear_backward_weight"});

}  // namespace
}  // namespace inn::cpu

TORCH_LIBRARY_IMPL(inn_cuda, CPU, m) {
  m.impl("interval_linear", &inn::cpu::linear_forward);
  m.impl("interval_linear_backward_input", &inn::cpu::linear_backward_input);
  m.impl("interval_linear_backward_weight", &inn::cpu::linear_backward_weight);
}
