// The argument checks of every registered op (op_checks.h).
#include "op_checks.h"

#include <c10/util/Exception.h>

#include <initializer_list>
#include <string>
#include <utility>

namespace inn {
namespace {

using Named = std::pair<const char*, const at::Tensor*>;

bool kernel_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
    case at::kDouble: return true;
    case at::kHalf:
    case at::kBFloat16: return t.is_cuda();
    default: return false;
  }
}

// One dtype, one device and strided layout for every tensor given; the first sets them.
void check_tensors(const char* op, std::initializer_list<Named> named) {
  const auto& [first_name, first] = *named.begin();
  for (const auto& [name, t] : named) {
    TORCH_CHECK_VALUE(t->layout() == at::kStrided, op, ": ", name,
                      " must be a dense (strided) tensor, got layout ", t->layout());
    TORCH_CHECK_VALUE(t->device() == first->device(), op, ": ", name, " is on ", t->device(),
                      ", expected ", first->device(), " like ", first_name);
    TORCH_CHECK_VALUE(t->scalar_type() == first->scalar_type(), op, ": ", name, " has dtype ",
                     t->scalar_type(), ", expected ", first->scalar_type(), " like ", first_name,
                     " (mixed dtypes are not cast silently)");
  }
  TORCH_CHECK_VALUE(kernel_dtype(*first), op, ": ", first_name, " has dtype ",
                   first->scalar_type(), "; on ", first->device().type(),
                   " the supported dtypes are float32, float64",
                   first->is_cuda() ? ", float16, bfloat16" : "");
}

void check_same_shape(const char* op, const char* name, const at::Tensor& t,
                      const char* like_name, const at::Tensor& like) {
  TORCH_CHECK_VALUE(t.sizes() == like.sizes(), op, ": ", name, " has shape ", t.sizes(),
                    ", expected ", like.sizes(), " like ", like_name);
}

void check_rank(const char* op, const char* name, const at::Tensor& t, int64_t rank,
                const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == rank, op, ": ", name, " must have ", rank, " dims ", layout,
                    ", got shape ", t.sizes());
}

// Both bounds of x and w: ranks and x_hi / w_hi like x_lo / w_lo, one dtype and device.
void check_pair_shapes(const char* op, const at::Tensor& x_lo, const at::Tensor& x_hi,
                        const at::Tensor& w_lo, const at::Tensor& w_hi) {
  check_same_shape(op, "x_hi", x_hi, "x_lo", x_lo);
  check_same_shape(op, "w_hi", w_hi, "w_lo", w_lo);
}

// The bias: both or neither, each of shape (channels,), like x_lo in dtype and device.
void check_bias(const char* op, const at::Tensor& x_lo, const std::optional<at::Tensor>& b_lo,
                const std::optional<at::Tensor>& b_hi, int64_t channels) {
  TORCH_CHECK_VALUE(b_lo.has_value() == b_hi.has_value(), op, ": ",
                    b_lo.has_value() ? "b_lo was given without b_hi"
                                     : "b_hi was given without b_lo",
                    "; pass both or neither");
  if (!b_lo.has_value()) return;
  check_tensors(op, {{"x_lo", &x_lo}, {"b_lo", &*b_lo}, {"b_hi", &*b_hi}});
  for (const auto& [name, b] : {Named{"b_lo", &*b_lo}, Named{"b_hi", &*b_hi}}) {
    TORCH_CHECK_VALUE(b->dim() == 1 && b->size(0) == channels, op, ": ", name, " has shape ",
                      b->sizes(), ", expected (", channels,
                      ",) (one entry per output channel)");
  }
}

void check_grad(const char* op, const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                at::IntArrayRef expected) {
  for (const auto& [name, g] : {Named{"grad_lo", &grad_lo}, Named{"grad_hi", &grad_hi}}) {
    TORCH_CHECK_VALUE(g->sizes() == expected, op, ": ", name, " has shape ", g->sizes(),
                      ", expected the output shape ", expected);
  }
}

// A conv argument list of `size` values.
void check_list(const char* op, const char* name, at::IntArrayRef values, size_t size) {
  TORCH_CHECK_VALUE(values.size() == size, op, ": ", name, " must have ", size,
                    " values, got ", values);
}

template <typename F>
auto geometry(F&& build) {
  try {
    return build();
  } catch (const ArgumentError& error) {
    TORCH_CHECK_VALUE(false, error.what());
    throw;  // not reached
  }
}

std::vector<int64_t> linear_output_shape(const at::Tensor& x, int64_t N) {
  auto shape = x.sizes().vec();
  shape.back() = N;
  return shape;
}

// What conv2d and conv_transpose2d check before their geometry, in this order: the four operands,
// the ranks (with the layouts named in the errors), the pairs' shapes, the lengths of the
// per-dimension lists.
void check_conv_operands(const char* op, const at::Tensor& x_lo, const at::Tensor& x_hi,
                         const at::Tensor& w_lo, const at::Tensor& w_hi, const char* x_layout,
                         const char* w_layout,
                         std::initializer_list<std::pair<const char*, at::IntArrayRef>> lists) {
  check_tensors(op, {{"x_lo", &x_lo}, {"x_hi", &x_hi}, {"w_lo", &w_lo}, {"w_hi", &w_hi}});
  check_rank(op, "x_lo", x_lo, 4, x_layout);
  check_rank(op, "w_lo", w_lo, 4, w_layout);
  check_pair_shapes(op, x_lo, x_hi, w_lo, w_hi);
  for (const auto& [name, values] : lists) check_list(op, name, values, 2);
}

}  // namespace

at::Tensor as_matrix(const at::Tensor& t, int64_t cols) {
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) rows *= t.size(d);
  return t.reshape({rows, cols});
}

LinearShape check_linear(const char* op, const at::Tensor& x_lo, const at::Tensor& x_hi,
                         const at::Tensor& w_lo, const at::Tensor& w_hi,
                         const std::optional<at::Tensor>& b_lo,
                         const std::optional<at::Tensor>& b_hi) {
  check_tensors(op, {{"x_lo", &x_lo}, {"x_hi", &x_hi}, {"w_lo", &w_lo}, {"w_hi", &w_hi}});
  check_rank(op, "w_lo", w_lo, 2, "(out_features, in_features)");
  check_pair_shapes(op, x_lo, x_hi, w_lo, w_hi);
  TORCH_CHECK_VALUE(x_lo.dim() >= 1 && x_lo.size(-1) == w_lo.size(1), op, ": x_lo has shape ",
                    x_lo.sizes(), ", expected (*, ", w_lo.size(1), ") to match w_lo of shape ",
                    w_lo.sizes());
  const int64_t N = w_lo.size(0), K = w_lo.size(1);
  check_bias(op, x_lo, b_lo, b_hi, N);
  int64_t M = 1;  // rows: may overflow when K == 0 (numel 0 with huge leading dims)
  for (int64_t d = 0; d + 1 < x_lo.dim(); ++d) {
    TORCH_CHECK_VALUE(!__builtin_mul_overflow(M, x_lo.size(d), &M), op, ": x_lo of shape ",
                      x_lo.sizes(), " has more rows than 64-bit integers hold");
  }
  int64_t out_numel;
  TORCH_CHECK_VALUE(!__builtin_mul_overflow(M, N, &out_numel), op, ": the output (", M, ", ", N,
                    ") has more elements than 64-bit integers hold");
  return {M, N, K};
}

LinearShape check_linear_backward(const char* op, const at::Tensor& grad_lo,
                                  const at::Tensor& grad_hi, const at::Tensor& x_lo,
                                  const at::Tensor& x_hi, const at::Tensor& w_lo,
                                  const at::Tensor& w_hi) {
  check_tensors(op, {{"x_lo", &x_lo}, {"x_hi", &x_hi}, {"w_lo", &w_lo}, {"w_hi", &w_hi},
                     {"grad_lo", &grad_lo}, {"grad_hi", &grad_hi}});
  const LinearShape shape = check_linear(op, x_lo, x_hi, w_lo, w_hi, std::nullopt, std::nullopt);
  check_grad(op, grad_lo, grad_hi, linear_output_shape(x_lo, shape.N));
  return shape;
}

BasicConvGeometry<int> check_kernel_geometry(const char* op, const ConvGeometry& geo) {
  return geometry([&] { return kernel_geometry(op, geo); });
}

std::vector<int64_t> conv2d_output_shape(const ConvGeometry& geo) {
  return {geo.batch, geo.small_c, geo.small_h, geo.small_w};
}

std::vector<int64_t> conv_transpose2d_output_shape(const ConvGeometry& geo) {
  return {geo.batch, geo.big_c, geo.big_h, geo.big_w};
}

ConvGeometry check_conv2d(const char* op, const at::Tensor& x_lo, const at::Tensor& x_hi,
                          const at::Tensor& w_lo, const at::Tensor& w_hi,
                          const std::optional<at::Tensor>& b_lo,
                          const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_conv_operands(op, x_lo, x_hi, w_lo, w_hi, "(N, C, H, W)", "(C_out, C_in / groups, kH, kW)",
                      {{"stride", stride}, {"padding", padding}, {"dilation", dilation}});
  const ConvGeometry geo = geometry([&] {
    return conv2d_geometry(op, x_lo.sizes().data(), w_lo.sizes().data(), stride.data(),
                           padding.data(), dilation.data(), groups);
  });
  check_bias(op, x_lo, b_lo, b_hi, geo.small_c);
  return geo;
}

ConvGeometry check_conv2d_backward(const char* op, const at::Tensor& grad_lo,
                                   const at::Tensor& grad_hi, const at::Tensor& x_lo,
                                   const at::Tensor& x_hi, const at::Tensor& w_lo,
                                   const at::Tensor& w_hi, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation,
                                   int64_t groups) {
  check_tensors(op, {{"x_lo", &x_lo}, {"x_hi", &x_hi}, {"w_lo", &w_lo}, {"w_hi", &w_hi},
                     {"grad_lo", &grad_lo}, {"grad_hi", &grad_hi}});
  const ConvGeometry geo = check_conv2d(op, x_lo, x_hi, w_lo, w_hi, std::nullopt, std::nullopt,
                                        stride, padding, dilation, groups);
  check_grad(op, grad_lo, grad_hi, conv2d_output_shape(geo));
  return geo;
}

ConvGeometry check_conv_transpose2d(const char* op, const at::Tensor& x_lo,
                                    const at::Tensor& x_hi, const at::Tensor& w_lo,
                                    const at::Tensor& w_hi,
                                    const std::optional<at::Tensor>& b_lo,
                                    const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef output_padding,
                                    int64_t groups, at::IntArrayRef dilation) {
  check_conv_operands(op, x_lo, x_hi, w_lo, w_hi, "(N, C_in, H, W)",
                      "(C_in, C_out / groups, kH, kW)",
                      {{"stride", stride},
                       {"padding", padding},
                       {"output_padding", output_padding},
                       {"dilation", dilation}});
  const ConvGeometry geo = geometry([&] {
    return conv_transpose2d_geometry(op, x_lo.sizes().data(), w_lo.sizes().data(),
                                     stride.data(), padding.data(), output_padding.data(), groups,
                                     dilation.data());
  });
  check_bias(op, x_lo, b_lo, b_hi, geo.big_c);
  return geo;
}

ConvGeometry check_conv_transpose2d_backward(
    const char* op, const at::Tensor& grad_lo, const at::Tensor& grad_hi, const at::Tensor& x_lo,
    const at::Tensor& x_hi, const at::Tensor& w_lo, const at::Tensor& w_hi,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation) {
  check_tensors(op, {{"x_lo", &x_lo}, {"x_hi", &x_hi}, {"w_lo", &w_lo}, {"w_hi", &w_hi},
                     {"grad_lo", &grad_lo}, {"grad_hi", &grad_hi}});
  const ConvGeometry geo =
      check_conv_transpose2d(op, x_lo, x_hi, w_lo, w_hi, std::nullopt, std::nullopt, stride,
                             padding, output_padding, groups, dilation);
  check_grad(op, grad_lo, grad_hi, conv_transpose2d_output_shape(geo));
  return geo;
}

}  // namespace inn
