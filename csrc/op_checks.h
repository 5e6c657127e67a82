// The argument checks of every registered op, shared by all backends: each CPU kernel entry, each
// CUDA launcher and the reference fallback (through the `_check_*` ops of ops.cpp) call one of
// these first, before any memory is read. Built into every _C, so the CUDA launchers' checks are
// exercised by the CPU tests too.
//
// Each checks everything the op reads: the ranks and shapes of all operands (x_hi like x_lo, w_hi
// like w_lo, the gradients like the output), one dtype and one device for all of them (a dtype
// with kernels on that device), strided layout, the bias given as a pair of shape (channels,) or
// not at all, and the geometry (csrc/conv_geometry.h, overflow-checked). Errors are Python
// ValueErrors naming the argument, what was expected and what came.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "conv_geometry.h"

namespace inn {

// The names the point ops (`*_backward_weight_point`) check under: they check their one weight w
// as both bounds, so their messages say that "w_lo" / "w_hi" there is w.
constexpr const char* kLinearPointChecks =
    "interval_linear_backward_weight_point (w checked as w_lo and w_hi)";
constexpr const char* kConv2dPointChecks =
    "interval_conv2d_backward_weight_point (w checked as w_lo and w_hi)";
constexpr const char* kConvTranspose2dPointChecks =
    "interval_conv_transpose2d_backward_weight_point (w checked as w_lo and w_hi)";

// x (*, K) as M rows, w (N, K).
struct LinearShape {
  int64_t M, N, K;
};

LinearShape check_linear(const char* op, const at::Tensor& x_lo, const at::Tensor& x_hi,
                         const at::Tensor& w_lo, const at::Tensor& w_hi,
                         const std::optional<at::Tensor>& b_lo,
                         const std::optional<at::Tensor>& b_hi);

// The backward ops: grad_lo and grad_hi shaped like the output, (*, N).
LinearShape check_linear_backward(const char* op, const at::Tensor& grad_lo,
                                  const at::Tensor& grad_hi, const at::Tensor& x_lo,
                                  const at::Tensor& x_hi, const at::Tensor& w_lo,
                                  const at::Tensor& w_hi);

ConvGeometry check_conv2d(const char* op, const at::Tensor& x_lo, const at::Tensor& x_hi,
                          const at::Tensor& w_lo, const at::Tensor& w_hi,
                          const std::optional<at::Tensor>& b_lo,
                          const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

ConvGeometry check_conv2d_backward(const char* op, const at::Tensor& grad_lo,
                                   const at::Tensor& grad_hi, const at::Tensor& x_lo,
                                   const at::Tensor& x_hi, const at::Tensor& w_lo,
                                   const at::Tensor& w_hi, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation,
                                   int64_t groups);

ConvGeometry check_conv_transpose2d(const char* op, const at::Tensor& x_lo,
                                    const at::Tensor& x_hi, const at::Tensor& w_lo,
                                    const at::Tensor& w_hi,
                                    const std::optional<at::Tensor>& b_lo,
                                    const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef output_padding,
                                    int64_t groups, at::IntArrayRef dilation);

ConvGeometry check_conv_transpose2d_backward(
    const char* op, const at::Tensor& grad_lo, const at::Tensor& grad_hi, const at::Tensor& x_lo,
    const at::Tensor& x_hi, const at::Tensor& w_lo, const at::Tensor& w_hi,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation);

// conv_geometry.h's kernel_geometry (the CUDA kernels' 32-bit fields), its errors as ValueErrors.
BasicConvGeometry<int> check_kernel_geometry(const char* op, const ConvGeometry& geo);

// The output shapes: conv2d (N, C_out, small_h, small_w), conv_transpose2d (N, C_out, big_h,
// big_w).
std::vector<int64_t> conv2d_output_shape(const ConvGeometry& geo);
std::vector<int64_t> conv_transpose2d_output_shape(const ConvGeometry& geo);

// (*, cols) -> (rows, cols); explicit rows, since reshape cannot infer them when cols == 0.
at::Tensor as_matrix(const at::Tensor& t, int64_t cols);

}  // namespace inn
