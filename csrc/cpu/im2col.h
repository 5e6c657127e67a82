// im2col / col2im for the CPU interval convolutions, on interval pairs (lo and hi in one pass).
//
// A ConvGeometry (csrc/conv_geometry.h) describes a 2-D convolution from its big image (the
// conv2d input: the image side here) to its small one (the conv2d output pixels: the column side).
// Columns are row-major: one row per column-side pixel
// of a chunk (row m = image_offset * chunk.pixels + (p - chunk.first_pixel)), holding the
// channels * kh * kw entries (c, i, j) channel-major like the weight. Row-major rows with unit
// column stride are what the packed interval GEMMs read and write fastest. A transposed
// convolution uses the same geometry with the roles swapped (its output is the image side), and
// a 1x1 identity geometry turns im2col / col2im into the NCHW <-> pixel-row transposes.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "../conv_geometry.h"

namespace inn::cpu {

using inn::ConvGeometry;

// Pixel rows of `channels` planes of (height x width) images: the geometry under which im2col /
// col2im are the NCHW <-> pixel-row transposes.
inline ConvGeometry identity_geometry(int64_t channels, int64_t height, int64_t width) {
  ConvGeometry g;
  g.big_c = g.small_c = channels;
  g.big_h = g.small_h = height;
  g.big_w = g.small_w = width;
  return g;
}

inline bool is_identity(const ConvGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
         g.pad_h == 0 && g.pad_w == 0 && g.small_h == g.big_h && g.small_w == g.big_w;
}

// The chunk of column-side pixels: `pixels` pixels from `first_pixel` in each of `images` images
// from `first_image` (several images only with whole images, first_pixel == 0).
struct Chunk {
  int64_t first_image, images, first_pixel, pixels;
  int64_t rows() const { return images * pixels; }
};

// An image-side NCHW tensor: `data` points at the group's first channel in image 0.
template <typename T>
struct Planes {
  T* data;
  int64_t image_stride;
};

namespace detail {

constexpr int64_t kGrainElements = 1 << 15;

// Calls body(m, image_offset, oh, ow) for chunk rows [begin, end), in order.
template <typename F>
void for_each_pixel(const ConvGeometry& g, const Chunk& chunk, int64_t begin, int64_t end,
                    F&& body) {
  int64_t n = begin / chunk.pixels, p = chunk.first_pixel + begin % chunk.pixels;
  int64_t oh = p / g.small_w, ow = p % g.small_w;
  for (int64_t m = begin; m < end; ++m) {
    body(m, n, oh, ow);
    if (++ow == g.small_w) {
      ow = 0;
      ++oh;
    }
    if (++p == chunk.first_pixel + chunk.pixels) {
      p = chunk.first_pixel;
      oh = p / g.small_w;
      ow = p % g.small_w;
      ++n;
    }
  }
}

}  // namespace detail

// columns (chunk.rows() x column_rows(), row-major) = im2col(image), for lo and hi. Parallel
// over rows; each row reads a kh x kw window of every channel (cache-resident along a row).
template <typename T>
void im2col(const ConvGeometry& g, const Chunk& chunk, Planes<const T> lo, Planes<const T> hi,
            T* col_lo, T* col_hi) {
  const int64_t K = g.big_depth(), plane = g.big_pixels();
  const int64_t grain = std::max<int64_t>(1, detail::kGrainElements / std::max<int64_t>(1, K));
  at::parallel_for(0, chunk.rows(), grain, [&](int64_t begin, int64_t end) {
    detail::for_each_pixel(g, chunk, begin, end, [&](int64_t m, int64_t n, int64_t oh, int64_t ow) {
      const int64_t image = (chunk.first_image + n) * lo.image_stride;
      const int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
      T* out_lo = col_lo + m * K;
      T* out_hi = col_hi + m * K;
      for (int64_t c = 0; c < g.big_per_group(); ++c) {
        const T* plane_lo = lo.data + image + c * plane;
        const T* plane_hi = hi.data + image + c * plane;
        for (int64_t i = 0; i < g.kernel_h; ++i) {
          const int64_t ih = h0 + i * g.dil_h;
          if (ih < 0 || ih >= g.big_h) {
            std::fill_n(out_lo, g.kernel_w, T(0));
            std::fill_n(out_hi, g.kernel_w, T(0));
          } else {
            const T* row_lo = plane_lo + ih * g.big_w;
            const T* row_hi = plane_hi + ih * g.big_w;
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              const int64_t iw = w0 + j * g.dil_w;
              const bool inside = iw >= 0 && iw < g.big_w;
              out_lo[j] = inside ? row_lo[iw] : T(0);
              out_hi[j] = inside ? row_hi[iw] : T(0);
            }
          }
          out_lo += g.kernel_w;
          out_hi += g.kernel_w;
        }
      }
    });
  });
}

// image += col2im(columns), lo and hi separately (each bound's terms summed once).
template <typename T>
void col2im_add(const ConvGeometry& g, const Chunk& chunk, const T* col_lo, const T* col_hi,
                Planes<T> lo, Planes<T> hi) {
  const int64_t K = g.big_depth(), plane = g.big_pixels();
  if (is_identity(g)) {
    // A transpose: each row adds to one pixel per channel, so blocks of rows are independent.
    // Blocks of 64 rows keep the rows in L1 while every channel plane gets a contiguous run.
    constexpr int64_t kBlock = 64;
    const int64_t blocks = (chunk.rows() + kBlock - 1) / kBlock;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t first = b * kBlock, last = std::min(chunk.rows(), first + kBlock);
        for (int64_t c = 0; c < g.big_per_group(); ++c) {
          detail::for_each_pixel(g, chunk, first, last,
                                 [&](int64_t m, int64_t n, int64_t oh, int64_t ow) {
                                   const int64_t at = (chunk.first_image + n) * lo.image_stride +
                                                      c * plane + oh * g.big_w + ow;
                                   lo.data[at] += col_lo[m * K + c];
                                   hi.data[at] += col_hi[m * K + c];
                                 });
        }
      }
    });
    return;
  }
  // Windows of neighbouring rows overlap: parallel over (image, channel) planes instead, so no
  // two threads add into the same element.
  const int64_t kernel = g.kernel_h * g.kernel_w;
  const int64_t grain =
      std::max<int64_t>(1, detail::kGrainElements / std::max<int64_t>(1, kernel * chunk.pixels));
  at::parallel_for(0, chunk.images * g.big_per_group(), grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.big_per_group(), c = task % g.big_per_group();
      T* out_lo = lo.data + (chunk.first_image + n) * lo.image_stride + c * plane;
      T* out_hi = hi.data + (chunk.first_image + n) * hi.image_stride + c * plane;
      detail::for_each_pixel(
          g, chunk, n * chunk.pixels, (n + 1) * chunk.pixels,
          [&](int64_t m, int64_t, int64_t oh, int64_t ow) {
            const T* in_lo = col_lo + m * K + c * kernel;
            const T* in_hi = col_hi + m * K + c * kernel;
            const int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
            for (int64_t i = 0; i < g.kernel_h; ++i) {
              const int64_t ih = h0 + i * g.dil_h;
              if (ih < 0 || ih >= g.big_h) continue;
              for (int64_t j = 0; j < g.kernel_w; ++j) {
                const int64_t iw = w0 + j * g.dil_w;
                if (iw < 0 || iw >= g.big_w) continue;
                out_lo[ih * g.big_w + iw] += in_lo[i * g.kernel_w + j];
                out_hi[ih * g.big_w + iw] += in_hi[i * g.kernel_w + j];
              }
            }
          });
    }
  });
}

// ------------------------------------------------------------------ pixel-lane (transposed) rows

// How a destination pixel coordinate d maps to a source coordinate d * step + offset (a conv2d
// input window: step = stride, offset = the tap's offset minus the padding).
struct Axis {
  int64_t step, offset;
};

namespace detail {

// Calls body(out, lo, hi, in) for destination pixels [p0, p1) of a grid dst_w wide, one
// destination row at a time: positions [lo, hi) of the row (out[d] is pixel p0 + d's position
// minus the row's first column) map into the src plane (src_h x src_w) row `in`, at
// in[d * x.step]; the rest of the row does not.
template <typename T, typename F>
void for_each_mapped_row(T* dst, int64_t src_h, int64_t src_w, int64_t dst_w, int64_t p0,
                         int64_t p1, Axis y, Axis x, F&& body) {
  // first d >= 0 with d * step + offset >= 0, and past the last one with it < size
  const int64_t x_first = x.offset >= 0 ? 0 : (x.step - 1 - x.offset) / x.step;
  const int64_t x_end = src_w - 1 - x.offset < 0 ? 0 : (src_w - 1 - x.offset) / x.step + 1;
  for (int64_t p = p0; p < p1;) {
    const int64_t dy = p / dst_w, x0 = p % dst_w, x1 = std::min(dst_w, x0 + (p1 - p));
    const int64_t sy = dy * y.step + y.offset;
    const bool inside = sy >= 0 && sy < src_h;
    const int64_t lo = inside ? std::clamp(x_first, x0, x1) : x1;
    const int64_t hi = inside ? std::clamp(x_end, lo, x1) : x1;
    body(dst + (p - p0) - x0, x0, x1, lo, hi, sy * src_w + x.offset);
    p += x1 - x0;
  }
}

}  // namespace detail

// dst[p - p0] = the src plane (src_h x src_w) at the mapped coordinates of destination pixels
// [p0, p1) of a grid dst_w pixels wide, zero outside the plane. One pass per destination row:
// zeros, a strided copy, zeros (no per-pixel tests).
template <typename T>
void gather_plane(const T* src, int64_t src_h, int64_t src_w, int64_t dst_w, int64_t p0,
                  int64_t p1, Axis y, Axis x, T* dst) {
  detail::for_each_mapped_row(dst, src_h, src_w, dst_w, p0, p1, y, x,
                              [&](T* out, int64_t x0, int64_t x1, int64_t lo, int64_t hi,
                                  int64_t in) {
                                std::fill(out + x0, out + lo, T(0));
                                if (x.step == 1) {  // (a copy the compiler vectorises)
                                  std::copy(src + in + lo, src + in + hi, out + lo);
                                } else {
                                  for (int64_t d = lo; d < hi; ++d) out[d] = src[in + d * x.step];
                                }
                                std::fill(out + hi, out + x1, T(0));
                              });
}

// The transpose: the plane at the mapped coordinates += rows[p - p0], where they are inside.
template <typename T>
void scatter_add_plane(const T* rows, int64_t plane_h, int64_t plane_w, int64_t row_w,
                       int64_t p0, int64_t p1, Axis y, Axis x, T* plane) {
  detail::for_each_mapped_row(rows, plane_h, plane_w, row_w, p0, p1, y, x,
                              [&](const T* in, int64_t, int64_t, int64_t lo, int64_t hi,
                                  int64_t out) {
                                for (int64_t d = lo; d < hi; ++d) plane[out + d * x.step] += in[d];
                              });
}

}  // namespace inn::cpu
