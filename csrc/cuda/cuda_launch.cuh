// What the CUDA launchers (csrc/cuda/*.cu) share: the CUDA Runtime for the tile runner
// (csrc/kernels/tile_runner.cuh), dtype dispatch to the kernels' element types, device checks and
// raw pointers. Kept to light headers (no torch/extension.h, no ATen/cuda/CUDAContext.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <atomic>
#include <tuple>
#include <utility>
#include <vector>

#include "../kernels/tile_runner.cuh"

namespace inn::gpu {

using Pair = std::tuple<at::Tensor, at::Tensor>;
using kernels::index_t;

// Streaming multiprocessors of a device (cached: queried once per device).
inline int sm_count(c10::DeviceIndex device) {
  static std::atomic<int> counts[64] = {};
  std::atomic<int>* slot = device < 64 ? &counts[device] : nullptr;
  int count = slot ? slot->load(std::memory_order_relaxed) : 0;
  if (count == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    if (slot) slot->store(count, std::memory_order_relaxed);
  }
  return count;
}

// Launches tile problems on the current stream of `like`'s device (the caller holds a CUDAGuard).
class TileRuntime {
 public:
  explicit TileRuntime(const at::Tensor& like)
      : like_(like), stream_(c10::cuda::getCurrentCUDAStream(like.device().index())) {}

  int sm_count() const { return gpu::sm_count(like_.device().index()); }

  template <typename Problem, typename Config, bool kNonneg>
  void launch_tile(index_t blocks, int splits, const Problem& p) {
    kernels::interval_tile_kernel<Problem, Config, kNonneg>
        <<<dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(splits)),
           kernels::kTileThreads, 0, stream_.stream()>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename T>
  void launch_reduce(index_t blocks, const kernels::TileOutput<T>& out, int splits) {
    kernels::split_reduce_kernel<T>
        <<<static_cast<unsigned>(blocks), kernels::kTileThreads, 0, stream_.stream()>>>(out,
                                                                                         splits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // Freed when the runtime goes out of scope; the caching allocator only hands the memory to
  // later work on this stream, so the kernels queued above still see it.
  void* workspace(index_t bytes) {
    workspaces_.push_back(like_.new_empty({bytes}, like_.options().dtype(at::kByte)));
    return workspaces_.back().mutable_data_ptr();
  }

  void check(bool ok, const char* message) { TORCH_CHECK(ok, message); }

 private:
  at::Tensor like_;
  c10::cuda::CUDAStream stream_;
  std::vector<at::Tensor> workspaces_;
};

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with the kernels' element type for `dtype`.
template <typename F>
void dispatch(at::ScalarType dtype, const char* op, const F& f) {
  switch (dtype) {
    case at::kFloat: f(TypeTag<float>{}); break;
    case at::kDouble: f(TypeTag<double>{}); break;
    case at::kHalf: f(TypeTag<__half>{}); break;
    case at::kBFloat16: f(TypeTag<__nv_bfloat16>{}); break;
    default:
      TORCH_CHECK(false, op, ": no CUDA kernel for dtype ", dtype,
                  "; supported: float32, float64, float16, bfloat16");
  }
}

template <typename T>
const T* data(const at::Tensor& t) {
  return static_cast<const T*>(t.const_data_ptr());
}

template <typename T>
const T* data_or_null(const at::Tensor& t) {
  return t.defined() ? data<T>(t) : nullptr;
}

template <typename T>
T* mutable_data(at::Tensor& t) {
  return static_cast<T*>(t.mutable_data_ptr());
}

template <typename T>
kernels::IntervalPointer<T> pointer(const std::pair<at::Tensor, at::Tensor>& bounds) {
  return {data<T>(bounds.first), data<T>(bounds.second)};
}

inline std::pair<at::Tensor, at::Tensor> contiguous_pair(const at::Tensor& lo,
                                                         const at::Tensor& hi) {
  return {lo.contiguous(), hi.contiguous()};
}

// The optional bias (checked by op_checks.h) as contiguous tensors (undefined when absent).
inline std::pair<at::Tensor, at::Tensor> bias_pair(const std::optional<at::Tensor>& b_lo,
                                                   const std::optional<at::Tensor>& b_hi) {
  if (!b_lo.has_value()) return {};
  return {b_lo->contiguous(), b_hi->contiguous()};
}

}  // namespace inn::gpu
