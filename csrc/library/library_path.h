// The library path of the interval ops: the cases that are linear in the bounds, computed with
// ATen's GEMM / convolution (cuBLAS / cuDNN on CUDA, with their TF32 settings; MKL / oneDNN on
// the CPU), instead of the fused interval kernels.
//
// Two cases are linear:
//  * input_nonneg: every bound is one product chosen by the weight's sign (sign-split weights):
//      y_lo = x_lo·a⁺ + x_hi·a⁻,  y_hi = x_hi·b⁺ + x_lo·b⁻   (w in [a, b], v⁺ = max(v, 0), ...)
//  * point weights (w_lo and w_hi are the same tensor), any input sign:
//      y_lo = l·W⁺ + h·W⁻,  y_hi = h·W⁺ + l·W⁻  =  W·c ∓ |W|·r   (c, r: midpoint, radius)
// and so are their gradients (weight gradients: products selected by the weight's sign).
//
// The launchers call these first, after their own checks; nullopt means "run the fused kernel".
// Either way the call is counted for `inn-cuda info` / `bench` (algorithm.h).
// The split computes 0 * inf = NaN where the kernels' bound convention (inn::mul_bound) gives 0,
// so calls with a non-finite operand must get the fused kernel's result: on the CPU they are
// routed there (a host-side check), on CUDA the library result comes with a device flag and the
// launcher runs its fused kernel guarded by that flag (no host synchronisation).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>
#include <vector>

namespace inn::library {

// The bilinear map of an op: linear (x: (M, K), w: (N, K)), conv2d or conv_transpose2d.
struct Map {
  enum class Kind { kLinear, kConv, kConvTranspose };
  Kind kind = Kind::kLinear;
  std::vector<int64_t> stride, padding, dilation, output_padding;
  int64_t groups = 1;

  static Map linear() { return {}; }
  static Map conv2d(at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                    int64_t groups) {
    return {Kind::kConv, stride.vec(), padding.vec(), dilation.vec(), {0, 0}, groups};
  }
  static Map conv_transpose2d(at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef output_padding, int64_t groups,
                              at::IntArrayRef dilation) {
    return {Kind::kConvTranspose, stride.vec(), padding.vec(), dilation.vec(),
            output_padding.vec(), groups};
  }
};

// A library result. `nonfinite` is defined on CUDA only: a bool scalar on the device, true when
// an operand is not finite; the launcher then runs its fused kernel into lo/hi guarded by it.
struct Routed {
  at::Tensor lo, hi;
  at::Tensor nonfinite;
};

std::optional<Routed> forward(const char* op, const Map& map, const at::Tensor& x_lo,
                              const at::Tensor& x_hi, const at::Tensor& w_lo,
                              const at::Tensor& w_hi, const std::optional<at::Tensor>& b_lo,
                              const std::optional<at::Tensor>& b_hi, bool input_nonneg);

// The input gradient (weight false) or the weight gradient (true).
std::optional<Routed> backward(const char* op, const Map& map, bool weight,
                               const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                               const at::Tensor& x_lo, const at::Tensor& x_hi,
                               const at::Tensor& w_lo, const at::Tensor& w_hi, bool input_nonneg);

// A library result of one tensor, with Routed's `nonfinite` flag (CUDA only).
struct RoutedTotal {
  at::Tensor total;
  at::Tensor nonfinite;
};

// The total weight gradient dw_lo + dw_hi of a point weight w (w_lo and w_hi the same tensor:
// the `*_backward_weight_point` ops), which autograd would otherwise form from the two bounds'
// gradients. With S = g_lo + g_hi, D = g_hi - g_lo, c2 = l + h, r2 = h - l (reduced over the
// batch by the weight adjoint):
//   w > 0 (nonneg mode: w >= 0):  g_lo·l + g_hi·h = (S·c2 + D·r2) / 2
//   w < 0:                        g_lo·h + g_hi·l = (S·c2 - D·r2) / 2
//   w == 0, general mode:         (g_lo + g_hi)·l = S·l      (both bounds' ties select l)
// Two products, a third (S·l) only where some weight is 0 in general mode (on the CPU a host
// check skips it; on CUDA it is always computed: no data-dependent synchronisation).
std::optional<RoutedTotal> weight_grad_point(const char* op, const Map& map,
                                             const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                                             const at::Tensor& x_lo, const at::Tensor& x_hi,
                                             const at::Tensor& w, bool input_nonneg);

}  // namespace inn::library
