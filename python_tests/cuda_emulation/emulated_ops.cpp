// C entry points that run the CUDA kernels of csrc/kernels/ through the CPU emulation
// (cuda_emulation.h) with the same problem builders and launch runner (tile_runner.cuh) as the
// CUDA launchers in csrc/cuda/, and the same geometry (csrc/conv_geometry.h, with its checks).
// Loaded with ctypes by python_tests/test_cuda_emulated.py.
//
// All tensors are contiguous except the linear operands, which take (row, col) strides like the
// CUDA launcher. Pointer arrays: in = {g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi} (entries an
// op does not use may be null). Return value: 0, or 1 with the message in emu_last_error().
#include "cuda_emulation.h"

#include <algorithm>
#include <optional>
#include <string>

#include "kernels/conv_problems.cuh"
#include "kernels/linear_problems.cuh"
#include "kernels/tile_runner.cuh"

namespace {

using namespace inn::kernels;

// The tile configuration of the last launch: {rows, cols, depth} (lets tests see the choice).
int g_last_tile[3] = {0, 0, 0};

struct EmulatedRuntime {
  std::vector<std::vector<double>> buffers;

  template <typename Problem, typename Config, bool kNonneg>
  void launch_tile(index_t blocks, int splits, const Problem& p) {
    g_last_tile[0] = Config::kRows;
    g_last_tile[1] = Config::kCols;
    g_last_tile[2] = Config::kDepth;
    emu::launch(dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(splits)),
                dim3(kTileThreads), [&] { interval_tile_kernel<Problem, Config, kNonneg>(p); });
  }
  template <typename T>
  void launch_reduce(index_t blocks, const TileOutput<T>& out, int splits) {
    emu::launch(dim3(static_cast<unsigned>(blocks)), dim3(kTileThreads),
                [&] { split_reduce_kernel<T>(out, splits); });
  }
  void* workspace(index_t bytes) {
    buffers.emplace_back(static_cast<size_t>((bytes + 7) / 8), -12345.0);  // poisoned
    return buffers.back().data();
  }
  void check(bool ok, const char* message) {
    if (!ok && emu::launch_error.empty()) emu::launch_error = message;
  }
};

enum Dtype { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };
enum Op { kForward = 0, kInputGrad = 1, kWeightGrad = 2 };

template <typename F>
int dispatch(int dtype, const F& f) {
  emu::launch_error.clear();
  switch (dtype) {
    case kFloat32: f(static_cast<float*>(nullptr)); break;
#ifndef INN_EMULATION_FLOAT32_ONLY
    case kFloat64: f(static_cast<double*>(nullptr)); break;
#endif
#ifdef INN_KERNELS_HAVE_HALF
    case kFloat16: f(static_cast<__half*>(nullptr)); break;
    case kBFloat16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
#endif
    default: emu::launch_error = "dtype not compiled into the emulation"; return 1;
  }
  return emu::launch_error.empty() ? 0 : 1;
}

template <typename T>
const T* in_ptr(const void* const* in, int i) { return static_cast<const T*>(in[i]); }

template <typename T>
IntervalPointer<T> in_pair(const void* const* in, int i) {
  return {in_ptr<T>(in, i), in_ptr<T>(in, i + 1)};
}

// The launch guard (TileOutput::run_if) of the next runs: none, or a flag holding false / true.
bool g_guard_value = false;
const bool* g_guard = nullptr;

// A tile configuration number (0 .. kTileCount - 1, Tile's order), or -1: choose_tile's.
std::optional<Tile> tile_of(int tile) {
  if (tile < 0) return std::nullopt;
  return static_cast<Tile>(tile);
}

// strides = {g row, g col, x row, x col, w row, w col}.
template <typename Runtime>
int linear_ops(Runtime& rt, int op, int dtype, int nonneg, int sm_count,
               long long min_split_depth, int tile, long long M, long long N, long long K,
               const void* const* in, const long long* strides, void* out_lo, void* out_hi) {
  return dispatch(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const IntervalMatrix<T> g{in_ptr<T>(in, 0), in_ptr<T>(in, 1), strides[0], strides[1]};
    const IntervalMatrix<T> x{in_ptr<T>(in, 2), in_ptr<T>(in, 3), strides[2], strides[3]};
    const IntervalMatrix<T> w{in_ptr<T>(in, 4), in_ptr<T>(in, 5), strides[4], strides[5]};
    T* lo = static_cast<T*>(out_lo);
    T* hi = static_cast<T*>(out_hi);
    if (op == kForward) {
      run_tile_problem(rt, linear_forward_problem<T>(M, N, K, x, w, in_ptr<T>(in, 6),
                                                     in_ptr<T>(in, 7), lo, hi),
                       nonneg, sm_count, min_split_depth, g_guard, tile_of(tile));
    } else if (op == kInputGrad) {
      run_tile_problem(rt, linear_input_grad_problem<T>(M, N, K, g, x, w, lo, hi), nonneg,
                       sm_count, min_split_depth, g_guard, tile_of(tile));
    } else {
      run_tile_problem(rt, linear_weight_grad_problem<T>(M, N, K, g, x, w, lo, hi), nonneg,
                       sm_count, min_split_depth, g_guard, tile_of(tile));
    }
  });
}

template <typename Runtime>
int conv_ops(Runtime& rt, int transposed, int op, int dtype, int nonneg, int sm_count,
             long long min_split_depth, int tile, const long long* geometry,
             const void* const* in, void* out_lo, void* out_hi) {
  ConvGeometry geo;
  geo.batch = geometry[0];
  int* fields[] = {&geo.groups,   &geo.big_c,    &geo.big_h,    &geo.big_w,   &geo.small_c,
                   &geo.small_h,  &geo.small_w,  &geo.kernel_h, &geo.kernel_w, &geo.stride_h,
                   &geo.stride_w, &geo.pad_h,    &geo.pad_w,    &geo.dil_h,   &geo.dil_w};
  for (int i = 0; i < 15; ++i) *fields[i] = static_cast<int>(geometry[i + 1]);
  return dispatch(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const IntervalPointer<T> g = in_pair<T>(in, 0), x = in_pair<T>(in, 2), w = in_pair<T>(in, 4);
    const T* b_lo = in_ptr<T>(in, 6);
    const T* b_hi = in_ptr<T>(in, 7);
    T* lo = static_cast<T*>(out_lo);
    T* hi = static_cast<T*>(out_hi);
    const auto run = [&](const auto& problem) {
      run_tile_problem(rt, problem, nonneg, sm_count, min_split_depth, g_guard,
                       tile_of(tile));
    };
    if (!transposed) {
      if (op == kForward) run(conv2d_forward_problem<T>(geo, x, w, b_lo, b_hi, lo, hi));
      else if (op == kInputGrad) run(conv2d_input_grad_problem<T>(geo, g, x, w, lo, hi));
      else run(conv2d_weight_grad_problem<T>(geo, g, x, w, lo, hi));
    } else {
      if (op == kForward) run(conv_transpose2d_forward_problem<T>(geo, x, w, b_lo, b_hi, lo, hi));
      else if (op == kInputGrad) run(conv_transpose2d_input_grad_problem<T>(geo, g, x, w, lo, hi));
      else run(conv_transpose2d_weight_grad_problem<T>(geo, g, x, w, lo, hi));
    }
  });
}

}  // namespace

extern "C" {

const char* emu_last_error() { return emu::launch_error.c_str(); }

// -1: unguarded launches; 0 / 1: launches guarded by a flag holding false / true.
void emu_set_guard(int mode) {
  g_guard_value = mode == 1;
  g_guard = mode < 0 ? nullptr : &g_guard_value;
}

int emu_has_half_types() {
#ifdef INN_KERNELS_HAVE_HALF
  return 1;
#else
  return 0;
#endif
}

int emu_tile_count() { return kTileCount; }

// dims = {rows, cols, depth} of tile configuration `tile`.
void emu_tile_dims(int tile, int* dims) {
  with_tile(static_cast<Tile>(tile), [&](auto config) {
    using Config = decltype(config);
    dims[0] = Config::kRows;
    dims[1] = Config::kCols;
    dims[2] = Config::kDepth;
  });
}

// The tile configuration (its number) choose_tile picks for rows x cols outputs of depth terms.
int emu_choose_tile(long long rows, long long cols, long long depth) {
  return static_cast<int>(choose_tile(rows, cols, depth));
}

// dims = {rows, cols, depth} of the tile configuration the last launch ran.
void emu_last_tile(int* dims) { std::copy(g_last_tile, g_last_tile + 3, dims); }

// The depth slices plan_tiles chooses for a problem of this size in tile configuration `tile`
// (-1: choose_tile's), so tests can confirm they split.
int emu_plan_splits(long long rows, long long cols, long long depth, int groups, int sm_count,
                    long long min_split_depth, int tile) {
  TileShape shape;
  shape.rows = rows;
  shape.cols = cols;
  shape.depth = depth;
  shape.groups = groups;
  with_tile(tile_of(tile).value_or(choose_tile(rows, cols, depth)), [&](auto config) {
    plan_tiles<decltype(config)>(shape, sm_count, min_split_depth);
  });
  return shape.splits;
}

// tile: a tile configuration number, or -1 for choose_tile's (as the CUDA launchers).
int emu_linear(int op, int dtype, int nonneg, int sm_count, long long min_split_depth, int tile,
               long long M, long long N, long long K, const void* const* in,
               const long long* strides, void* out_lo, void* out_hi) {
  EmulatedRuntime rt;
  return linear_ops(rt, op, dtype, nonneg, sm_count, min_split_depth, tile, M, N, K, in, strides,
                    out_lo, out_hi);
}

// The geometry the launchers derive from sizes and arguments (csrc/conv_geometry.h, in the
// kernels' 32-bit fields), as 16 numbers: {batch, groups, big_c, big_h, big_w, small_c, small_h,
// small_w, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w}. conv2d: config =
// {stride, padding, dilation} (6); conv_transpose2d: config = {stride, padding, output_padding,
// dilation} (8). Returns 1 with the message in emu_last_error() for a geometry the ops refuse.
int emu_conv_geometry(int transposed, const long long* x, const long long* w,
                      const long long* config, long long groups, long long* geometry) {
  emu::launch_error.clear();
  const char* op = transposed ? "interval_conv_transpose2d" : "interval_conv2d";
  int64_t xs[4], ws[4], cs[8];
  std::copy(x, x + 4, xs);
  std::copy(w, w + 4, ws);
  std::copy(config, config + (transposed ? 8 : 6), cs);
  try {
    const ConvGeometry geo = inn::kernel_geometry(
        op, transposed ? inn::conv_transpose2d_geometry(op, xs, ws, cs, cs + 2, cs + 4, groups,
                                                        cs + 6)
                       : inn::conv2d_geometry(op, xs, ws, cs, cs + 2, cs + 4, groups));
    const int fields[] = {geo.groups,   geo.big_c,    geo.big_h,    geo.big_w,    geo.small_c,
                          geo.small_h,  geo.small_w,  geo.kernel_h, geo.kernel_w, geo.stride_h,
                          geo.stride_w, geo.pad_h,    geo.pad_w,    geo.dil_h,    geo.dil_w};
    geometry[0] = geo.batch;
    for (int i = 0; i < 15; ++i) geometry[i + 1] = fields[i];
  } catch (const inn::ArgumentError& error) {
    emu::launch_error = error.what();
    return 1;
  }
  return 0;
}

// geometry: as emu_conv_geometry returns it; transposed = 1 runs the conv_transpose2d ops; tile:
// as emu_linear's.
int emu_conv(int transposed, int op, int dtype, int nonneg, int sm_count,
             long long min_split_depth, int tile, const long long* geometry,
             const void* const* in, void* out_lo, void* out_hi) {
  EmulatedRuntime rt;
  return conv_ops(rt, transposed, op, dtype, nonneg, sm_count, min_split_depth, tile, geometry,
                  in, out_lo, out_hi);
}

}  // extern "C"
