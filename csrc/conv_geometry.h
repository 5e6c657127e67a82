// The one geometry of the 2-D convolutions (conv2d, conv_transpose2d), built and validated here
// for every backend: the CPU kernels (csrc/cpu), the CUDA launchers (csrc/cuda, whose kernels hold
// it in 32-bit fields) and the CPU emulation of the CUDA kernels (python_tests/cuda_emulation).
// Torch-free.
//
// One vocabulary: conv2d and conv_transpose2d share one index relation between a "big" image and
// a "small" one,
//     big = small * stride - padding + kernel_offset * dilation        (per spatial dim),
// and one weight layout, (small channels, big channels / groups, kh, kw). For conv2d the big image
// is the input x and the small one the output y; for conv_transpose2d it is the other way round.
//
// Every size is derived with overflow-checked int64 arithmetic: a stride or dilation of 2^62 is
// an error naming the argument, never a wrapped size.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "interval_math.h"  // INN_HD

namespace inn {

// Channels and spatial sizes in I (int64_t on the host, int in the CUDA kernels); batch and
// pixel counts always in 64 bits (Wide: int64_t on the host, the kernels' long long index_t).
template <typename I>
struct BasicConvGeometry {
  using Wide = std::conditional_t<(sizeof(I) >= 8), I, long long>;
  Wide batch = 0;
  I groups = 1;
  I big_c = 0, big_h = 0, big_w = 0;  // channels: all groups
  I small_c = 0, small_h = 0, small_w = 0;
  I kernel_h = 1, kernel_w = 1;
  I stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;

  INN_HD I big_per_group() const { return big_c / groups; }
  INN_HD I small_per_group() const { return small_c / groups; }
  INN_HD I taps() const { return kernel_h * kernel_w; }
  INN_HD Wide big_pixels() const { return static_cast<Wide>(big_h) * big_w; }
  INN_HD Wide small_pixels() const { return static_cast<Wide>(small_h) * small_w; }
  // Rows of one group's im2col matrix over the big image: (big channel in group, kh, kw).
  INN_HD Wide big_depth() const { return static_cast<Wide>(big_per_group()) * taps(); }
};

using ConvGeometry = BasicConvGeometry<int64_t>;

// A bad size or argument; the message names it. Op entries turn it into a Python ValueError.
struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

namespace geometry_detail {

inline std::string pair(const int64_t* v) {
  return "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ")";
}

[[noreturn]] inline void fail(const char* op, const std::string& message) {
  throw ArgumentError(std::string(op) + ": " + message);
}

// a * b + c, or an error naming `what` when it leaves int64.
inline int64_t mul_add(const char* op, const char* what, int64_t a, int64_t b, int64_t c = 0) {
  int64_t product, sum;
  if (__builtin_mul_overflow(a, b, &product) || __builtin_add_overflow(product, c, &sum)) {
    fail(op, std::string(what) + " overflows 64-bit integers (" + std::to_string(a) + " * " +
                 std::to_string(b) + " + " + std::to_string(c) + ")");
  }
  return sum;
}

inline int64_t add(const char* op, const char* what, int64_t a, int64_t b) {
  return mul_add(op, what, a, 1, b);
}

// The arguments every convolution shares.
inline void check_arguments(const char* op, const int64_t* x, const int64_t* w,
                            const int64_t* stride, const int64_t* padding,
                            const int64_t* dilation, int64_t groups) {
  if (stride[0] < 1 || stride[1] < 1) fail(op, "stride must be >= 1, got " + pair(stride));
  if (dilation[0] < 1 || dilation[1] < 1) {
    fail(op, "dilation must be >= 1, got " + pair(dilation));
  }
  if (padding[0] < 0 || padding[1] < 0) fail(op, "padding must be >= 0, got " + pair(padding));
  if (groups < 1) fail(op, "groups must be >= 1, got " + std::to_string(groups));
  if (w[2] < 1 || w[3] < 1) {
    fail(op, "the kernel size must be >= 1 in each dim, got " + pair(w + 2) +
                 " (w_lo's last two dims)");
  }
  if (x[2] < 1 || x[3] < 1) {
    fail(op, "the input's spatial size must be >= 1 in each dim, got " + pair(x + 2));
  }
}

// The output's bytes (8 per element at most) fit in int64.
inline void check_elements(const char* op, int64_t n, int64_t c, int64_t h, int64_t w) {
  const char* what = "the output's size in bytes";
  mul_add(op, what, mul_add(op, what, mul_add(op, what, mul_add(op, what, n, c), h), w), 8);
}

// dilation * (kernel - 1) + 1 per dim: the extent of the dilated kernel.
inline int64_t dilated_kernel(const char* op, int64_t kernel, int64_t dilation) {
  return mul_add(op, "the dilated kernel size (dilation * (kernel - 1) + 1)", dilation,
                 kernel - 1, 1);
}

}  // namespace geometry_detail

// conv2d output size along one dim (>= 1, or an error naming the sizes).
inline int64_t conv_output_size(const char* op, int64_t size, int64_t kernel, int64_t stride,
                                int64_t padding, int64_t dilation) {
  using namespace geometry_detail;
  const int64_t padded = mul_add(op, "the padded input size", padding, 2, size);
  const int64_t extent = dilated_kernel(op, kernel, dilation);
  if (padded < extent) {
    fail(op, "input size " + std::to_string(size) + " (padded by " + std::to_string(padding) +
                 " on each side) is smaller than the dilated kernel " + std::to_string(extent));
  }
  return (padded - extent) / stride + 1;
}

// conv_transpose2d output size along one dim: (size - 1) * stride - 2 * padding + dilation *
// (kernel - 1) + output_padding + 1 (>= 1, or an error).
inline int64_t conv_transpose_output_size(const char* op, int64_t size, int64_t kernel,
                                          int64_t stride, int64_t padding,
                                          int64_t output_padding, int64_t dilation) {
  using namespace geometry_detail;
  const int64_t spread = mul_add(op, "the strided input size", size - 1, stride);
  const int64_t extent = dilated_kernel(op, kernel, dilation);
  const int64_t out = add(op, "the output size", add(op, "the output size", spread, extent),
                          output_padding);
  const int64_t cut = mul_add(op, "the padding", padding, 2);
  if (out - cut < 1) {
    fail(op, "padding " + std::to_string(padding) + " leaves no output pixels for input size " +
                 std::to_string(size) + " (output size " + std::to_string(out - cut) + ")");
  }
  return out - cut;
}

// conv2d: x (N, C, H, W) is the big image, w (C_out, C / groups, kh, kw), y the small one.
inline ConvGeometry conv2d_geometry(const char* op, const int64_t* x, const int64_t* w,
                                    const int64_t* stride, const int64_t* padding,
                                    const int64_t* dilation, int64_t groups) {
  using namespace geometry_detail;
  check_arguments(op, x, w, stride, padding, dilation, groups);
  if (w[0] < groups || w[0] % groups != 0) {
    fail(op, "w_lo has " + std::to_string(w[0]) +
                 " output channels, expected a positive multiple of groups " +
                 std::to_string(groups));
  }
  if (x[1] != mul_add(op, "weight in-channels x groups", w[1], groups)) {
    fail(op, "x_lo has " + std::to_string(x[1]) + " channels, expected " +
                 std::to_string(w[1] * groups) + " (weight in-channels " + std::to_string(w[1]) +
                 " x groups " + std::to_string(groups) + ")");
  }
  ConvGeometry geo;
  geo.batch = x[0];
  geo.groups = groups;
  geo.big_c = x[1], geo.big_h = x[2], geo.big_w = x[3];
  geo.small_c = w[0];
  geo.kernel_h = w[2], geo.kernel_w = w[3];
  geo.stride_h = stride[0], geo.stride_w = stride[1];
  geo.pad_h = padding[0], geo.pad_w = padding[1];
  geo.dil_h = dilation[0], geo.dil_w = dilation[1];
  geo.small_h = conv_output_size(op, x[2], w[2], stride[0], padding[0], dilation[0]);
  geo.small_w = conv_output_size(op, x[3], w[3], stride[1], padding[1], dilation[1]);
  check_elements(op, geo.batch, geo.small_c, geo.small_h, geo.small_w);
  return geo;
}

// conv_transpose2d: x (N, C_in, H, W) is the small image, w (C_in, C_out / groups, kh, kw), y the
// big one.
inline ConvGeometry conv_transpose2d_geometry(const char* op, const int64_t* x, const int64_t* w,
                                              const int64_t* stride, const int64_t* padding,
                                              const int64_t* output_padding, int64_t groups,
                                              const int64_t* dilation) {
  using namespace geometry_detail;
  check_arguments(op, x, w, stride, padding, dilation, groups);
  for (int d = 0; d < 2; ++d) {
    if (output_padding[d] < 0 || output_padding[d] >= std::max(stride[d], dilation[d])) {
      fail(op, "output_padding " + pair(output_padding) +
                   " must be >= 0 and smaller than stride " + pair(stride) + " or dilation " +
                   pair(dilation) + " in each dim");
    }
  }
  if (w[0] < groups || w[0] % groups != 0) {
    fail(op, "w_lo has " + std::to_string(w[0]) +
                 " input channels (dim 0), expected a positive multiple of groups " +
                 std::to_string(groups));
  }
  if (x[1] != w[0]) {
    fail(op, "x_lo has " + std::to_string(x[1]) + " channels, expected " + std::to_string(w[0]) +
                 " (w_lo.shape[0])");
  }
  if (w[1] < 1) fail(op, "w_lo has 0 output channels per group (dim 1); expected >= 1");
  ConvGeometry geo;
  geo.batch = x[0];
  geo.groups = groups;
  geo.small_c = x[1], geo.small_h = x[2], geo.small_w = x[3];
  geo.big_c = mul_add(op, "the output channels (w_lo.shape[1] x groups)", w[1], groups);
  geo.kernel_h = w[2], geo.kernel_w = w[3];
  geo.stride_h = stride[0], geo.stride_w = stride[1];
  geo.pad_h = padding[0], geo.pad_w = padding[1];
  geo.dil_h = dilation[0], geo.dil_w = dilation[1];
  geo.big_h = conv_transpose_output_size(op, x[2], w[2], stride[0], padding[0],
                                         output_padding[0], dilation[0]);
  geo.big_w = conv_transpose_output_size(op, x[3], w[3], stride[1], padding[1],
                                         output_padding[1], dilation[1]);
  check_elements(op, geo.batch, geo.big_c, geo.big_h, geo.big_w);
  return geo;
}

// The geometry in the CUDA kernels' 32-bit fields: every channel count, size and argument fits an
// int, and so do the (channel, tap) depth indices and the pixels of one image, which the kernels
// decode in 32 bits. An error names what does not fit.
inline BasicConvGeometry<int> kernel_geometry(const char* op, const ConvGeometry& geo) {
  using geometry_detail::fail;
  const auto narrow = [&](const char* what, int64_t value) {
    if (value < 0 || value > std::numeric_limits<int>::max()) {
      fail(op, std::string(what) + " " + std::to_string(value) +
                   " exceeds the CUDA kernels' 32-bit index range");
    }
    return static_cast<int>(value);
  };
  BasicConvGeometry<int> k;
  k.batch = geo.batch;
  k.groups = narrow("groups", geo.groups);
  k.big_c = narrow("channels", geo.big_c);
  k.big_h = narrow("height", geo.big_h);
  k.big_w = narrow("width", geo.big_w);
  k.small_c = narrow("channels", geo.small_c);
  k.small_h = narrow("height", geo.small_h);
  k.small_w = narrow("width", geo.small_w);
  k.kernel_h = narrow("kernel height", geo.kernel_h);
  k.kernel_w = narrow("kernel width", geo.kernel_w);
  k.stride_h = narrow("stride", geo.stride_h);
  k.stride_w = narrow("stride", geo.stride_w);
  k.pad_h = narrow("padding", geo.pad_h);
  k.pad_w = narrow("padding", geo.pad_w);
  k.dil_h = narrow("dilation", geo.dil_h);
  k.dil_w = narrow("dilation", geo.dil_w);
  // Products and sums the kernels form in int (exact in 128 bits, each factor already < 2^31).
  using wide = __int128;
  const auto fits = [&](const char* what, wide value) {
    if (value > std::numeric_limits<int>::max()) {
      fail(op, std::string(what) + " exceeds the CUDA kernels' 32-bit index range");
    }
  };
  fits("the strided output plus the dilated kernel and padding (height)",
       wide(k.small_h) * k.stride_h + wide(k.dil_h) * k.kernel_h + k.big_h + 2 * wide(k.pad_h));
  fits("the strided output plus the dilated kernel and padding (width)",
       wide(k.small_w) * k.stride_w + wide(k.dil_w) * k.kernel_w + k.big_w + 2 * wide(k.pad_w));
  fits("stride x dilation (height)", wide(k.stride_h) * k.dil_h);
  fits("stride x dilation (width)", wide(k.stride_w) * k.dil_w);
  fits("groups x stride phases", wide(k.groups) * k.stride_h * k.stride_w);
  fits("channels x kernel taps", wide(std::max(k.big_c, k.small_c)) * k.kernel_h * k.kernel_w);
  fits("pixels per image", std::max(wide(k.big_h) * k.big_w, wide(k.small_h) * k.small_w));
  return k;
}

}  // namespace inn
