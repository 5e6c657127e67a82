// C entry points that run the CUDA kernels of csrc/kernels/ through the CPU emulation
// (cuda_emulation.h) with the same problem builders and launch runner (tile_runner.cuh) as the
// CUDA launchers in csrc/cuda/. Loaded with ctypes by python_tests/test_cuda_emulated.py.
// The emu_record_* entry points run the same builders and runner with a Runtime that records the
// launches instead (python_tests/test_nvrtc_plan.py compares them with the NVRTC backend's
// Python port).
//
// All tensors are contiguous except the linear operands, which take (row, col) strides like the
// CUDA launcher. Pointer arrays: in = {g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi} (entries an
// op does not use may be null). Return value: 0, or 1 with the message in emu_last_error().
#include "cuda_emulation.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/conv_problems.cuh"
#include "kernels/linear_problems.cuh"
#include "kernels/tile_runner.cuh"

namespace {

using namespace inn::kernels;

struct EmulatedRuntime {
  std::vector<std::vector<double>> buffers;

  template <typename Problem, bool kNonneg>
  void launch_tile(index_t blocks, int splits, const Problem& p) {
    emu::launch(dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(splits)),
                dim3(kTileThreads), [&] { interval_tile_kernel<Problem, kNonneg>(p); });
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

// The template argument `name` of the function around `pretty` (a __PRETTY_FUNCTION__), as g++
// spells it: "[with Problem = inn::kernels::LinearForward<float>; bool kNonneg = true]".
std::string template_argument(const char* pretty, const char* name) {
  const std::string text(pretty);
  const size_t start = text.find(std::string(name) + " = ") + std::strlen(name) + 3;
  return text.substr(start, text.find_first_of(";]", start) - start);
}

// Records every launch as int64 words: {kind (0 tile, 1 reduce, 2 workspace), blocks, splits,
// nonneg, value bytes, type name bytes}, then the bytes of the problem (tile) or TileOutput
// (reduce) and the name of the problem (element) type, each padded to 8. A workspace request
// records {2, bytes, 0, 0, 0, 0} and gets the fake address kRecordedWorkspace.
constexpr long long kRecordedWorkspace = 0x5000000000LL;

struct RecordingRuntime {
  std::vector<long long> words;

  void append(const void* data, size_t bytes) {
    const size_t start = words.size();
    words.resize(start + (bytes + 7) / 8, 0);
    std::memcpy(words.data() + start, data, bytes);
  }
  template <typename Value>
  void record(long long kind, index_t blocks, int splits, bool nonneg, const Value& value,
              const std::string& type) {
    words.insert(words.end(), {kind, blocks, splits, nonneg ? 1LL : 0LL,
                               static_cast<long long>(sizeof(Value)),
                               static_cast<long long>(type.size())});
    append(&value, sizeof(Value));
    append(type.data(), type.size());
  }
  template <typename Problem, bool kNonneg>
  void launch_tile(index_t blocks, int splits, const Problem& p) {
    record(0, blocks, splits, kNonneg, p, template_argument(__PRETTY_FUNCTION__, "Problem"));
  }
  template <typename T>
  void launch_reduce(index_t blocks, const TileOutput<T>& out, int splits) {
    record(1, blocks, splits, false, out, template_argument(__PRETTY_FUNCTION__, "T"));
  }
  void* workspace(index_t bytes) {
    words.insert(words.end(), {2LL, bytes, 0LL, 0LL, 0LL, 0LL});
    return reinterpret_cast<void*>(kRecordedWorkspace);
  }
  void check(bool ok, const char* message) {
    if (!ok && emu::launch_error.empty()) emu::launch_error = message;
  }
};

// Copies a recording to the caller's buffer; 1 with an error if it does not fit.
int copy_record(const RecordingRuntime& rt, long long* record, long long capacity,
                long long* used) {
  *used = static_cast<long long>(rt.words.size());
  if (*used > capacity) {
    emu::launch_error = "record buffer too small";
    return 1;
  }
  std::copy(rt.words.begin(), rt.words.end(), record);
  return 0;
}

enum Dtype { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };
enum Op { kForward = 0, kInputGrad = 1, kWeightGrad = 2 };

template <typename F>
int dispatch(int dtype, const F& f) {
  emu::launch_error.clear();
  switch (dtype) {
    case kFloat32: f(static_cast<float*>(nullptr)); break;
    case kFloat64: f(static_cast<double*>(nullptr)); break;
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

// strides = {g row, g col, x row, x col, w row, w col}.
template <typename Runtime>
int linear_ops(Runtime& rt, int op, int dtype, int nonneg, int sm_count,
               long long min_split_depth, long long M, long long N, long long K,
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
                       nonneg, sm_count, min_split_depth, g_guard);
    } else if (op == kInputGrad) {
      run_tile_problem(rt, linear_input_grad_problem<T>(M, N, K, g, x, w, lo, hi), nonneg,
                       sm_count, min_split_depth, g_guard);
    } else {
      run_tile_problem(rt, linear_weight_grad_problem<T>(M, N, K, g, x, w, lo, hi), nonneg,
                       sm_count, min_split_depth, g_guard);
    }
  });
}

template <typename Runtime>
int conv_ops(Runtime& rt, int transposed, int op, int dtype, int nonneg, int sm_count,
             long long min_split_depth, const long long* geometry, const void* const* in,
             void* out_lo, void* out_hi) {
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
      run_tile_problem(rt, problem, nonneg, sm_count, min_split_depth, g_guard);
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

// The depth slices plan_tiles chooses for a problem of this size (lets tests confirm they split).
int emu_plan_splits(long long rows, long long cols, long long depth, int groups, int sm_count,
                    long long min_split_depth) {
  TileShape shape;
  shape.rows = rows;
  shape.cols = cols;
  shape.depth = depth;
  shape.groups = groups;
  plan_tiles(shape, sm_count, min_split_depth);
  return shape.splits;
}

int emu_linear(int op, int dtype, int nonneg, int sm_count, long long min_split_depth,
               long long M, long long N, long long K, const void* const* in,
               const long long* strides, void* out_lo, void* out_hi) {
  EmulatedRuntime rt;
  return linear_ops(rt, op, dtype, nonneg, sm_count, min_split_depth, M, N, K, in, strides,
                    out_lo, out_hi);
}

// emu_linear's launches, recorded (record: RecordingRuntime's words; used: how many).
int emu_record_linear(int op, int dtype, int nonneg, int sm_count, long long min_split_depth,
                      long long M, long long N, long long K, const void* const* in,
                      const long long* strides, void* out_lo, void* out_hi, long long* record,
                      long long capacity, long long* used) {
  RecordingRuntime rt;
  const int status = linear_ops(rt, op, dtype, nonneg, sm_count, min_split_depth, M, N, K, in,
                                strides, out_lo, out_hi);
  return status != 0 ? status : copy_record(rt, record, capacity, used);
}

// The geometry the launchers derive from sizes and arguments (conv_problems.cuh), as 16 numbers:
// {batch, groups, big_c, big_h, big_w, small_c, small_h, small_w, kernel_h, kernel_w, stride_h,
//  stride_w, pad_h, pad_w, dil_h, dil_w}. conv2d: config = {stride, padding, dilation} (6);
// conv_transpose2d: config = {stride, padding, output_padding, dilation} (8).
void emu_conv_geometry(int transposed, const long long* x, const long long* w,
                       const long long* config, long long groups, long long* geometry) {
  const ConvGeometry geo =
      transposed ? conv_transpose2d_geometry(x, w, config, config + 2, config + 4, groups,
                                             config + 6)
                 : conv2d_geometry(x, w, config, config + 2, config + 4, groups);
  const int fields[] = {geo.groups,   geo.big_c,    geo.big_h,    geo.big_w,    geo.small_c,
                        geo.small_h,  geo.small_w,  geo.kernel_h, geo.kernel_w, geo.stride_h,
                        geo.stride_w, geo.pad_h,    geo.pad_w,    geo.dil_h,    geo.dil_w};
  geometry[0] = geo.batch;
  for (int i = 0; i < 15; ++i) geometry[i + 1] = fields[i];
}

// geometry: as emu_conv_geometry returns it; transposed = 1 runs the conv_transpose2d ops.
int emu_conv(int transposed, int op, int dtype, int nonneg, int sm_count,
             long long min_split_depth, const long long* geometry, const void* const* in,
             void* out_lo, void* out_hi) {
  EmulatedRuntime rt;
  return conv_ops(rt, transposed, op, dtype, nonneg, sm_count, min_split_depth, geometry, in,
                  out_lo, out_hi);
}

// emu_conv's launches, recorded (as emu_record_linear).
int emu_record_conv(int transposed, int op, int dtype, int nonneg, int sm_count,
                    long long min_split_depth, const long long* geometry, const void* const* in,
                    void* out_lo, void* out_hi, long long* record, long long capacity,
                    long long* used) {
  RecordingRuntime rt;
  const int status = conv_ops(rt, transposed, op, dtype, nonneg, sm_count, min_split_depth,
                              geometry, in, out_lo, out_hi);
  return status != 0 ? status : copy_record(rt, record, capacity, used);
}

}  // extern "C"
