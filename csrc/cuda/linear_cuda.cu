// CUDA launchers of the interval linear ops: check the arguments (op_checks.h), view the operands
// as 2-D strided matrices (no copies, so expanded inputs stay cheap; the tile kernels sum in depth
// order whatever the strides, so the result does not depend on the layout) and run the tile
// problems of csrc/kernels/linear_problems.cuh.
#include <ATen/ops/where.h>
#include <torch/library.h>

#include "../backend_registry.h"
#include "../library/library_path.h"
#include "../kernels/linear_problems.cuh"
#include "../op_checks.h"
#include "cuda_launch.cuh"

namespace inn::gpu {
namespace {

// Both bounds of an operand are read through one set of strides.
std::pair<at::Tensor, at::Tensor> same_strides(const at::Tensor& lo, const at::Tensor& hi) {
  if (lo.strides() == hi.strides()) return {lo, hi};
  return {lo.contiguous(), hi.contiguous()};
}

template <typename T>
kernels::IntervalMatrix<T> matrix(const std::pair<at::Tensor, at::Tensor>& bounds) {
  return {data<T>(bounds.first), data<T>(bounds.second), bounds.first.stride(0),
          bounds.first.stride(1)};
}

struct LinearOperands {
  int64_t M, N, K;
  std::pair<at::Tensor, at::Tensor> x, w;
};

// The operands of a checked call (op_checks.h) as 2-D strided matrices.
LinearOperands linear_operands(const LinearShape& shape, const at::Tensor& x_lo,
                               const at::Tensor& x_hi, const at::Tensor& w_lo,
                               const at::Tensor& w_hi) {
  return {shape.M, shape.N, shape.K,
          same_strides(as_matrix(x_lo, shape.K), as_matrix(x_hi, shape.K)),
          same_strides(w_lo, w_hi)};
}

Pair linear_forward(const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                    const at::Tensor& w_hi, const std::optional<at::Tensor>& b_lo,
                    const std::optional<at::Tensor>& b_hi, bool input_nonneg) {
  constexpr const char* op = "interval_linear";
  const LinearShape shape = check_linear(op, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi);
  const c10::cuda::CUDAGuard guard(x_lo.device());
  const LinearOperands o = linear_operands(shape, x_lo, x_hi, w_lo, w_hi);
  const std::pair<at::Tensor, at::Tensor> bias = bias_pair(b_lo, b_hi);
  // The library path, if it serves this call; the fused kernel then runs only guarded by its
  // non-finite flag, into the library's result (library_path.h).
  const std::optional<library::Routed> routed = library::forward(
      op, library::Map::linear(), x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg);
  at::Tensor y_lo = routed ? routed->lo.view({o.M, o.N}) : x_lo.new_empty({o.M, o.N});
  at::Tensor y_hi = routed ? routed->hi.view({o.M, o.N}) : x_lo.new_empty({o.M, o.N});
  const bool* run_if = routed ? routed->nonfinite.const_data_ptr<bool>() : nullptr;
  TileRuntime rt(x_lo);
  dispatch(x_lo.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kernels::run_tile_problem(
        rt,
        kernels::linear_forward_problem<T>(o.M, o.N, o.K, matrix<T>(o.x), matrix<T>(o.w),
                                           data_or_null<T>(bias.first),
                                           data_or_null<T>(bias.second),
                                           mutable_data<T>(y_lo), mutable_data<T>(y_hi)),
        input_nonneg, rt.sm_count(), kernels::kMinSplitDepth, run_if);
  });
  auto out_shape = x_lo.sizes().vec();
  out_shape.back() = o.N;
  return {y_lo.view(out_shape), y_hi.view(out_shape)};
}

template <typename T>
kernels::IntervalMatrix<T> grad_matrix(const at::Tensor& g_lo, const at::Tensor& g_hi,
                                       int64_t N, std::pair<at::Tensor, at::Tensor>& keep) {
  keep = same_strides(as_matrix(g_lo, N), as_matrix(g_hi, N));
  return matrix<T>(keep);
}

// Runs the fused input-gradient (weight false) or weight-gradient (true) kernel into out_lo /
// out_hi (shaped (N, K) or (M, K)), on the device only where `run_if` (a device flag) is true, or
// always (nullptr).
void launch_backward(const char* op, bool weight, const LinearOperands& o,
                     const at::Tensor& grad_lo, const at::Tensor& grad_hi, at::Tensor& out_lo,
                     at::Tensor& out_hi, const bool* run_if, bool input_nonneg) {
  TileRuntime rt(grad_lo);
  dispatch(grad_lo.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::pair<at::Tensor, at::Tensor> g;
    const kernels::IntervalMatrix<T> gm = grad_matrix<T>(grad_lo, grad_hi, o.N, g);
    T* lo = mutable_data<T>(out_lo);
    T* hi = mutable_data<T>(out_hi);
    if (weight) {
      kernels::run_tile_problem(rt,
                                kernels::linear_weight_grad_problem<T>(
                                    o.M, o.N, o.K, gm, matrix<T>(o.x), matrix<T>(o.w), lo, hi),
                                input_nonneg, rt.sm_count(), kernels::kMinSplitDepth, run_if);
    } else {
      kernels::run_tile_problem(rt,
                                kernels::linear_input_grad_problem<T>(
                                    o.M, o.N, o.K, gm, matrix<T>(o.x), matrix<T>(o.w), lo, hi),
                                input_nonneg, rt.sm_count(), kernels::kMinSplitDepth, run_if);
    }
  });
}

Pair linear_backward(bool weight, const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                     const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                     const at::Tensor& w_hi, bool input_nonneg) {
  const char* op =
      weight ? "interval_linear_backward_weight" : "interval_linear_backward_input";
  const LinearShape shape =
      check_linear_backward(op, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi);
  const c10::cuda::CUDAGuard guard(x_lo.device());
  const LinearOperands o = linear_operands(shape, x_lo, x_hi, w_lo, w_hi);
  const std::optional<library::Routed> routed = library::backward(
      op, library::Map::linear(), weight, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg);
  const std::vector<int64_t> out_shape =
      weight ? std::vector<int64_t>{o.N, o.K} : std::vector<int64_t>{o.M, o.K};
  at::Tensor out_lo = routed ? routed->lo.view(out_shape) : x_lo.new_empty(out_shape);
  at::Tensor out_hi = routed ? routed->hi.view(out_shape) : x_lo.new_empty(out_shape);
  const bool* run_if = routed ? routed->nonfinite.const_data_ptr<bool>() : nullptr;
  launch_backward(op, weight, o, grad_lo, grad_hi, out_lo, out_hi, run_if, input_nonneg);
  if (weight) return {out_lo, out_hi};
  return {out_lo.view(x_lo.sizes()), out_hi.view(x_lo.sizes())};
}

// interval_linear_backward_weight_point: the total weight gradient of a point weight w, the
// library's (library_path.h, weight_grad_point); where an operand is not finite the fused
// kernel's dw_lo + dw_hi replaces it, computed by a guarded rerun and selected by the device flag
// (no host synchronisation). Where the library path does not serve the call: the fused sum.
at::Tensor linear_backward_weight_point(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                                        const at::Tensor& x_lo, const at::Tensor& x_hi,
                                        const at::Tensor& w, bool input_nonneg) {
  constexpr const char* op = "interval_linear_backward_weight_point";
  const LinearShape shape =
      check_linear_backward(kLinearPointChecks, grad_lo, grad_hi, x_lo, x_hi, w, w);
  const c10::cuda::CUDAGuard guard(x_lo.device());
  const LinearOperands o = linear_operands(shape, x_lo, x_hi, w, w);
  const std::optional<library::RoutedTotal> routed = library::weight_grad_point(
      op, library::Map::linear(), grad_lo, grad_hi, x_lo, x_hi, w, input_nonneg);
  at::Tensor lo = x_lo.new_empty({o.N, o.K}), hi = x_lo.new_empty({o.N, o.K});
  const bool* run_if = routed ? routed->nonfinite.const_data_ptr<bool>() : nullptr;
  launch_backward(op, true, o, grad_lo, grad_hi, lo, hi, run_if, input_nonneg);
  const at::Tensor fused = lo.add_(hi);
  return routed ? at::where(routed->nonfinite, fused, routed->total) : fused;
}

Pair linear_backward_input(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                           const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                           const at::Tensor& w_hi, bool input_nonneg) {
  return linear_backward(false, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg);
}

Pair linear_backward_weight(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                            const at::Tensor& x_lo, const at::Tensor& x_hi,
                            const at::Tensor& w_lo, const at::Tensor& w_hi, bool input_nonneg) {
  return linear_backward(true, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg);
}

const BackendOps registered("cuda", {"interval_linear", "interval_linear_backward_input",
                                     "interval_linear_backward_weight",
                                     "interval_linear_backward_weight_point"});

}  // namespace
}  // namespace inn::gpu

TORCH_LIBRARY_IMPL(inn_cuda, CUDA, m) {
  m.impl("interval_linear", &inn::gpu::linear_forward);
  m.impl("interval_linear_backward_input", &inn::gpu::linear_backward_input);
  m.impl("interval_linear_backward_weight", &inn::gpu::linear_backward_weight);
  m.impl("interval_linear_backward_weight_point", &inn::gpu::linear_backward_weight_point);
}
