// The elementwise passes of the point-weight form (see sum_difference.h).
#include "sum_difference.h"

#include "channel_order.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
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

// halve_sum_difference_span with the tie rule of the general-mode input gradient.
template <typename T>
bool halve_tie_span(T* __restrict s, T* __restrict d, const T* __restrict l,
                    const T* __restrict h, int64_t n) {
  T probe = 0;
#pragma omp simd reduction(+ : probe)
  for (int64_t i = 0; i < n; ++i) {
    const T si = s[i], di = d[i];
    probe += (si - si) + (di - di);
    const T lo = (si - di) * T(0.5), hi = (si + di) * T(0.5);
    const bool tie = !(l[i] < h[i]);
    s[i] = tie ? lo + hi : lo;
    d[i] = tie ? T(0) : hi;
  }
  return probe == 0;
}

// The weight gradient's select by sign, with the weight's own checks in the same pass: `probe`
// stays 0 iff p, q and w are all finite; `zeros` counts the zero weights.
template <typename T>
bool select_span(T* __restrict p, const T* __restrict q, const T* __restrict w, bool nonneg,
                 int64_t n, bool& any_zero) {
  T probe = 0;
  int64_t zeros = 0;
#pragma omp simd reduction(+ : probe, zeros)
  for (int64_t i = 0; i < n; ++i) {
    const T pi = p[i], qi = q[i], wi = w[i];
    probe += (pi - pi) + (qi - qi) + (wi - wi);
    zeros += wi == T(0);
    const T plus = (pi + qi) * T(0.5), minus = (pi - qi) * T(0.5);
    p[i] = (nonneg ? wi >= T(0) : wi > T(0)) ? plus : minus;
  }
  any_zero = zeros > 0;
  return probe == 0;
}

// p <- t where w == 0; whether t was finite there.
template <typename T>
bool tie_span(T* __restrict p, const T* __restrict t, const T* __restrict w, int64_t n) {
  T probe = 0;
#pragma omp simd reduction(+ : probe)
  for (int64_t i = 0; i < n; ++i) {
    const bool tie = w[i] == T(0);
    const T ti = tie ? t[i] : T(0);
    probe += ti - ti;
    p[i] = tie ? ti : p[i];
  }
  return probe == 0;
}

// Runs span(begin, n) -> bool (finite) over [0, n) in parallel tasks; true iff every task was.
template <typename Span>
bool parallel_finite(int64_t n, const Span& span) {
  std::atomic<bool> finite{true};
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    if (!span(begin, end - begin)) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load();
}

Planes planes_of(const Tensor& t) { return {t.size(0), t.size(1), t.size(2) * t.size(3)}; }

// Channels last and not channels first (a 4-D tensor with one channel or one pixel is both).
bool only_channels_last(const Tensor& t) {
  return t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous();
}

template <typename T>
void sum_difference_cpu(const T* a, const T* b, T* s, T* d, int64_t n) {
  at::parallel_for(0, n, kGrain, [=](int64_t begin, int64_t end) {
    sum_difference_span(a + begin, b + begin, s + begin, d + begin, end - begin);
  });
}

template <typename T>
bool halve_sum_difference_cpu(T* s, T* d, int64_t n) {
  return parallel_finite(n, [=](int64_t begin, int64_t count) {
    return halve_sum_difference_span(s + begin, d + begin, count);
  });
}

// The channels-last case of the halving passes: channels-last 4-D s and d (the products of
// channels-last operands) are replaced by new channels-first halves, with the tie rule when l
// and h are given (read channels first). False, and nothing done, for other layouts.
bool halve_to_channels_first(Tensor& s, Tensor& d, const Tensor* l_, const Tensor* h_,
                             bool& finite) {
  if (!only_channels_last(s) || d.strides() != s.strides()) return false;
  Tensor lo = at::empty(s.sizes(), s.options()), hi = at::empty(s.sizes(), s.options());
  Tensor l, h;
  if (l_ != nullptr) {
    l = l_->contiguous();
    h = h_->contiguous();
  }
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "halve_sum_difference_to_channels_first", [&] {
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    scalar_t* lop = lo.mutable_data_ptr<scalar_t>();
    scalar_t* hip = hi.mutable_data_ptr<scalar_t>();
    finite = l.defined()
                 ? halve_sum_difference_to_channels_first<true>(
                       sp, dp, lop, hip, l.const_data_ptr<scalar_t>(),
                       h.const_data_ptr<scalar_t>(), planes_of(s), kGrain)
                 : halve_sum_difference_to_channels_first<false, scalar_t>(
                       sp, dp, lop, hip, nullptr, nullptr, planes_of(s), kGrain);
  });
  s = lo;
  d = hi;
  return true;
}

}  // namespace

std::pair<Tensor, Tensor> sum_difference(const Tensor& a_, const Tensor& b_, bool channels_last) {
  if (!a_.device().is_cpu()) return {at::add(a_, b_), at::sub(b_, a_)};
  if (channels_last && a_.dim() == 4 && a_.is_contiguous() &&
      !a_.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    const Tensor b = b_.contiguous();
    const auto format = at::MemoryFormat::ChannelsLast;
    Tensor s = at::empty(a_.sizes(), a_.options().memory_format(format));
    Tensor d = at::empty(a_.sizes(), a_.options().memory_format(format));
    AT_DISPATCH_FLOATING_TYPES(a_.scalar_type(), "sum_difference_to_channels_last", [&] {
      sum_difference_to_channels_last(a_.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(),
                                      s.mutable_data_ptr<scalar_t>(),
                                      d.mutable_data_ptr<scalar_t>(), planes_of(a_), kGrain);
    });
    return {s, d};
  }
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
  bool finite_out = true;
  if (halve_to_channels_first(s, d, nullptr, nullptr, finite_out)) return finite_out;
  s = dense(s);
  d = laid_out_like(d, s);
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "halve_sum_difference", [&] {
    finite = halve_sum_difference_cpu(s.mutable_data_ptr<scalar_t>(),
                                      d.mutable_data_ptr<scalar_t>(), s.numel());
  });
  return finite;
}

bool halve_sum_difference_tie_(Tensor& s, Tensor& d, const Tensor& l_, const Tensor& h_,
                               Tensor& nonfinite_flag) {
  if (!s.device().is_cpu()) {
    halve_sum_difference_(s, d, nonfinite_flag);
    const Tensor tie = at::logical_not(at::lt(l_, h_));
    s = at::where(tie, at::add(s, d), s);
    d = at::where(tie, at::zeros({}, d.options()), d);
    return true;
  }
  bool finite_out = true;
  if (halve_to_channels_first(s, d, &l_, &h_, finite_out)) return finite_out;
  s = dense(s);
  d = laid_out_like(d, s);
  const Tensor l = laid_out_like(l_, s), h = laid_out_like(h_, s);
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "halve_sum_difference_tie", [&] {
    scalar_t* sp = s.mutable_data_ptr<scalar_t>();
    scalar_t* dp = d.mutable_data_ptr<scalar_t>();
    const scalar_t* lp = l.const_data_ptr<scalar_t>();
    const scalar_t* hp = h.const_data_ptr<scalar_t>();
    finite = parallel_finite(s.numel(), [=](int64_t b, int64_t n) {
      return halve_tie_span(sp + b, dp + b, lp + b, hp + b, n);
    });
  });
  return finite;
}

bool select_point_weight_grad_(Tensor& p, const Tensor& q_, const Tensor& w_, bool input_nonneg,
                               Tensor& nonfinite_flag, bool& any_zero) {
  if (!p.device().is_cpu()) {
    const Tensor plus = at::add(p, q_).mul_(0.5), minus = at::sub(p, q_).mul_(0.5);
    const Tensor out = at::where(input_nonneg ? at::ge(w_, 0) : at::gt(w_, 0), plus, minus);
    nonfinite_flag = at::logical_not(at::isfinite(at::sum(p) + at::sum(q_) + at::sum(w_)));
    p = out;
    any_zero = !input_nonneg;  // not looked at: that would synchronise with the host
    return true;
  }
  p = dense(p);
  const Tensor q = laid_out_like(q_, p), w = laid_out_like(w_, p);
  bool finite = true;
  std::atomic<bool> zero{false};
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "select_point_weight_grad", [&] {
    scalar_t* pp = p.mutable_data_ptr<scalar_t>();
    const scalar_t* qp = q.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    finite = parallel_finite(p.numel(), [=, &zero](int64_t b, int64_t n) {
      bool span_zero = false;
      const bool ok = select_span(pp + b, qp + b, wp + b, input_nonneg, n, span_zero);
      if (span_zero) zero.store(true, std::memory_order_relaxed);
      return ok;
    });
  });
  any_zero = zero.load();
  return finite;
}

bool take_tie_where_zero_(Tensor& p, const Tensor& tie_, const Tensor& w_,
                          Tensor& nonfinite_flag) {
  if (!p.device().is_cpu()) {
    p = at::where(at::eq(w_, 0), tie_, p);
    nonfinite_flag = at::logical_or(nonfinite_flag, at::logical_not(at::isfinite(at::sum(tie_))));
    return true;
  }
  p = dense(p);
  const Tensor tie = laid_out_like(tie_, p), w = laid_out_like(w_, p);
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "take_tie_where_zero", [&] {
    scalar_t* pp = p.mutable_data_ptr<scalar_t>();
    const scalar_t* tp = tie.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    finite = parallel_finite(p.numel(), [=](int64_t b, int64_t n) {
      return tie_span(pp + b, tp + b, wp + b, n);
    });
  });
  return finite;
}

}  // namespace inn::library
