// The elementwise passes of the point-weight form (see sum_difference.h).
#include "sum_difference.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>

namespace inn::library {
namespace {

using at::Tensor;

// Elements per task: a pass is memory-bound, so only large tensors are split across threads.
constexpr int64_t kGrain = 1 << 15;

// `t` as a dense tensor, and `u` with the same sizes laid out like it, so that both are read as
// one flat array in the same element order.
Tensor dense(const Tensor& t) { return t.is_non_overlapping_and_dense() ? t : t.contiguous(); }
Tensor laid_out_like(const Tensor& u, const Tensor& like) {
  return u.strides() == like.strides() ? u : at::empty_like(like).copy_(u);
}

// The loop bodies of one task, on restrict pointers (so that they vectorise).
template <typename T>
void sum_difference_span(const T* __restrict a, const T* __restrict b, T* __restrict s,
                         T* __restrict d, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    s[i] = a[i] + b[i];
    d[i] = b[i] - a[i];
  }
}

// v - v is 0 for a finite v and NaN for inf or NaN: the probe stays 0 iff all are finite.
template <typename T>
bool halve_sum_difference_span(T* __restrict s, T* __restrict d, int64_t n) {
  T probe = 0;
#pragma omp simd reduction(+ : probe)
  for (int64_t i = 0; i < n; ++i) {
    const T si = s[i], di = d[i];
    probe += (si - si) + (di - di);
    s[i] = (si - di) * T(0.5);
    d[i] = (si + di) * T(0.5);
  }
  return probe == 0;
}

template <typename T>
void sum_difference_cpu(const T* a, const T* b, T* s, T* d, int64_t n) {
  at::parallel_for(0, n, kGrain, [=](int64_t begin, int64_t end) {
    sum_difference_span(a + begin, b + begin, s + begin, d + begin, end - begin);
  });
}

template <typename T>
bool halve_sum_difference_cpu(T* s, T* d, int64_t n) {
  std::atomic<bool> finite{true};
  at::parallel_for(0, n, kGrain, [=, &finite](int64_t begin, int64_t end) {
    if (!halve_sum_difference_span(s + begin, d + begin, end - begin)) {
      finite.store(false, std::memory_order_relaxed);
    }
  });
  return finite.load();
}

}  // namespace

std::pair<Tensor, Tensor> sum_difference(const Tensor& a_, const Tensor& b_) {
  if (!a_.device().is_cpu()) return {at::add(a_, b_), at::sub(b_, a_)};
  const Tensor a = dense(a_), b = laid_out_like(b_, a);
  Tensor s = at::empty_like(a), d = at::empty_like(a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "sum_difference", [&] {
    sum_difference_cpu(a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(),
                       s.mutable_data_ptr<scalar_t>(), d.mutable_data_ptr<scalar_t>(), a.numel());
  });
  return {s, d};
}

bool halve_sum_difference_(Tensor& s, Tensor& d, Tensor& nonfinite_flag) {
  if (!s.device().is_cpu()) {
    Tensor lo = at::sub(s, d).mul_(0.5);
    d.add_(s).mul_(0.5);
    s = lo;
    nonfinite_flag = at::logical_not(at::isfinite(at::sum(s) + at::sum(d)));
    return true;
  }
  s = dense(s);
  d = laid_out_like(d, s);
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "halve_sum_difference", [&] {
    finite = halve_sum_difference_cpu(s.mutable_data_ptr<scalar_t>(),
                                      d.mutable_data_ptr<scalar_t>(), s.numel());
  });
  return finite;
}

}  // namespace inn::library
