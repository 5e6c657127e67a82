// The interval linear layer as tile problems (interval_tile_kernel.cuh). x is (M, K), w (N, K),
// the upstream gradient g (M, N); all three are strided 2-D views, outputs are contiguous.
//
//   forward       y (M x N):  rows m, cols n, depth k;  A = x(m, k), B = w(n, k)
//   input grad   dx (M x K):  rows m, cols k, depth n;  A = g(m, n), B = w(n, k), own x(m, k)
//   weight grad  dw (N x K):  rows n, cols k, depth m;  A = g(m, n), B = x(m, k), own w(n, k)
//
// Torch-free.
#pragma once

#include "interval_tile_kernel.cuh"

namespace inn::kernels {

template <typename T>
struct IntervalMatrix {
  const T* lo = nullptr;
  const T* hi = nullptr;
  index_t row_stride = 0, col_stride = 0;

  INN_HD void load(index_t offset, acc_t<T>& v0, acc_t<T>& v1) const {
    load_pair(lo, hi, offset, v0, v1);
  }
};

// Cursors are base offsets: of a matrix row (then the depth index walks its columns) or of a
// column (the depth index walks its rows).

template <typename Elem>
struct LinearForward : TileProblem<Elem> {
  using typename TileProblem<Elem>::T;
  using typename TileProblem<Elem>::Acc;
  using ACursor = index_t;
  using BCursor = index_t;
  static constexpr TermKind kKind = TermKind::kForward;
  static constexpr bool kAFirst = true;  // A = input
  static constexpr bool kALoadsAlongDepth = true;
  static constexpr bool kBLoadsAlongDepth = true;
  IntervalMatrix<T> x, w;

  INN_HD ACursor a_cursor(int, index_t m) const { return m * x.row_stride; }
  INN_HD void load_a(int, ACursor row, index_t k, Acc& v0, Acc& v1) const {
    x.load(row + k * x.col_stride, v0, v1);
  }
  INN_HD BCursor b_cursor(int, index_t n) const { return n * w.row_stride; }
  INN_HD void load_b(int, BCursor row, index_t k, Acc& v0, Acc& v1) const {
    w.load(row + k * w.col_stride, v0, v1);
  }
  INN_HD index_t out_index(int, index_t m, index_t n) const {
    return m * this->shape.cols + n;
  }
};

template <typename Elem>
struct LinearInputGrad : TileProblem<Elem> {
  using typename TileProblem<Elem>::T;
  using typename TileProblem<Elem>::Acc;
  using ACursor = index_t;
  using BCursor = index_t;
  static constexpr TermKind kKind = TermKind::kInputGrad;
  static constexpr bool kAFirst = true;  // A = grad
  static constexpr bool kALoadsAlongDepth = true;
  static constexpr bool kBLoadsAlongDepth = false;
  IntervalMatrix<T> grad, x, w;

  INN_HD ACursor a_cursor(int, index_t m) const { return m * grad.row_stride; }
  INN_HD void load_a(int, ACursor row, index_t n, Acc& v0, Acc& v1) const {
    grad.load(row + n * grad.col_stride, v0, v1);
  }
  INN_HD BCursor b_cursor(int, index_t k) const { return k * w.col_stride; }
  INN_HD void load_b(int, BCursor col, index_t n, Acc& v0, Acc& v1) const {
    w.load(col + n * w.row_stride, v0, v1);
  }
  INN_HD void load_own(int, index_t m, index_t k, Acc& v0, Acc& v1) const {
    x.load(m * x.row_stride + k * x.col_stride, v0, v1);
  }
  INN_HD index_t out_index(int, index_t m, index_t k) const {
    return m * this->shape.cols + k;
  }
};

template <typename Elem>
struct LinearWeightGrad : TileProblem<Elem> {
  using typename TileProblem<Elem>::T;
  using typename TileProblem<Elem>::Acc;
  using ACursor = index_t;
  using BCursor = index_t;
  static constexpr TermKind kKind = TermKind::kWeightGrad;
  static constexpr bool kAFirst = true;  // A = grad
  static constexpr bool kALoadsAlongDepth = false;
  static constexpr bool kBLoadsAlongDepth = false;
  IntervalMatrix<T> grad, x, w;

  INN_HD ACursor a_cursor(int, index_t n) const { return n * grad.col_stride; }
  INN_HD void load_a(int, ACursor col, index_t m, Acc& v0, Acc& v1) const {
    grad.load(col + m * grad.row_stride, v0, v1);
  }
  INN_HD BCursor b_cursor(int, index_t k) const { return k * x.col_stride; }
  INN_HD void load_b(int, BCursor col, index_t m, Acc& v0, Acc& v1) const {
    x.load(col + m * x.row_stride, v0, v1);
  }
  INN_HD void load_own(int, index_t n, index_t k, Acc& v0, Acc& v1) const {
    w.load(n * w.row_stride + k * w.col_stride, v0, v1);
  }
  INN_HD index_t out_index(int, index_t n, index_t k) const {
    return n * this->shape.cols + k;
  }
};

// Builders: sizes, operands and outputs; the runner (tile_runner.cuh) plans the grid.
template <typename T>
LinearForward<T> linear_forward_problem(index_t M, index_t N, index_t K, IntervalMatrix<T> x,
                                        IntervalMatrix<T> w, const T* bias_lo, const T* bias_hi,
                                        T* y_lo, T* y_hi) {
  LinearForward<T> p;
  p.shape.rows = M;
  p.shape.cols = N;
  p.shape.depth = K;
  p.x = x;
  p.w = w;
  p.out.lo = y_lo;
  p.out.hi = y_hi;
  p.out.numel = M * N;
  p.out.bias_lo = bias_lo;
  p.out.bias_hi = bias_hi;
  p.out.bias_channels = N;
  return p;
}

template <typename T>
LinearInputGrad<T> linear_input_grad_problem(index_t M, index_t N, index_t K,
                                             IntervalMatrix<T> grad, IntervalMatrix<T> x,
                                             IntervalMatrix<T> w, T* dx_lo, T* dx_hi) {
  LinearInputGrad<T> p;
  p.shape.rows = M;
  p.shape.cols = K;
  p.shape.depth = N;
  p.grad = grad;
  p.x = x;
  p.w = w;
  p.out.lo = dx_lo;
  p.out.hi = dx_hi;
  p.out.numel = M * K;
  return p;
}

template <typename T>
LinearWeightGrad<T> linear_weight_grad_problem(index_t M, index_t N, index_t K,
                                               IntervalMatrix<T> grad, IntervalMatrix<T> x,
                                               IntervalMatrix<T> w, T* dw_lo, T* dw_hi) {
  LinearWeightGrad<T> p;
  p.shape.rows = N;
  p.shape.cols = K;
  p.shape.depth = M;
  p.grad = grad;
  p.x = x;
  p.w = w;
  p.out.lo = dw_lo;
  p.out.hi = dw_hi;
  p.out.numel = N * K;
  return p;
}

}  // namespace inn::kernels
