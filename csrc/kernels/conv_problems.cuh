// 2-D convolutions (NCHW, contiguous) as tile problems (interval_tile_kernel.cuh).
//
// The geometry (csrc/conv_geometry.h: one "big" and one "small" image, built and validated
// there) is held here in 32-bit fields (kernel_geometry checks that everything fits). For conv2d
// the big image is x and the small one y; for conv_transpose2d the other way round. So three index
// maps cover all six ops:
//
//   ConvSmallOut: a small image   rows s (small channel in group), cols small pixels,
//                                  depth (big channel in group, kh, kw);
//                 A = weight, B = big image gathered im2col-style (zero outside).
//                 conv2d forward (B = x), conv_transpose2d input grad (B = grad y, own x).
//   ConvBigOut:   a big image     rows big channel in group, cols big pixels of one stride phase,
//                                  depth (small channel in group, the phase's kernel taps);
//                 A = weight, B = small image at the pixel a term maps from. Splitting the big
//                 pixels by stride phase (block groups = groups x stride_h x stride_w) keeps only
//                 taps with an integer solution in the depth.
//                 conv_transpose2d forward (B = x), conv2d input grad (B = grad y, own x).
//   ConvWeightOut: the weight     rows s, cols (big channel in group, kh, kw), depth small pixels;
//                 A = small image, B = big image gathered im2col-style.
//                 conv2d weight grad (A = grad y, B = x), conv_transpose2d weight grad
//                 (A = x, B = grad y).
// Each problem decodes a depth index (a (channel, tap) pair or a (batch, pixel) position: integer
// divisions) once per block and step into a DepthIndex table (interval_tile_kernel.cuh): the
// entry holds the offsets and tap displacements, and a row's (column's) cursor the rest, so a
// load in the depth loop only adds and compares.
// Where an im2col gather meets padding, the term is zero-valued (as in the reference's explicitly
// padded formulation: a NaN or infinite weight there still makes NaN). A big-image output has no
// term at all where no small pixel maps (padding, or between strided pixels): for the conv2d input
// gradient that is exactly the gradient, and for the conv_transpose2d forward it is what PyTorch
// and the reference (which scatters instead of inserting zeros) compute.
//
// Torch-free.
#pragma once

#include "../conv_geometry.h"
#include "interval_tile_kernel.cuh"

namespace inn::kernels {

using ConvGeometry = BasicConvGeometry<int>;

// q = a / b and r = a % b (a >= 0, b > 0), in 32 bits when both fit: far cheaper on a GPU.
INN_HD void divmod(index_t a, index_t b, index_t& q, index_t& r) {
  if (a <= 0xffffffffLL && b <= 0xffffffffLL) {
    const unsigned ua = static_cast<unsigned>(a), ub = static_cast<unsigned>(b);
    const unsigned uq = ua / ub;
    q = uq;
    r = ua - uq * ub;
  } else {
    q = a / b;
    r = a - q * b;
  }
}

// A channel-tap depth index (channel * taps + tap; fits an int, the launchers check) split into
// channel, kernel row and kernel column.
struct ChannelTap {
  int channel, kh, kw;
};

INN_HD ChannelTap channel_tap(const ConvGeometry& geo, index_t t) {
  const int ti = static_cast<int>(t);
  const int taps = geo.taps();
  const int channel = ti / taps;
  const int tap = ti - channel * taps;
  const int kh = tap / geo.kernel_w;
  return {channel, kh, tap - kh * geo.kernel_w};
}

// A pixel index over batch x image split into batch and row/column.
struct Pixel {
  index_t batch;
  int h, w;
};

INN_HD Pixel pixel_of(index_t p, index_t pixels, int width) {
  index_t batch, rest;
  divmod(p, pixels, batch, rest);
  const int h = static_cast<int>(rest / width);
  return {batch, h, static_cast<int>(rest) - h * width};
}

template <typename Elem, TermKind kTermKind>
struct ConvSmallOut : TileProblem<Elem> {
  using typename TileProblem<Elem>::T;
  using typename TileProblem<Elem>::Acc;
  static constexpr TermKind kKind = kTermKind;
  static constexpr bool kAFirst = false;  // B (input x or grad y) is the first operand
  static constexpr bool kALoadsAlongDepth = true;
  static constexpr bool kBLoadsAlongDepth = false;
  ConvGeometry geo;
  IntervalPointer<T> weight, big, own;

  // Depth index t = (big channel in group, kh, kw).
  struct DepthIndex {
    int t;           // A: the offset in a weight row
    int dh, dw;      // B: the tap's displacement, kh * dil_h and kw * dil_w
    index_t offset;  // B: channel * big_pixels + dh * big_w + dw
  };
  static constexpr bool kDepthTable = true;
  INN_HD DepthIndex depth_index(int, index_t t) const {
    const ChannelTap ct = channel_tap(geo, t);
    const int dh = ct.kh * geo.dil_h, dw = ct.kw * geo.dil_w;
    return {static_cast<int>(t), dh, dw,
            ct.channel * geo.big_pixels() + static_cast<index_t>(dh) * geo.big_w + dw};
  }

  // A: the weights of small channel s: contiguous over (big channel in group, tap).
  using ACursor = index_t;
  INN_HD ACursor a_cursor(int g, index_t s) const {
    return (static_cast<index_t>(g) * geo.small_per_group() + s) * this->shape.depth;
  }
  INN_HD void load_a(int, ACursor row, const DepthIndex& d, Acc& v0, Acc& v1) const {
    weight.load(row + d.t, v0, v1);
  }

  // B: the big image around small pixel p: the top-left tap position (h0, w0) of its group's
  // first channel, and its offset (outside the image when padded).
  struct BCursor {
    index_t origin;
    int h0, w0;
  };
  INN_HD BCursor b_cursor(int g, index_t p) const {
    const Pixel px = pixel_of(p, geo.small_pixels(), geo.small_w);
    const int h0 = px.h * geo.stride_h - geo.pad_h, w0 = px.w * geo.stride_w - geo.pad_w;
    return {(px.batch * geo.big_c + static_cast<index_t>(g) * geo.big_per_group()) *
                    geo.big_pixels() +
                static_cast<index_t>(h0) * geo.big_w + w0,
            h0, w0};
  }
  INN_HD void load_b(int, const BCursor& at, const DepthIndex& d, Acc& v0, Acc& v1) const {
    const int h = at.h0 + d.dh, w = at.w0 + d.dw;
    if (h < 0 || h >= geo.big_h || w < 0 || w >= geo.big_w) return;  // zero padding
    big.load(at.origin + d.offset, v0, v1);
  }

  INN_HD index_t out_index(int g, index_t s, index_t p) const {
    index_t batch, pixel;
    divmod(p, geo.small_pixels(), batch, pixel);
    return (batch * geo.small_c + static_cast<index_t>(g) * geo.small_per_group() + s) *
               geo.small_pixels() +
           pixel;
  }
  INN_HD void load_own(int g, index_t s, index_t p, Acc& v0, Acc& v1) const {
    own.load(out_index(g, s, p), v0, v1);
  }
};

// The kernel taps k in [0, kernel) with k * dilation = phase (mod stride): first + i * step for
// i < count.
struct TapRange {
  int first, step, count;
};

INN_HD TapRange taps_of_phase(int phase, int kernel, int stride, int dilation) {
  int step = 1;  // stride / gcd(stride, dilation)
  while ((step * dilation) % stride != 0) ++step;
  int first = 0;
  while (first < step && (first * dilation) % stride != phase) ++first;
  if (first == step || first >= kernel) return {0, step, 0};
  return {first, step, (kernel - first + step - 1) / step};
}

// The big pixels of one stride phase along one dim: b = first + i * stride, (b + pad) % stride =
// phase, i < count. Through a tap k with k * dilation = phase + q * stride, big pixel i of the
// phase meets small pixel (b + pad - k * dilation) / stride = origin + i - q.
struct PhaseLine {
  int first, count, origin;
};

INN_HD PhaseLine pixels_of_phase(int phase, int size, int stride, int pad) {
  const int first = ((phase - pad) % stride + stride) % stride;
  return {first, first < size ? (size - first + stride - 1) / stride : 0,
          (first + pad - phase) / stride};
}

// A big image's pixels split by stride phase: within a phase every pixel meets the small image
// through the same taps, so the depth only holds taps that can contribute (a 2x2 stride-2
// transposed convolution needs 1 of its 4 taps per pixel, not 4 with 3 of them zero).
template <typename Elem, TermKind kTermKind>
struct ConvBigOut : TileProblem<Elem> {
  using typename TileProblem<Elem>::T;
  using typename TileProblem<Elem>::Acc;
  static constexpr TermKind kKind = kTermKind;
  static constexpr bool kAFirst = false;  // B (input x or grad y) is the first operand
  static constexpr bool kALoadsAlongDepth = true;
  static constexpr bool kBLoadsAlongDepth = false;
  ConvGeometry geo;
  IntervalPointer<T> weight, small, own;

  // Block group index = group * phases + phase_h * stride_w + phase_w.
  struct Context {
    int group, phase_h, phase_w;
    TapRange taps_h, taps_w;
    PhaseLine rows, cols;
  };
  INN_HD Context context(int gp) const {
    const int phases = geo.stride_h * geo.stride_w;
    const int phase = gp % phases;
    const int phase_h = phase / geo.stride_w, phase_w = phase % geo.stride_w;
    return {gp / phases, phase_h, phase_w,
            taps_of_phase(phase_h, geo.kernel_h, geo.stride_h, geo.dil_h),
            taps_of_phase(phase_w, geo.kernel_w, geo.stride_w, geo.dil_w),
            pixels_of_phase(phase_h, geo.big_h, geo.stride_h, geo.pad_h),
            pixels_of_phase(phase_w, geo.big_w, geo.stride_w, geo.pad_w)};
  }
  INN_HD index_t cols(const Context& c) const {
    return geo.batch * c.rows.count * c.cols.count;
  }
  INN_HD index_t depth(const Context& c) const {
    return static_cast<index_t>(geo.small_per_group()) * c.taps_h.count * c.taps_w.count;
  }

  // Depth index t = (small channel in group, tap row i, tap column j) of the phase's taps: tap
  // (kh, kw) with kh * dil_h = phase_h + qh * stride_h, kw * dil_w = phase_w + qw * stride_w.
  struct DepthIndex {
    index_t weight;  // A: channel * big_per_group * taps + kh * kernel_w + kw
    index_t small;   // B: channel * small_pixels - qh * small_w - qw
    int qh, qw;      // B: the small-pixel shift of the tap (PhaseLine)
  };
  static constexpr bool kDepthTable = true;
  INN_HD DepthIndex depth_index(const Context& c, index_t t) const {
    const int ti = static_cast<int>(t);
    const int taps = c.taps_h.count * c.taps_w.count;
    const int channel = ti / taps;
    const int tap = ti - channel * taps;
    const int i = tap / c.taps_w.count;
    const int kh = c.taps_h.first + i * c.taps_h.step;
    const int kw = c.taps_w.first + (tap - i * c.taps_w.count) * c.taps_w.step;
    const int qh = (kh * geo.dil_h - c.phase_h) / geo.stride_h;
    const int qw = (kw * geo.dil_w - c.phase_w) / geo.stride_w;
    return {static_cast<index_t>(channel) * geo.big_per_group() * geo.taps() + kh * geo.kernel_w +
                kw,
            channel * geo.small_pixels() - static_cast<index_t>(qh) * geo.small_w - qw, qh, qw};
  }

  // A: the weights of big channel bc: weight[group * Sg + s][bc][kh][kw].
  using ACursor = index_t;
  INN_HD ACursor a_cursor(const Context& c, index_t bc) const {
    return (static_cast<index_t>(c.group) * geo.small_per_group() * geo.big_per_group() + bc) *
           geo.taps();
  }
  INN_HD void load_a(const Context&, ACursor column, const DepthIndex& d, Acc& v0,
                     Acc& v1) const {
    weight.load(column + d.weight, v0, v1);
  }

  // B: the small image seen from big pixel q of the phase: the small pixel (h0, w0) it meets
  // through a tap with q = 0 (PhaseLine::origin; outside the image when none does), and its
  // offset in the group's first channel.
  struct BCursor {
    index_t origin;
    int h0, w0;
  };
  INN_HD BCursor b_cursor(const Context& c, index_t q) const {
    // A phase can have no pixels; its cursors are then never read, but must not divide by zero.
    const int per_row = c.cols.count > 0 ? c.cols.count : 1;
    index_t batch, rest;
    divmod(q, static_cast<index_t>(c.rows.count > 0 ? c.rows.count : 1) * per_row, batch, rest);
    const int i = static_cast<int>(rest) / per_row;
    const int h0 = c.rows.origin + i, w0 = c.cols.origin + static_cast<int>(rest) - i * per_row;
    return {(batch * geo.small_c + static_cast<index_t>(c.group) * geo.small_per_group()) *
                    geo.small_pixels() +
                static_cast<index_t>(h0) * geo.small_w + w0,
            h0, w0};
  }
  INN_HD void load_b(const Context&, const BCursor& at, const DepthIndex& d, Acc& v0,
                     Acc& v1) const {
    const int h = at.h0 - d.qh, w = at.w0 - d.qw;
    if (h < 0 || h >= geo.small_h || w < 0 || w >= geo.small_w) {
      return;  // no small pixel maps here through this tap
    }
    small.load(at.origin + d.small, v0, v1);
  }

  INN_HD index_t out_index(const Context& c, index_t bc, index_t q) const {
    index_t batch, rest;
    divmod(q, static_cast<index_t>(c.rows.count) * c.cols.count, batch, rest);
    const int i = static_cast<int>(rest) / c.cols.count;
    const int j = static_cast<int>(rest) - i * c.cols.count;
    const index_t channel = static_cast<index_t>(c.group) * geo.big_per_group() + bc;
    return ((batch * geo.big_c + channel) * geo.big_h + c.rows.first + i * geo.stride_h) *
               geo.big_w +
           c.cols.first + j * geo.stride_w;
  }
  INN_HD void load_own(const Context& c, index_t bc, index_t q, Acc& v0, Acc& v1) const {
    own.load(out_index(c, bc, q), v0, v1);
  }
};

template <typename Elem, bool kSmallIsGrad>
struct ConvWeightOut : TileProblem<Elem> {
  using typename TileProblem<Elem>::T;
  using typename TileProblem<Elem>::Acc;
  static constexpr TermKind kKind = TermKind::kWeightGrad;
  static constexpr bool kAFirst = kSmallIsGrad;  // the gradient is the first operand
  static constexpr bool kALoadsAlongDepth = true;
  static constexpr bool kBLoadsAlongDepth = true;
  ConvGeometry geo;
  IntervalPointer<T> small, big, own;

  // Depth index p = (batch, small pixel (h, w)).
  struct DepthIndex {
    index_t small;  // A: batch * small_c * small_pixels + h * small_w + w
    index_t big;    // B: batch * big_c * big_pixels + hs * big_w + ws
    int hs, ws;     // B: h * stride_h, w * stride_w
  };
  static constexpr bool kDepthTable = true;
  INN_HD DepthIndex depth_index(int, index_t p) const {
    const Pixel px = pixel_of(p, geo.small_pixels(), geo.small_w);
    const int hs = px.h * geo.stride_h, ws = px.w * geo.stride_w;
    return {px.batch * geo.small_c * geo.small_pixels() +
                static_cast<index_t>(px.h) * geo.small_w + px.w,
            px.batch * geo.big_c * geo.big_pixels() + static_cast<index_t>(hs) * geo.big_w + ws,
            hs, ws};
  }

  // A: small channel s of the small image, walked over batch x pixels.
  using ACursor = index_t;
  INN_HD ACursor a_cursor(int g, index_t s) const {
    return (static_cast<index_t>(g) * geo.small_per_group() + s) * geo.small_pixels();
  }
  INN_HD void load_a(int, ACursor channel, const DepthIndex& d, Acc& v0, Acc& v1) const {
    small.load(channel + d.small, v0, v1);
  }

  // B: big channel and tap of weight column `col`, walked over the small pixels it meets: the
  // tap's displacement (kh * dil_h - pad_h, kw * dil_w - pad_w) and the channel's offset
  // displaced by it.
  struct BCursor {
    index_t origin;
    int h_offset, w_offset;
  };
  INN_HD BCursor b_cursor(int g, index_t col) const {
    const ChannelTap ct = channel_tap(geo, col);
    const int h_offset = ct.kh * geo.dil_h - geo.pad_h, w_offset = ct.kw * geo.dil_w - geo.pad_w;
    return {(static_cast<index_t>(g) * geo.big_per_group() + ct.channel) * geo.big_pixels() +
                static_cast<index_t>(h_offset) * geo.big_w + w_offset,
            h_offset, w_offset};
  }
  INN_HD void load_b(int, const BCursor& at, const DepthIndex& d, Acc& v0, Acc& v1) const {
    const int h = d.hs + at.h_offset, w = d.ws + at.w_offset;
    if (h < 0 || h >= geo.big_h || w < 0 || w >= geo.big_w) return;  // zero padding
    big.load(at.origin + d.big, v0, v1);
  }

  INN_HD index_t out_index(int g, index_t s, index_t col) const {
    return (static_cast<index_t>(g) * geo.small_per_group() + s) * this->shape.cols + col;
  }
  INN_HD void load_own(int g, index_t s, index_t col, Acc& v0, Acc& v1) const {
    own.load(out_index(g, s, col), v0, v1);
  }
};

// ------------------------------------------------------------------------------------ builders
// Operands and outputs are contiguous NCHW images and (small_c, big_c / groups, kh, kw) weights.

template <typename Problem>
Problem conv_problem(const ConvGeometry& geo, index_t rows, index_t cols, index_t depth) {
  Problem p;
  p.geo = geo;
  p.shape.rows = rows;
  p.shape.cols = cols;
  p.shape.depth = depth;
  p.shape.groups = geo.groups;
  p.out.numel = static_cast<index_t>(geo.groups) * rows * cols;
  return p;
}

template <typename T, TermKind kKind>
ConvSmallOut<T, kKind> conv_small_out_problem(const ConvGeometry& geo, IntervalPointer<T> weight,
                                              IntervalPointer<T> big, IntervalPointer<T> own,
                                              T* out_lo, T* out_hi) {
  auto p = conv_problem<ConvSmallOut<T, kKind>>(
      geo, geo.small_per_group(), geo.batch * geo.small_pixels(),
      static_cast<index_t>(geo.big_per_group()) * geo.taps());
  p.weight = weight;
  p.big = big;
  p.own = own;
  p.out.lo = out_lo;
  p.out.hi = out_hi;
  p.out.bias_inner = geo.small_pixels();
  p.out.bias_channels = geo.small_c;
  return p;
}

template <typename T, TermKind kKind>
ConvBigOut<T, kKind> conv_big_out_problem(const ConvGeometry& geo, IntervalPointer<T> weight,
                                          IntervalPointer<T> small, IntervalPointer<T> own,
                                          T* out_lo, T* out_hi) {
  auto p = conv_problem<ConvBigOut<T, kKind>>(geo, geo.big_per_group(), 0, 0);
  // One block group per (group, stride phase); the shape holds the largest phase's extents.
  const int phases = geo.stride_h * geo.stride_w;
  p.shape.groups = geo.groups * phases;
  for (int phase = 0; phase < phases; ++phase) {
    const auto context = p.context(phase);
    p.shape.cols = p.cols(context) > p.shape.cols ? p.cols(context) : p.shape.cols;
    p.shape.depth = p.depth(context) > p.shape.depth ? p.depth(context) : p.shape.depth;
  }
  p.out.numel = geo.batch * geo.big_c * geo.big_pixels();
  p.weight = weight;
  p.small = small;
  p.own = own;
  p.out.lo = out_lo;
  p.out.hi = out_hi;
  p.out.bias_inner = geo.big_pixels();
  p.out.bias_channels = geo.big_c;
  return p;
}

template <typename T, bool kSmallIsGrad>
ConvWeightOut<T, kSmallIsGrad> conv_weight_out_problem(const ConvGeometry& geo,
                                                       IntervalPointer<T> small,
                                                       IntervalPointer<T> big,
                                                       IntervalPointer<T> weight, T* out_lo,
                                                       T* out_hi) {
  auto p = conv_problem<ConvWeightOut<T, kSmallIsGrad>>(
      geo, geo.small_per_group(),
      static_cast<index_t>(geo.big_per_group()) * geo.taps(),
      geo.batch * geo.small_pixels());
  p.small = small;
  p.big = big;
  p.own = weight;
  p.out.lo = out_lo;
  p.out.hi = out_hi;
  return p;
}

// The six ops. conv2d: big = x (N, C, H, W), small = y; conv_transpose2d: big = y, small = x.

template <typename T>
ConvSmallOut<T, TermKind::kForward> conv2d_forward_problem(
    const ConvGeometry& geo, IntervalPointer<T> x, IntervalPointer<T> w, const T* bias_lo,
    const T* bias_hi, T* y_lo, T* y_hi) {
  auto p = conv_small_out_problem<T, TermKind::kForward>(geo, w, x, {}, y_lo, y_hi);
  p.out.bias_lo = bias_lo;
  p.out.bias_hi = bias_hi;
  return p;
}

template <typename T>
ConvBigOut<T, TermKind::kInputGrad> conv2d_input_grad_problem(
    const ConvGeometry& geo, IntervalPointer<T> grad, IntervalPointer<T> x, IntervalPointer<T> w,
    T* dx_lo, T* dx_hi) {
  return conv_big_out_problem<T, TermKind::kInputGrad>(geo, w, grad, x, dx_lo, dx_hi);
}

template <typename T>
ConvWeightOut<T, true> conv2d_weight_grad_problem(const ConvGeometry& geo,
                                                  IntervalPointer<T> grad, IntervalPointer<T> x,
                                                  IntervalPointer<T> w, T* dw_lo, T* dw_hi) {
  return conv_weight_out_problem<T, true>(geo, grad, x, w, dw_lo, dw_hi);
}

template <typename T>
ConvBigOut<T, TermKind::kForward> conv_transpose2d_forward_problem(
    const ConvGeometry& geo, IntervalPointer<T> x, IntervalPointer<T> w, const T* bias_lo,
    const T* bias_hi, T* y_lo, T* y_hi) {
  auto p = conv_big_out_problem<T, TermKind::kForward>(geo, w, x, {}, y_lo, y_hi);
  p.out.bias_lo = bias_lo;
  p.out.bias_hi = bias_hi;
  return p;
}

template <typename T>
ConvSmallOut<T, TermKind::kInputGrad> conv_transpose2d_input_grad_problem(
    const ConvGeometry& geo, IntervalPointer<T> grad, IntervalPointer<T> x, IntervalPointer<T> w,
    T* dx_lo, T* dx_hi) {
  return conv_small_out_problem<T, TermKind::kInputGrad>(geo, w, grad, x, dx_lo, dx_hi);
}

template <typename T>
ConvWeightOut<T, false> conv_transpose2d_weight_grad_problem(const ConvGeometry& geo,
                                                             IntervalPointer<T> grad,
                                                             IntervalPointer<T> x,
                                                             IntervalPointer<T> w, T* dw_lo,
                                                             T* dw_hi) {
  return conv_weight_out_problem<T, false>(geo, x, grad, w, dw_lo, dw_hi);
}

}  // namespace inn::kernels
