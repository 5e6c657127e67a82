// Element types of the CUDA kernels and their accumulators.
//
// float and double accumulate in themselves; __half and __nv_bfloat16 are converted to float when
// loaded (so signs are taken from the converted value), accumulate in float, and are rounded back
// to their own type only when the result is stored.
//
// Torch-free. Host compilers (the CPU emulation in python_tests/cuda_emulation)
// get the half types by defining INN_KERNELS_HALF_TYPES and putting CUDA's include folder on the
// path; CUDA's fp16/bf16 headers have host implementations of the conversions used here.
#pragma once

#include "../interval_math.h"

#if defined(__CUDACC__) || defined(INN_KERNELS_HALF_TYPES)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define INN_KERNELS_HAVE_HALF 1
#endif

namespace inn::kernels {

using index_t = long long;  // offsets and sizes: products of sizes can exceed 2^31

// Conversion of a stored element type T to its accumulator type and back.
template <typename T>
struct Element {
  using Acc = T;
  static INN_HD Acc load(T v) { return v; }
  static INN_HD T store(Acc v) { return v; }
};

#ifdef INN_KERNELS_HAVE_HALF
template <>
struct Element<__half> {
  using Acc = float;
  static INN_HD Acc load(__half v) { return __half2float(v); }
  static INN_HD __half store(Acc v) { return __float2half_rn(v); }
};

template <>
struct Element<__nv_bfloat16> {
  using Acc = float;
  static INN_HD Acc load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static INN_HD __nv_bfloat16 store(Acc v) { return __float2bfloat16_rn(v); }
};
#endif

template <typename T>
using acc_t = typename Element<T>::Acc;

// Both bounds of an interval operand element, loaded at one offset.
template <typename T>
INN_HD void load_pair(const T* lo, const T* hi, index_t offset, acc_t<T>& v0, acc_t<T>& v1) {
  v0 = Element<T>::load(lo[offset]);
  v1 = Element<T>::load(hi[offset]);
}

// An interval operand: both bounds, read at the same offsets.
template <typename T>
struct IntervalPointer {
  const T* lo = nullptr;
  const T* hi = nullptr;
  INN_HD void load(index_t offset, acc_t<T>& v0, acc_t<T>& v1) const {
    load_pair(lo, hi, offset, v0, v1);
  }
};

}  // namespace inn::kernels
