// What the conv2d and conv_transpose2d launchers (conv2d_cuda.cu, conv_transpose2d_cuda.cu) share
// once op_checks.h has checked the operands and built the geometry: contiguous operands, the
// result, the kernels' 32-bit geometry, the dtype dispatch and the launch. `Problems<T>` names the
// op's tile problems in csrc/kernels/conv_problems.cuh (`forward`, `input_grad`, `weight_grad`);
// `y_shape` is the output's shape (conv2d: the small side of the geometry, conv_transpose2d: the
// big side).
#pragma once

#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <optional>

#include "../kernels/conv_problems.cuh"
#include "../library/library_path.h"
#include "../op_checks.h"
#include "cuda_launch.cuh"

namespace inn::gpu {

template <template <typename> class Problems>
Pair conv_forward(const char* op, const library::Map& map, const ConvGeometry& geometry,
                  at::IntArrayRef y_shape, const at::Tensor& x_lo, const at::Tensor& x_hi,
                  const at::Tensor& w_lo,
                  const at::Tensor& w_hi, const std::optional<at::Tensor>& b_lo,
                  const std::optional<at::Tensor>& b_hi, bool input_nonneg) {
  if (x_lo.numel() == 0) {  // no terms (no batch, or no input channels): the bias, or zeros
    at::Tensor y_lo = at::zeros(y_shape, x_lo.options()), y_hi = at::zeros_like(y_lo);
    if (b_lo.has_value() && y_lo.numel() > 0) {
      y_lo.copy_(b_lo->reshape({1, -1, 1, 1}).expand(y_shape));
      y_hi.copy_(b_hi->reshape({1, -1, 1, 1}).expand(y_shape));
    }
    return {y_lo, y_hi};
  }
  const kernels::ConvGeometry geo = check_kernel_geometry(op, geometry);
  const auto x = contiguous_pair(x_lo, x_hi);
  const auto w = contiguous_pair(w_lo, w_hi);
  const auto bias = bias_pair(b_lo, b_hi);
  // The library path, if it serves this call; the fused kernel then runs only guarded by its
  // non-finite flag, into the library's result (library_path.h).
  const std::optional<library::Routed> routed =
      library::forward(op, map, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg);
  at::Tensor y_lo = routed ? routed->lo : x_lo.new_empty(y_shape);
  at::Tensor y_hi = routed ? routed->hi : x_lo.new_empty(y_shape);
  const bool* run_if = routed ? routed->nonfinite.const_data_ptr<bool>() : nullptr;
  TileRuntime rt(x_lo);
  dispatch(x_lo.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kernels::run_tile_problem(
        rt,
        Problems<T>::forward(geo, pointer<T>(x), pointer<T>(w), data_or_null<T>(bias.first),
                             data_or_null<T>(bias.second), mutable_data<T>(y_lo),
                             mutable_data<T>(y_hi)),
        input_nonneg, rt.sm_count(), kernels::kMinSplitDepth, run_if);
  });
  return {y_lo, y_hi};
}

// Runs the fused input-gradient (kWeight false) or weight-gradient (true) kernel into out_lo /
// out_hi, on the device only where `run_if` (a device flag) is true, or always (nullptr).
template <template <typename> class Problems, bool kWeight>
void launch_backward(const char* op, const kernels::ConvGeometry& geo,
                     const std::pair<at::Tensor, at::Tensor>& g,
                     const std::pair<at::Tensor, at::Tensor>& x,
                     const std::pair<at::Tensor, at::Tensor>& w, at::Tensor& out_lo,
                     at::Tensor& out_hi, const bool* run_if, bool input_nonneg) {
  TileRuntime rt(x.first);
  dispatch(x.first.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto launch = [&](const auto& problem) {
      kernels::run_tile_problem(rt, problem, input_nonneg, rt.sm_count(),
                                kernels::kMinSplitDepth, run_if);
    };
    T* lo = mutable_data<T>(out_lo);
    T* hi = mutable_data<T>(out_hi);
    if constexpr (kWeight) {
      launch(Problems<T>::weight_grad(geo, pointer<T>(g), pointer<T>(x), pointer<T>(w), lo, hi));
    } else {
      launch(Problems<T>::input_grad(geo, pointer<T>(g), pointer<T>(x), pointer<T>(w), lo, hi));
    }
  });
}

// The input gradient (kWeight false) or the weight gradient (true).
template <template <typename> class Problems, bool kWeight>
Pair conv_backward(const char* op, const library::Map& map, const ConvGeometry& geometry,
                   const at::Tensor& grad_lo,
                   const at::Tensor& grad_hi, const at::Tensor& x_lo, const at::Tensor& x_hi,
                   const at::Tensor& w_lo, const at::Tensor& w_hi, bool input_nonneg) {
  const at::Tensor& like = kWeight ? w_lo : x_lo;
  if (x_lo.numel() == 0 || grad_lo.numel() == 0) {  // no terms: zero gradients
    return {at::zeros_like(like, at::MemoryFormat::Contiguous),
            at::zeros_like(like, at::MemoryFormat::Contiguous)};
  }
  const kernels::ConvGeometry geo = check_kernel_geometry(op, geometry);
  const auto g = contiguous_pair(grad_lo, grad_hi);
  const auto x = contiguous_pair(x_lo, x_hi);
  const auto w = contiguous_pair(w_lo, w_hi);
  const std::optional<library::Routed> routed = library::backward(
      op, map, kWeight, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg);
  at::Tensor out_lo = routed ? routed->lo : like.new_empty(like.sizes());
  at::Tensor out_hi = routed ? routed->hi : like.new_empty(like.sizes());
  const bool* run_if = routed ? routed->nonfinite.const_data_ptr<bool>() : nullptr;
  launch_backward<Problems, kWeight>(op, geo, g, x, w, out_lo, out_hi, run_if, input_nonneg);
  return {out_lo, out_hi};
}

// The total weight gradient of a point weight w (`*_backward_weight_point`): the library's
// (library_path.h, weight_grad_point); where an operand is not finite the fused kernel's
// dw_lo + dw_hi replaces it, computed by a guarded rerun and selected by the device flag (no host
// synchronisation). Where the library path does not serve the call: the fused kernel's sum.
template <template <typename> class Problems>
at::Tensor conv_backward_weight_point(const char* op, const library::Map& map,
                                      const ConvGeometry& geometry, const at::Tensor& grad_lo,
                                      const at::Tensor& grad_hi, const at::Tensor& x_lo,
                                      const at::Tensor& x_hi, const at::Tensor& w,
                                      bool input_nonneg) {
  if (x_lo.numel() == 0 || grad_lo.numel() == 0) {  // no terms: zero gradients
    return at::zeros_like(w, at::MemoryFormat::Contiguous);
  }
  const kernels::ConvGeometry geo = check_kernel_geometry(op, geometry);
  const auto g = contiguous_pair(grad_lo, grad_hi);
  const auto x = contiguous_pair(x_lo, x_hi);
  const at::Tensor w_dense = w.contiguous();
  const std::optional<library::RoutedTotal> routed =
      library::weight_grad_point(op, map, grad_lo, grad_hi, x_lo, x_hi, w, input_nonneg);
  at::Tensor lo = w.new_empty(w.sizes()), hi = w.new_empty(w.sizes());
  const bool* run_if = routed ? routed->nonfinite.const_data_ptr<bool>() : nullptr;
  launch_backward<Problems, true>(op, geo, g, x, {w_dense, w_dense}, lo, hi, run_if,
                                  input_nonneg);
  const at::Tensor fused = lo.add_(hi);
  return routed ? at::where(routed->nonfinite, fused, routed->total) : fused;
}

}  // namespace inn::gpu
