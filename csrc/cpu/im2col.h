// im2col / col2im for the CPU interval convolutions, on interval pairs (lo and hi in one pass).
//
// A ConvGeometry describes a 2-D convolution from an "image" side (the conv2d input) to a
// "column" side (the conv2d output pixels). Columns are laid out as a (channels * kh * kw) x rows
// matrix, row k = (c, i, j) channel-major like the weight, column m = one output pixel of one
// image of the chunk: m = image_offset * pixels + (p - first_pixel). A transposed convolution
// uses the same geometry with the roles swapped (its output is the image side).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace inn::cpu {

struct ConvGeometry {
  int64_t channels;  // image-side channels of one group
  int64_t height, width;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t dilation_h, dilation_w;
  int64_t out_h, out_w;  // column side; explicit, since a transposed conv may not reach every row

  int64_t column_rows() const { return channels * kernel_h * kernel_w; }
  int64_t image_pixels() const { return height * width; }
  int64_t out_pixels() const { return out_h * out_w; }
  // Columns equal the image: no im2col needed (1x1 kernel, stride 1, no padding).
  bool is_identity() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 &&
           pad_w == 0 && out_h == height && out_w == width;
  }
  // Gathers / scatters pixels of `channels` planes of (height x width) images.
  static ConvGeometry identity(int64_t channels, int64_t height, int64_t width) {
    return {channels, height, width, 1, 1, 1, 1, 0, 0, 1, 1, height, width};
  }
};

// The chunk of columns: `pixels` output pixels from `first_pixel` in each of `images` images
// from `first_image` (several images only with whole images, first_pixel == 0).
struct Chunk {
  int64_t first_image, images, first_pixel, pixels;
  int64_t rows() const { return images * pixels; }
};

// An image-side NCHW tensor: `data` points at channel 0 of the group in image 0.
template <typename T>
struct Planes {
  T* data;
  int64_t image_stride;
};

namespace detail {

// Output positions o in [0, out) whose image coordinate o * stride + offset lies in [0, size).
inline void valid_range(int64_t size, int64_t out, int64_t stride, int64_t offset, int64_t& first,
                        int64_t& last) {
  first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  last = size - 1 - offset < 0 ? 0 : (size - 1 - offset) / stride + 1;
  first = std::min(first, out);
  last = std::clamp(last, first, out);
}

// Walks the columns of kernel offset (i, j) for image `image_offset` of the chunk: calls
// visit(column, index, count) for each in-bounds run (`count` columns from `column` read image
// entries index, index + stride_w, ... of one channel plane) and skip(column, count) for the
// out-of-bounds (padding) columns.
template <typename Visit, typename Skip>
void for_each_run(const ConvGeometry& g, const Chunk& chunk, int64_t image_offset, int64_t i,
                  int64_t j, Visit&& visit, Skip&& skip) {
  const int64_t row_offset = i * g.dilation_h - g.pad_h;
  const int64_t col_offset = j * g.dilation_w - g.pad_w;
  int64_t w_first, w_last;
  valid_range(g.width, g.out_w, g.stride_w, col_offset, w_first, w_last);
  int64_t column = image_offset * chunk.pixels;
  const int64_t end = chunk.first_pixel + chunk.pixels;
  for (int64_t p = chunk.first_pixel; p < end;) {
    const int64_t oh = p / g.out_w, ow0 = p % g.out_w;
    const int64_t ow1 = std::min(g.out_w, ow0 + (end - p));
    const int64_t ih = oh * g.stride_h + row_offset;
    if (ih < 0 || ih >= g.height) {
      skip(column, ow1 - ow0);
    } else {
      const int64_t a = std::clamp(w_first, ow0, ow1), b = std::clamp(w_last, a, ow1);
      skip(column, a - ow0);
      visit(column + (a - ow0), ih * g.width + a * g.stride_w + col_offset, b - a);
      skip(column + (b - ow0), ow1 - b);
    }
    column += ow1 - ow0;
    p += ow1 - ow0;
  }
}

constexpr int64_t kGrainElements = 1 << 15;

}  // namespace detail

// columns (column_rows x chunk.rows(), leading dimension chunk.rows()) = im2col(image), for lo
// and hi. Parallel over column rows.
template <typename T>
void im2col(const ConvGeometry& g, const Chunk& chunk, Planes<const T> lo, Planes<const T> hi,
            T* col_lo, T* col_hi) {
  const int64_t rows = chunk.rows(), kernel = g.kernel_h * g.kernel_w;
  const int64_t grain = std::max<int64_t>(1, detail::kGrainElements / std::max<int64_t>(1, rows));
  at::parallel_for(0, g.column_rows(), grain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t c = k / kernel, i = (k / g.kernel_w) % g.kernel_h, j = k % g.kernel_w;
      T* out_lo = col_lo + k * rows;
      T* out_hi = col_hi + k * rows;
      for (int64_t n = 0; n < chunk.images; ++n) {
        const int64_t plane = (chunk.first_image + n) * lo.image_stride + c * g.image_pixels();
        const T* in_lo = lo.data + plane;
        const T* in_hi = hi.data + plane;
        detail::for_each_run(
            g, chunk, n, i, j,
            [&](int64_t column, int64_t index, int64_t count) {
              for (int64_t t = 0; t < count; ++t, index += g.stride_w) {
                out_lo[column + t] = in_lo[index];
                out_hi[column + t] = in_hi[index];
              }
            },
            [&](int64_t column, int64_t count) {
              std::fill_n(out_lo + column, count, T(0));
              std::fill_n(out_hi + column, count, T(0));
            });
      }
    }
  });
}

// image += col2im(columns), lo and hi separately (each bound's terms summed once). Parallel over
// (image, channel) planes, so no two threads add into the same element.
template <typename T>
void col2im_add(const ConvGeometry& g, const Chunk& chunk, const T* col_lo, const T* col_hi,
                Planes<T> lo, Planes<T> hi) {
  const int64_t rows = chunk.rows(), kernel = g.kernel_h * g.kernel_w;
  const int64_t per_plane = std::max<int64_t>(1, kernel * chunk.pixels);
  const int64_t grain = std::max<int64_t>(1, detail::kGrainElements / per_plane);
  at::parallel_for(0, chunk.images * g.channels, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.channels, c = task % g.channels;
      const int64_t plane = (chunk.first_image + n) * lo.image_stride + c * g.image_pixels();
      T* out_lo = lo.data + plane;
      T* out_hi = hi.data + plane;
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          const int64_t k = (c * g.kernel_h + i) * g.kernel_w + j;
          const T* in_lo = col_lo + k * rows;
          const T* in_hi = col_hi + k * rows;
          detail::for_each_run(
              g, chunk, n, i, j,
              [&](int64_t column, int64_t index, int64_t count) {
                for (int64_t t = 0; t < count; ++t, index += g.stride_w) {
                  out_lo[index] += in_lo[column + t];
                  out_hi[index] += in_hi[column + t];
                }
              },
              [](int64_t, int64_t) {});
        }
      }
    }
  });
}

}  // namespace inn::cpu
