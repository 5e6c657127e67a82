// The SIMD interval GEMM kernels, written once over a vector-traits type `S` and compiled per
// instruction set: gemm_avx512.cpp and gemm_avx2.cpp include this file INSIDE their own
// namespace, after `#pragma GCC target(...)`, so every function here gets that TU's ISA and its
// own symbol. It therefore includes nothing itself (the including TU provides <algorithm>,
// <cstdint>, <cstring>, <utility>, <vector>, csrc/interval_math.h and gemm_isa.h before the
// pragma).
//
// `S` provides: T (scalar), V (vector of L lanes), M (lane mask), L, the tile constants, and
//   load/store/set1/zero/add/mul/fma, load_partial (first n lanes, zeros after), hsum,
//   transpose (L x L), ge0 (lanes >= 0; NaN false), mnot/mand/mandnot/any,
//   select(m, t, f) = m ? t : f, mask_fma(m, x, y, acc) = m ? x*y + acc : acc (unselected
//   lanes untouched: exact), lo_takes_h(pl, ph) / hi_takes_h(ql, qh) (the general product
//   takes its h candidate: not (pl <= ph or pl NaN), resp. not (ql >= qh or ql NaN)), gt (p > q,
//   ordered: the same choice when no candidate is NaN), min0/max0 (min(x, 0), max(x, 0); not for NaN),
//   min_nan/max_nan (the value of that choice: NaN wins, ties are equal values),
//   vmask_ge0/vselect (a select whose mask lives in a vector register),
//   kStoredMasks/MaskBits/mask_bits/load_mask (whether sign masks are precomputed when packing:
//   on AVX-512 a mask load is cheaper than a compare into a mask register).
//
// Semantics are those of csrc/interval_math.h (gemm_scalar.cpp is the one-element version):
// tie and NaN conventions and the gradient routing are identical; the reduction order differs
// and products are fused multiply-adds (one rounding instead of two).
//
// Design (measured on AMD Zen 5: 2 FMA pipes, 2 vector loads per cycle; blends, min/max and
// bitwise ops issue on the other two FP pipes for free; compares into mask registers and mask
// logic cost about a third of an FMA slot each). Operands are packed per block into the calling
// thread's workspace, zero padded to whole register tiles, so microkernels see no edges:
//  * forward nonneg: lanes run over output columns n. Per k the tile loads NV vectors of a and
//    of b (a packed W panel, transposed on packing, with stored sign masks) and broadcasts the
//    MR rows' l and h; each term is a free blend (l or h by the weight's sign) and one FMA per
//    bound, i.e. the two GEMM-equivalents of the fused product and nothing else on the FMA pipes.
//    AVX2 (kFwdSplitSigns) has no mask registers: its variable blend costs 2-3 uops on the FMA
//    ports on Intel cores, more than a second FMA, so each bound is max(w, 0) * one input bound
//    + min(w, 0) * the other (one product an exact zero: the same sum); measured 1.18x faster
//    (AVX2 1024^3 nonneg forward: 5.2x single-thread AVX2 MKL sgemm, from 6.2x), at 75% of the
//    FMA ports' peak for its four FMAs per term.
//  * forward general: the input's sign picks the weight vector of each candidate, through byte
//    offsets packed with x (a pointer select, no blend); min_nan/max_nan choose the candidate.
//  * forward, small batches (M <= kDotMaxRows, contiguous rows): dot products with lanes over k,
//    rows of x and w read in place (packing w would cost as much as using it once).
//  * backward input (dx, lanes over k, reduction over n): with ordered weight bounds every term
//    is three FMAs (see micro_nonneg3); otherwise four masked ones.
//  * backward weight (dw, lanes over k, reduction over m): the input bound each weight bound's
//    gradient multiplies is fixed per weight element, so its masks live in registers for the
//    whole reduction: two FMAs per term.
//  * general-mode backward: the candidate choice is per term (compares), the selected product's
//    gradient is routed with masked FMAs; tiles whose input lanes and weights are all
//    sign-routed (interval_math.h) take known candidates instead (blends and FMAs only:
//    micro_routed).

template <typename I>
constexpr I ceil_div(I a, I b) {
  return (a + b - 1) / b;
}

// One exact general-mode term per lane, added to the bounds: v = [l, h] with sign masks ml, mh
// (lanes >= 0), w = [a, b]; each input bound's candidate takes the weight bound its sign picks,
// min_nan/max_nan keep the smaller/larger (interval_math.h's general product, vectorised).
template <class S>
inline void add_general_term(typename S::V l, typename S::V h, typename S::M ml,
                             typename S::M mh, typename S::V a, typename S::V b,
                             typename S::V& lo, typename S::V& hi) {
  lo = S::add(lo, S::min_nan(S::mul(l, S::select(ml, a, b)), S::mul(h, S::select(mh, a, b))));
  hi = S::add(hi, S::max_nan(S::mul(l, S::select(ml, b, a)), S::mul(h, S::select(mh, b, a))));
}

// An input interval's bounds split by sign: max(l, 0), min(l, 0), max(h, 0), min(h, 0).
template <class S>
struct SignedParts {
  typename S::V pl, nl, ph, nh;
};

template <class S>
inline __attribute__((always_inline)) SignedParts<S> signed_parts(const typename S::T* l,
                                                                  const typename S::T* h) {
  const typename S::V vl = S::load(l), vh = S::load(h);
  return {S::max0(vl), S::min0(vl), S::max0(vh), S::min0(vh)};
}

// The routed weight-gradient term (sign-routed weight and input lane, interval_math.h): a weight
// with a, b >= 0 takes l for the lower bound and h for the upper (at a tie l == h: the same
// value), so
//   da += gl max(l, 0) + gh min(h, 0),  db += gl min(l, 0) + gh max(h, 0);
// one with a, b <= 0 (`swap`) takes h and l, whose sums are these with gl and gh exchanged, in
// the other order: its accumulators (first, second) hold (db, da) through the reduction
// (swap_where before and after). Two blends and four FMAs.
template <class S>
inline __attribute__((always_inline)) void add_routed_weight_term(
    typename S::M swap, typename S::V gl, typename S::V gh, const SignedParts<S>& x,
    typename S::V& first, typename S::V& second) {
  const typename S::V u = S::select(swap, gh, gl), v = S::select(swap, gl, gh);
  first = S::fma(u, x.pl, S::fma(v, x.nh, first));
  second = S::fma(u, x.nl, S::fma(v, x.ph, second));
}

// (a, b) = (b, a) in the lanes of `m`.
template <class S>
inline __attribute__((always_inline)) void swap_where(typename S::M m, typename S::V& a,
                                                      typename S::V& b) {
  const typename S::V t = a;
  a = S::select(m, b, t);
  b = S::select(m, t, b);
}

// swap_where over a whole R x C register tile.
template <class S, int R, int C>
inline __attribute__((always_inline)) void swap_tile(const typename S::M (&m)[R][C],
                                                     typename S::V (&a)[R][C],
                                                     typename S::V (&b)[R][C]) {
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) swap_where<S>(m[r][c], a[r][c], b[r][c]);
  }
}

// One step of a routed R x C weight-gradient tile (the pixel and GEMM kernels'): row r's
// gradient bounds grad(r) = (gl, gh) times column c's input parts x[c].
template <class S, int R, int C, typename Grad>
inline __attribute__((always_inline)) void add_routed_weight_terms(
    const typename S::M (&swap)[R][C], const SignedParts<S> (&x)[C], Grad&& grad,
    typename S::V (&da)[R][C], typename S::V (&db)[R][C]) {
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const auto [gl, gh] = grad(r);
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      add_routed_weight_term<S>(swap[r][c], gl, gh, x[c], da[r][c], db[r][c]);
    }
  }
}

template <typename T>
const T* row_ptr(const ConstView<T>& v, int64_t r, int64_t c) {
  return v.data + r * v.row_stride + c * v.col_stride;
}

// Whether the n weights [a[i * a_step], b[i * b_step]] are all sign-routed (interval_math.h).
template <typename T>
bool weights_routed(const T* a, int64_t a_step, const T* b, int64_t b_step, int64_t n) {
  int routed = 1;
  if (a_step == 1 && b_step == 1) {
    for (int64_t i = 0; i < n; ++i) routed &= sign_routed_weight(a[i], b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) routed &= sign_routed_weight(a[i * a_step], b[i * b_step]);
  }
  return routed;
}

// Whether the n lanes [lo[i], hi[i]] are all sign-routed (interval_math.h; a loop the compiler
// vectorises).
template <typename T>
bool lanes_routed(const T* lo, const T* hi, int64_t n) {
  int routed = 1;
  for (int64_t i = 0; i < n; ++i) routed &= sign_routed_input(lo[i], hi[i]);
  return routed;
}

// dst[i * dst_step] = src[i * src_step] for i < n; zeros for i in [n, total).
template <typename T>
void gather(T* dst, int64_t dst_step, const T* src, int64_t src_step, int64_t n, int64_t total) {
  int64_t i = 0;
  if (src_step == 1) {
    for (; i < n; ++i) dst[i * dst_step] = src[i];
  } else {
    for (; i < n; ++i) dst[i * dst_step] = src[i * src_step];
  }
  for (; i < total; ++i) dst[i * dst_step] = T(0);
}

// A rows x cols tile of both output bounds, as the microkernels see it: row pointers with a
// leading dimension, either straight into the output or into a local buffer.
template <typename T>
struct OutTile {
  T* lo;
  T* hi;
  int64_t ld_lo, ld_hi;
};

// Prepares the output tile at (r, c) of `rows` x `cols` valid elements of a TR x TC register
// tile. Returns a direct view when the tile is whole and the output rows are contiguous, else
// `buf` (2 * TR * TC), loaded from the output unless `first`.
template <typename T, int TR, int TC>
OutTile<T> open_tile(const View<T>& lo, const View<T>& hi, int64_t r, int64_t c, int rows,
                     int cols, bool first, T* buf) {
  if (rows == TR && cols == TC && lo.col_stride == 1 && hi.col_stride == 1) {
    return {lo.data + r * lo.row_stride + c, hi.data + r * hi.row_stride + c, lo.row_stride,
            hi.row_stride};
  }
  if (!first) {
    for (int i = 0; i < TR; ++i) {
      for (int j = 0; j < TC; ++j) {
        const bool in = i < rows && j < cols;
        buf[i * TC + j] = in ? lo.data[(r + i) * lo.row_stride + (c + j) * lo.col_stride] : T(0);
        buf[TR * TC + i * TC + j] =
            in ? hi.data[(r + i) * hi.row_stride + (c + j) * hi.col_stride] : T(0);
      }
    }
  }
  return {buf, buf + TR * TC, TC, TC};
}

template <typename T, int TR, int TC>
void close_tile(const View<T>& lo, const View<T>& hi, int64_t r, int64_t c, int rows, int cols,
                const OutTile<T>& tile, const T* buf) {
  if (tile.lo != buf) return;
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) {
      lo.data[(r + i) * lo.row_stride + (c + j) * lo.col_stride] = buf[i * TC + j];
      hi.data[(r + i) * hi.row_stride + (c + j) * hi.col_stride] = buf[TR * TC + i * TC + j];
    }
  }
}

// The R x NV register tile of both output bounds: zeros when `first`, else loaded from `c`.
template <class S, int R, int NV>
inline void load_acc(typename S::V (&lo)[R][NV], typename S::V (&hi)[R][NV],
                     const OutTile<typename S::T>& c, bool first) {
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      lo[i][v] = first ? S::zero() : S::load(c.lo + i * c.ld_lo + v * S::L);
      hi[i][v] = first ? S::zero() : S::load(c.hi + i * c.ld_hi + v * S::L);
    }
  }
}

template <class S, int R, int NV>
inline void store_acc(const typename S::V (&lo)[R][NV], const typename S::V (&hi)[R][NV],
                      const OutTile<typename S::T>& c) {
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      S::store(c.lo + i * c.ld_lo + v * S::L, lo[i][v]);
      S::store(c.hi + i * c.ld_hi + v * S::L, hi[i][v]);
    }
  }
}

// Carves 64-byte aligned arrays out of the thread workspace.
struct Carver {
  char* base;
  size_t used = 0;
  template <typename U>
  U* take(size_t count) {
    U* p = reinterpret_cast<U*>(base + used);
    used += (count * sizeof(U) + 63) / 64 * 64;
    return p;
  }
};

template <typename U>
size_t carve_size(size_t count) {
  return (count * sizeof(U) + 63) / 64 * 64;
}

// ------------------------------------------------------------------------------------------------
// Forward: y (M x N) over k.
template <class S>
struct Forward {
  using T = typename S::T;
  using V = typename S::V;
  using M = typename S::M;
  static constexpr int L = S::L;
  static constexpr int NV = S::kFwdNV;
  static constexpr int NR = NV * L;
  static constexpr int64_t KC = S::kFwdKC;
  static constexpr int32_t kB = NR * sizeof(T);  // byte offset of the b weights in a W k-row

  // W[n0:n1, k0:k0+kc] -> per NR-column tile: kc rows of [a x NR, b x NR]. Contiguous rows of W
  // go through L x L register transposes; other layouts and the k tail element by element.
  // With S::kStoredMasks also the sign masks (w >= 0) of every packed weight vector, per tile
  // kc rows of [a x NV, b x NV]: loading a mask is cheaper than comparing in the microkernel.
  static void pack_w(const GemmArgs<T>& p, int64_t n0, int64_t n1, int64_t k0, int64_t kc,
                     T* out, typename S::MaskBits* masks) {
    const bool rows_contiguous = p.w_lo.col_stride == 1 && p.w_hi.col_stride == 1;
    const int64_t kfast = rows_contiguous ? kc / L * L : 0;
    for (int64_t j = n0; j < n1; j += NR, out += kc * 2 * NR) {
      const int cols = static_cast<int>(std::min<int64_t>(NR, n1 - j));
      for (int bound = 0; bound < 2; ++bound) {
        const ConstView<T>& w = bound == 0 ? p.w_lo : p.w_hi;
        for (int64_t k = 0; k < kfast; k += L) {
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) {
            V r[L];
            for (int c = 0; c < L; ++c) {
              r[c] = v * L + c < cols ? S::load(row_ptr(w, j + v * L + c, k0 + k)) : S::zero();
            }
            S::transpose(r);
            for (int t = 0; t < L; ++t) S::store(out + (k + t) * 2 * NR + bound * NR + v * L, r[t]);
          }
        }
        for (int64_t k = kfast; k < kc; ++k) {
          T* o = out + k * 2 * NR + bound * NR;
          for (int c = 0; c < NR; ++c) o[c] = c < cols ? *row_ptr(w, j + c, k0 + k) : T(0);
        }
      }
      if (S::kStoredMasks && masks) {
        typename S::MaskBits* m = masks + (j - n0) / NR * kc * 2 * NV;
        for (int64_t q = 0; q < kc * 2 * NV; ++q) m[q] = S::mask_bits(S::ge0(S::load(out + q * L)));
      }
    }
  }

  // General mode: x[m0:m0+rows, k0:k0+kc] -> per MR-row tile: kc rows of [l x MR, h x MR], and
  // in `offs` the byte offsets (0: a, kB: b) of the weights of the lower bound's two candidates.
  template <int MR>
  static void pack_x(const GemmArgs<T>& p, int64_t m0, int64_t rows, int64_t k0, int64_t kc,
                     T* out, int32_t* offs) {
    for (int64_t i = 0; i < rows; i += MR, out += kc * 2 * MR) {
      for (int r = 0; r < MR; ++r) {
        const bool in = i + r < rows;
        gather(out + r, 2 * MR, in ? row_ptr(p.x_lo, m0 + i + r, k0) : nullptr,
               p.x_lo.col_stride, in ? kc : 0, kc);
        gather(out + MR + r, 2 * MR, in ? row_ptr(p.x_hi, m0 + i + r, k0) : nullptr,
               p.x_hi.col_stride, in ? kc : 0, kc);
      }
      if (offs) {
        for (int64_t q = 0; q < kc * 2 * MR; ++q) offs[q] = out[q] >= T(0) ? 0 : kB;
        offs += kc * 2 * MR;
      }
    }
  }

  // The MR rows of x[m:m+rows, k0:k0+kc] (both bounds, zero rows below `rows`) copied with row
  // stride `ld`: contiguous rows for the broadcasts, and a stride that is no multiple of 4 KiB,
  // unlike many layer widths (rows at such strides share L1 sets).
  template <int MR>
  static void copy_rows(const GemmArgs<T>& p, int64_t m, int rows, int64_t k0, int64_t kc,
                        T* out, int64_t ld) {
    for (int r = 0; r < MR; ++r) {
      const bool in = r < rows;
      gather(out + r * ld, 1, in ? row_ptr(p.x_lo, m + r, k0) : nullptr, p.x_lo.col_stride,
             in ? kc : 0, kc);
      gather(out + (MR + r) * ld, 1, in ? row_ptr(p.x_hi, m + r, k0) : nullptr,
             p.x_hi.col_stride, in ? kc : 0, kc);
    }
  }

  static M weight_mask(V w, const typename S::MaskBits* stored) {
    if constexpr (S::kStoredMasks) {
      return S::load_mask(stored);
    } else {
      return S::ge0(w);
    }
  }

  // lo += a * (a >= 0 ? l : h), hi += b * (b >= 0 ? h : l), lanes over n; row i of the tile's
  // lower input bounds at xl + i * ldl, of the upper ones at xh + i * ldh.
  template <int MR>
  static void micro_nonneg(int64_t kc, const T* __restrict xl, int64_t ldl,
                                  const T* __restrict xh, int64_t ldh, const T* __restrict wp,
                           const typename S::MaskBits* __restrict mp,
                                  const OutTile<T>& c, bool first) {
    V lo[MR][NV], hi[MR][NV];
    load_acc<S>(lo, hi, c, first);
    for (int64_t k = 0; k < kc; ++k, wp += 2 * NR, mp += 2 * NV) {
      V a[NV], b[NV];
      M ma[NV], mb[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        a[v] = S::load(wp + v * L);
        b[v] = S::load(wp + NR + v * L);
        ma[v] = weight_mask(a[v], mp + v);
        mb[v] = weight_mask(b[v], mp + NV + v);
      }
      if constexpr (S::kFwdSplitSigns) {
        // a = max(a, 0) + min(a, 0), one of them an exact zero: two FMAs per bound and no
        // blend (finite operands only, see interval_gemm.cpp; the sum is that of the blend)
        V ap[NV], an[NV], bp[NV], bn[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          ap[v] = S::max0(a[v]);
          an[v] = S::min0(a[v]);
          bp[v] = S::max0(b[v]);
          bn[v] = S::min0(b[v]);
        }
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          const V l = S::set1(xl[i * ldl + k]), h = S::set1(xh[i * ldh + k]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) {
            lo[i][v] = S::fma(an[v], h, S::fma(ap[v], l, lo[i][v]));
            hi[i][v] = S::fma(bn[v], l, S::fma(bp[v], h, hi[i][v]));
          }
        }
        continue;
      }
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const V l = S::set1(xl[i * ldl + k]), h = S::set1(xh[i * ldh + k]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          lo[i][v] = S::fma(S::select(ma[v], l, h), a[v], lo[i][v]);
          hi[i][v] = S::fma(S::select(mb[v], h, l), b[v], hi[i][v]);
        }
      }
    }
    store_acc<S>(lo, hi, c);
  }

  // lo += min(l * (l >= 0 ? a : b), h * (h >= 0 ? a : b)),
  // hi += max(l * (l >= 0 ? b : a), h * (h >= 0 ? b : a)): the weight vectors of each candidate
  // are addressed through the packed offsets (input sign, one per broadcast scalar).
  //   SPLIT: a micro-panel whose weights are all of one sign (one_sign, interval_math.h: a, b
  // both >= 0, or both <= 0), where a, b >= 0 take l's candidate for the lower bound and h's for
  // the upper, a, b <= 0 the other way round, whatever the values (the forward needs no tie
  // rule). Packed split (split_panel): per k-row [a0, b0, a1, b1] x NR, a0, b0 the weights of
  // the first kind and zero elsewhere, a1, b1 those of the second; then
  //   lo += l * (l >= 0 ? a0 : b0) + h * (h >= 0 ? a1 : b1),
  //   hi += h * (h >= 0 ? b0 : a0) + l * (l >= 0 ? b1 : a1)
  // through the same offsets (the other kind's term is an exact zero): four FMAs per term,
  // against four products, two min/max and two adds.
  template <int MR, bool SPLIT>
  static void micro_general(int64_t kc, const T* __restrict xp, const int32_t* __restrict op,
                            const T* __restrict wp, const OutTile<T>& c, bool first) {
    V lo[MR][NV], hi[MR][NV];
    load_acc<S>(lo, hi, c, first);
    for (int64_t k = 0; k < kc; ++k, xp += 2 * MR, op += 2 * MR, wp += (SPLIT ? 4 : 2) * NR) {
      const char* w0 = reinterpret_cast<const char*>(wp);  // l's lower, h's upper candidates
      const char* w1 = SPLIT ? w0 + 2 * kB : w0;            // h's lower, l's upper candidates
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const V l = S::set1(xp[i]), h = S::set1(xp[MR + i]);
        const int32_t ol = op[i], oh = op[MR + i];
        const T* lo_l = reinterpret_cast<const T*>(w0 + ol);
        const T* lo_h = reinterpret_cast<const T*>(w1 + oh);
        const T* hi_h = reinterpret_cast<const T*>(w0 + (kB - oh));
        const T* hi_l = reinterpret_cast<const T*>(w1 + (kB - ol));
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const V wll = S::load(lo_l + v * L), wlh = S::load(lo_h + v * L);
          const V whl = S::load(hi_l + v * L), whh = S::load(hi_h + v * L);
          if constexpr (SPLIT) {
            lo[i][v] = S::fma(h, wlh, S::fma(l, wll, lo[i][v]));
            hi[i][v] = S::fma(l, whl, S::fma(h, whh, hi[i][v]));
          } else {
            lo[i][v] = S::add(lo[i][v], S::min_nan(S::mul(l, wll), S::mul(h, wlh)));
            hi[i][v] = S::add(hi[i][v], S::max_nan(S::mul(l, whl), S::mul(h, whh)));
          }
        }
      }
    }
    store_acc<S>(lo, hi, c);
  }

  // A packed micro-panel (kc rows of [a x NR, b x NR]) split by kind into `out` (kc rows of
  // [a0, b0, a1, b1] x NR), if every weight in its first `cols` columns is of one sign; returns
  // whether it was.
  static bool split_panel(int64_t kc, int cols, const T* panel, T* out) {
    for (int64_t k = 0; k < kc; ++k) {
      const T* a = panel + k * 2 * NR;
      for (int q = 0; q < cols; ++q) {
        if (!one_sign(a[q], a[NR + q])) return false;
      }
    }
    for (int64_t k = 0; k < kc; ++k, panel += 2 * NR, out += 4 * NR) {
      for (int q = 0; q < NR; ++q) {
        const T a = panel[q], b = panel[NR + q];
        const bool first_kind = a >= T(0) && b >= T(0);  // zero padding: the first kind
        out[q] = first_kind ? a : T(0);
        out[NR + q] = first_kind ? b : T(0);
        out[2 * NR + q] = first_kind ? T(0) : a;
        out[3 * NR + q] = first_kind ? T(0) : b;
      }
    }
    return true;
  }

  // Loop order per reduction block: W block packed once (it stays in L2), then per row tile the
  // x rows (in L1) meet every W micro-panel (streamed from L2) of the block.
  template <int MR, bool NONNEG>
  static void run(const GemmArgs<T>& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const int64_t ntiles = ceil_div<int64_t>(n1 - n0, NR);
    const int64_t kcmax = std::min<int64_t>(KC, p.K);
    const int64_t ld = (kcmax + L - 1) / L * L + L;  // x row copies: padded stride
    const size_t wsize = ntiles * NR * 2 * kcmax, xsize = MR * 2 * ld;
    const size_t msize = S::kStoredMasks ? wsize / L : 0;
    const size_t ssize = NONNEG ? 0 : 2 * wsize;  // general mode: the split micro-panels
    Carver ws{static_cast<char*>(thread_workspace(
        carve_size<T>(wsize) + carve_size<T>(xsize) + carve_size<T>(2 * MR * NR) +
        carve_size<typename S::MaskBits>(msize) + carve_size<T>(ssize) +
        (NONNEG ? 0 : carve_size<int32_t>(xsize))))};
    T* wbuf = ws.take<T>(wsize);
    typename S::MaskBits* mbuf = ws.take<typename S::MaskBits>(msize);
    T* xbuf = ws.take<T>(xsize);
    T* cbuf = ws.take<T>(2 * MR * NR);
    T* sbuf = ws.take<T>(ssize);
    int32_t* obuf = NONNEG ? nullptr : ws.take<int32_t>(xsize);
    std::vector<uint8_t> split(NONNEG ? 0 : ntiles);

    for (int64_t k0 = 0; k0 < p.K; k0 += KC) {
      const int64_t kc = std::min<int64_t>(KC, p.K - k0);
      const bool first = k0 == 0 && !p.accumulate;
      pack_w(p, n0, n1, k0, kc, wbuf, NONNEG ? mbuf : nullptr);
      for (int64_t j = 0; j < int64_t(split.size()); ++j) {
        const int cols = static_cast<int>(std::min<int64_t>(NR, n1 - (n0 + j * NR)));
        split[j] = split_panel(kc, cols, wbuf + j * kc * 2 * NR, sbuf + j * kc * 4 * NR);
      }
      for (int64_t m = m0; m < m1; m += MR) {
        const int tr = static_cast<int>(std::min<int64_t>(MR, m1 - m));
        if constexpr (NONNEG) {
          copy_rows<MR>(p, m, tr, k0, kc, xbuf, ld);
        } else {
          pack_x<MR>(p, m, tr, k0, kc, xbuf, obuf);
        }
        for (int64_t j = 0; j < ntiles; ++j) {
          const int64_t n = n0 + j * NR;
          const int cols = static_cast<int>(std::min<int64_t>(NR, n1 - n));
          const T* wp = wbuf + j * kc * 2 * NR;
          const typename S::MaskBits* mp = mbuf + j * kc * 2 * NV;
          const OutTile<T> c = open_tile<T, MR, NR>(p.y_lo, p.y_hi, m, n, tr, cols, first, cbuf);
          if constexpr (NONNEG) {
            micro_nonneg<MR>(kc, xbuf, ld, xbuf + MR * ld, ld, wp, mp, c, first);
          } else if (split[j]) {
            micro_general<MR, true>(kc, xbuf, obuf, sbuf + j * kc * 4 * NR, c, first);
          } else {
            micro_general<MR, false>(kc, xbuf, obuf, wp, c, first);
          }
          close_tile<T, MR, NR>(p.y_lo, p.y_hi, m, n, tr, cols, c, cbuf);
        }
      }
    }
  }

  // Small batches. Packing W costs about as much as using it once, so rows of x and w are read in
  // place (unit column stride required) with lanes over k, R rows x C columns of dot products
  // per register tile, reduced horizontally at the end of each reduction block.
  static constexpr int DR = S::kDotR, DC = S::kDotC;
  static constexpr int64_t DKB = 4096;  // reduction block: the tile's w rows stay in L1/L2

  template <bool NONNEG>
  static void dot_tile(const T* const (&xl)[DR], const T* const (&xh)[DR],
                       const T* const (&wl)[DC], const T* const (&wh)[DC], int64_t kb,
                       T (&out_lo)[DR][DC], T (&out_hi)[DR][DC]) {
    V lo[DR][DC], hi[DR][DC];
#pragma GCC unroll 8
    for (int r = 0; r < DR; ++r) {
#pragma GCC unroll 8
      for (int c = 0; c < DC; ++c) lo[r][c] = hi[r][c] = S::zero();
    }
    for (int64_t k = 0; k < kb; k += L) {
      const int n = static_cast<int>(std::min<int64_t>(L, kb - k));
      V a[DC], b[DC];
#pragma GCC unroll 8
      for (int c = 0; c < DC; ++c) {
        a[c] = S::load_partial(wl[c] + k, n);
        b[c] = S::load_partial(wh[c] + k, n);
      }
      if constexpr (NONNEG) {
        M ma[DC], mb[DC];
#pragma GCC unroll 8
        for (int c = 0; c < DC; ++c) {
          ma[c] = S::ge0(a[c]);
          mb[c] = S::ge0(b[c]);
        }
#pragma GCC unroll 8
        for (int r = 0; r < DR; ++r) {
          const V l = S::load_partial(xl[r] + k, n), h = S::load_partial(xh[r] + k, n);
#pragma GCC unroll 8
          for (int c = 0; c < DC; ++c) {
            lo[r][c] = S::fma(S::select(ma[c], l, h), a[c], lo[r][c]);
            hi[r][c] = S::fma(S::select(mb[c], h, l), b[c], hi[r][c]);
          }
        }
      } else {
#pragma GCC unroll 8
        for (int r = 0; r < DR; ++r) {
          const V l = S::load_partial(xl[r] + k, n), h = S::load_partial(xh[r] + k, n);
          const M ml = S::ge0(l), mh = S::ge0(h);
#pragma GCC unroll 8
          for (int c = 0; c < DC; ++c) {
            add_general_term<S>(l, h, ml, mh, a[c], b[c], lo[r][c], hi[r][c]);
          }
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < DR; ++r) {
#pragma GCC unroll 8
      for (int c = 0; c < DC; ++c) {
        out_lo[r][c] = S::hsum(lo[r][c]);
        out_hi[r][c] = S::hsum(hi[r][c]);
      }
    }
  }

  // Decided on the whole problem, so every block of it sums in the same order.
  static bool dot_applies(const GemmArgs<T>& p) {
    return p.M <= S::kDotMaxRows && p.x_lo.col_stride == 1 && p.x_hi.col_stride == 1 &&
           p.w_lo.col_stride == 1 && p.w_hi.col_stride == 1;
  }

  template <bool NONNEG>
  static void run_dot(const GemmArgs<T>& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    T part_lo[DR][DC], part_hi[DR][DC];
    for (int64_t k0 = 0; k0 < p.K; k0 += DKB) {
      const int64_t kb = std::min<int64_t>(DKB, p.K - k0);
      const bool first = k0 == 0 && !p.accumulate;
      for (int64_t n = n0; n < n1; n += DC) {
        const int cols = static_cast<int>(std::min<int64_t>(DC, n1 - n));
        const T *wl[DC], *wh[DC];
        for (int c = 0; c < DC; ++c) {  // edge columns repeat the last one; not stored
          wl[c] = row_ptr(p.w_lo, n + std::min(c, cols - 1), k0);
          wh[c] = row_ptr(p.w_hi, n + std::min(c, cols - 1), k0);
        }
        for (int64_t m = m0; m < m1; m += DR) {
          const int rows = static_cast<int>(std::min<int64_t>(DR, m1 - m));
          const T *xl[DR], *xh[DR];
          for (int r = 0; r < DR; ++r) {
            xl[r] = row_ptr(p.x_lo, m + std::min(r, rows - 1), k0);
            xh[r] = row_ptr(p.x_hi, m + std::min(r, rows - 1), k0);
          }
          dot_tile<NONNEG>(xl, xh, wl, wh, kb, part_lo, part_hi);
          for (int r = 0; r < rows; ++r) {
            for (int c = 0; c < cols; ++c) {
              T& lo = p.y_lo(m + r, n + c);
              T& hi = p.y_hi(m + r, n + c);
              lo = first ? part_lo[r][c] : lo + part_lo[r][c];
              hi = first ? part_hi[r][c] : hi + part_hi[r][c];
            }
          }
        }
      }
    }
  }

  static void block(const GemmArgs<T>& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (dot_applies(p)) {
      if (p.input_nonneg) {
        run_dot<true>(p, m0, m1, n0, n1);
      } else {
        run_dot<false>(p, m0, m1, n0, n1);
      }
    } else if (p.input_nonneg) {
      run<S::kFwdMR, true>(p, m0, m1, n0, n1);
    } else {
      run<S::kFwdGenMR, false>(p, m0, m1, n0, n1);
    }
  }
};

// ------------------------------------------------------------------------------------------------
// Backward input: y = dx (M x K) over n; lanes over k.
template <class S>
struct BackwardInput {
  using T = typename S::T;
  using V = typename S::V;
  using M = typename S::M;
  static constexpr int L = S::L;
  static constexpr int KV = S::kBiKV;
  static constexpr int KR = KV * L;
  static constexpr int64_t NC = S::kBiNC;  // reduction block
  static constexpr int64_t MC = S::kBiMC;

  // W[r0:r0+nc, c0:c1] -> per KR-column tile: nc rows of [a x KR, b x KR]; with
  // S::kStoredMasks also, per row, the masks [both x KV, straddle x KV] of the three-product
  // kernel. Returns whether some lane has a >= 0 but not b >= 0 (b NaN, or an invalid a > b),
  // the one case that kernel does not cover.
  static bool pack_w(const GemmArgs<T>& p, int64_t r0, int64_t nc, int64_t c0, int64_t c1,
                     T* out, typename S::MaskBits* masks) {
    bool a_only = false;
    for (int64_t j = c0; j < c1; j += KR) {
      const int64_t cols = std::min<int64_t>(KR, c1 - j);
      for (int64_t n = 0; n < nc; ++n, out += 2 * KR) {
        gather(out, 1, row_ptr(p.w_lo, r0 + n, j), p.w_lo.col_stride, cols, KR);
        gather(out + KR, 1, row_ptr(p.w_hi, r0 + n, j), p.w_hi.col_stride, cols, KR);
        for (int v = 0; v < KV; ++v) {
          const WeightSigns m = signs(S::load(out + v * L), S::load(out + KR + v * L));
          a_only = a_only || S::any(m.a_only);
          if constexpr (S::kStoredMasks) {
            masks[v] = S::mask_bits(m.both);
            masks[KV + v] = S::mask_bits(m.straddle);
          }
        }
        if constexpr (S::kStoredMasks) masks += 2 * KV;
      }
    }
    return a_only;
  }

  struct WeightSigns {
    M both;      // a >= 0 and b >= 0
    M straddle;  // a < 0 <= b (or a NaN)
    M a_only;    // a >= 0 and not b >= 0
  };

  static WeightSigns signs(V a, V b) {
    const M pa = S::ge0(a), pb = S::ge0(b);
    return {S::mand(pa, pb), S::mandnot(pa, pb), S::mandnot(pb, pa)};
  }

  // g[m0:m0+rows, r0:r0+nc] -> per MR-row tile: nc rows of [gl x MR, gh x MR].
  template <int MR>
  static void pack_g(const GemmArgs<T>& p, int64_t m0, int64_t rows, int64_t r0, int64_t nc,
                     T* out) {
    for (int64_t i = 0; i < rows; i += MR, out += nc * 2 * MR) {
      for (int r = 0; r < MR; ++r) {
        const bool in = i + r < rows;
        gather(out + r, 2 * MR, in ? row_ptr(p.g_lo, m0 + i + r, r0) : nullptr,
               p.g_lo.col_stride, in ? nc : 0, nc);
        gather(out + MR + r, 2 * MR, in ? row_ptr(p.g_hi, m0 + i + r, r0) : nullptr,
               p.g_hi.col_stride, in ? nc : 0, nc);
      }
    }
  }

  // dl += a*gl [a >= 0] + b*gh [b < 0], dh += a*gl [a < 0] + b*gh [b >= 0].
  template <int MR>
  static void micro_nonneg(int64_t nc, const T* __restrict gp, const T* __restrict wp,
                           const T*, const OutTile<T>& c, bool first) {
    V dl[MR][KV], dh[MR][KV];
    load_acc<S>(dl, dh, c, first);
    for (int64_t n = 0; n < nc; ++n, gp += 2 * MR, wp += 2 * KR) {
      V a[KV], b[KV];
      M ma[KV], mb[KV];
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) {
        a[v] = S::load(wp + v * L);
        b[v] = S::load(wp + KR + v * L);
        ma[v] = S::ge0(a[v]);
        mb[v] = S::ge0(b[v]);
      }
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const V gl = S::set1(gp[i]), gh = S::set1(gp[MR + i]);
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) {
          dl[i][v] = S::mask_fma(ma[v], gl, a[v], dl[i][v]);
          dh[i][v] = S::mask_fma(S::mnot(ma[v]), gl, a[v], dh[i][v]);
          dh[i][v] = S::mask_fma(mb[v], gh, b[v], dh[i][v]);
          dl[i][v] = S::mask_fma(S::mnot(mb[v]), gh, b[v], dl[i][v]);
        }
      }
    }
    store_acc<S>(dl, dh, c);
  }

  // The same with three products per term where no lane has a >= 0 > b: with both bounds
  // >= 0, (dl, dh) += (a gl, b gh); both < 0: (b gh, a gl); straddling (a < 0 <= b): dh gets
  // a gl + b gh. Slot 1 feeds dl (off for straddling lanes), slot 2 dh, slot 3 dh (straddling
  // lanes only); which weight and gradient each slot multiplies is a blend (free) by `both`.
  template <int MR>
  static void micro_nonneg3(int64_t nc, const T* __restrict gp, const T* __restrict wp,
                            const typename S::MaskBits* __restrict mp, const OutTile<T>& c,
                            bool first) {
    V dl[MR][KV], dh[MR][KV];
    load_acc<S>(dl, dh, c, first);
    for (int64_t n = 0; n < nc; ++n, gp += 2 * MR, wp += 2 * KR, mp += 2 * KV) {
      V b[KV], w1[KV], w2[KV];
      M both[KV], st[KV];
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) {
        const V a = S::load(wp + v * L);
        b[v] = S::load(wp + KR + v * L);
        if constexpr (S::kStoredMasks) {
          both[v] = S::load_mask(mp + v);
          st[v] = S::load_mask(mp + KV + v);
        } else {
          const WeightSigns m = signs(a, b[v]);
          both[v] = m.both;
          st[v] = m.straddle;
        }
        w1[v] = S::select(both[v], a, b[v]);
        w2[v] = S::select(both[v], b[v], a);
      }
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const V gl = S::set1(gp[i]), gh = S::set1(gp[MR + i]);
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) {
          dl[i][v] = S::mask_fma(S::mnot(st[v]), S::select(both[v], gl, gh), w1[v], dl[i][v]);
          dh[i][v] = S::fma(S::select(both[v], gh, gl), w2[v], dh[i][v]);
          dh[i][v] = S::mask_fma(st[v], gh, b[v], dh[i][v]);
        }
      }
    }
    store_acc<S>(dl, dh, c);
  }

  // General mode: each candidate's gradient goes to the input bound it multiplies; `xt` holds the
  // tile's inputs as [MR][l x KR, h x KR].
  template <int MR>
  static void micro_general(int64_t nc, const T* __restrict gp, const T* __restrict wp,
                            const T* __restrict xt, const OutTile<T>& c, bool first) {
    constexpr int GV = S::kBiGenKV;
    static_assert(GV <= KV, "general tile narrower than the packed panel");
    V dl[MR][GV], dh[MR][GV], l[MR][GV], h[MR][GV];
    M ml[MR][GV], mh[MR][GV];
    load_acc<S>(dl, dh, c, first);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < GV; ++v) {
        l[i][v] = S::load(xt + i * 2 * KR + v * L);
        h[i][v] = S::load(xt + i * 2 * KR + KR + v * L);
        ml[i][v] = S::ge0(l[i][v]);
        mh[i][v] = S::ge0(h[i][v]);
      }
    }
    for (int64_t n = 0; n < nc; ++n, gp += 2 * MR, wp += 2 * KR) {
#pragma GCC unroll 4
      for (int v = 0; v < GV; ++v) {
        const V a = S::load(wp + v * L), b = S::load(wp + KR + v * L);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          const V gl = S::set1(gp[i]), gh = S::set1(gp[MR + i]);
          // lower bound: candidates l * (l >= 0 ? a : b), h * (h >= 0 ? a : b)
          const V wl = S::select(ml[i][v], a, b), wh = S::select(mh[i][v], a, b);
          const M lo_h = S::lo_takes_h(S::mul(l[i][v], wl), S::mul(h[i][v], wh));
          const V w_lo = S::select(lo_h, wh, wl);
          dl[i][v] = S::mask_fma(S::mnot(lo_h), gl, w_lo, dl[i][v]);
          dh[i][v] = S::mask_fma(lo_h, gl, w_lo, dh[i][v]);
          // upper bound: candidates l * (l >= 0 ? b : a), h * (h >= 0 ? b : a)
          const V vl = S::select(ml[i][v], b, a), vh = S::select(mh[i][v], b, a);
          const M hi_h = S::hi_takes_h(S::mul(l[i][v], vl), S::mul(h[i][v], vh));
          const V w_hi = S::select(hi_h, vh, vl);
          dl[i][v] = S::mask_fma(S::mnot(hi_h), gh, w_hi, dl[i][v]);
          dh[i][v] = S::mask_fma(hi_h, gh, w_hi, dh[i][v]);
        }
      }
    }
    store_acc<S>(dl, dh, c);
  }

  // General mode on a tile whose input lanes and panel weights are all sign-routed: known
  // candidates (as general_grad_tiles, pixel_simd_kernels.h). For a, b >= 0 the lower bound
  // takes l's candidate, dl += gl (l >= 0 ? a : b), and the upper h's, e += gh (h >= 0 ? b : a);
  // for a, b <= 0 the same with gl, gh swapped and a, b swapped. e goes to dh, or to dl where
  // l == h (the only ties left). Four blends and two FMAs per term, against two products, two
  // compares and four masked FMAs.
  template <int MR>
  static void micro_routed(int64_t nc, const T* __restrict gp, const T* __restrict wp,
                           const T* __restrict xt, const OutTile<T>& c, bool first) {
    constexpr int GV = S::kBiGenKV;
    V dl[MR][GV], dh[MR][GV], e[MR][GV], ml[MR][GV], mh[MR][GV];
    load_acc<S>(dl, dh, c, first);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < GV; ++v) {
        ml[i][v] = S::vmask_ge0(S::load(xt + i * 2 * KR + v * L));
        mh[i][v] = S::vmask_ge0(S::load(xt + i * 2 * KR + KR + v * L));
        e[i][v] = S::zero();
      }
    }
    for (int64_t n = 0; n < nc; ++n, gp += 2 * MR, wp += 2 * KR) {
#pragma GCC unroll 4
      for (int v = 0; v < GV; ++v) {
        const V a = S::load(wp + v * L), b = S::load(wp + KR + v * L);
        const M swap = S::mnot(S::ge0(a));  // sign-routed: a < 0 means a, b < 0
        const V wa = S::select(swap, b, a), wb = S::select(swap, a, b);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          const V gl = S::set1(gp[i]), gh = S::set1(gp[MR + i]);
          dl[i][v] = S::fma(S::select(swap, gh, gl), S::vselect(ml[i][v], wa, wb), dl[i][v]);
          e[i][v] = S::fma(S::select(swap, gl, gh), S::vselect(mh[i][v], wb, wa), e[i][v]);
        }
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < GV; ++v) {  // l <= h in a sign-routed lane: a tie is l == h
        const M tie = S::mnot(S::gt(S::load(xt + i * 2 * KR + KR + v * L),
                                    S::load(xt + i * 2 * KR + v * L)));
        dl[i][v] = S::select(tie, S::add(dl[i][v], e[i][v]), dl[i][v]);
        dh[i][v] = S::select(tie, dh[i][v], S::add(dh[i][v], e[i][v]));
      }
    }
    store_acc<S>(dl, dh, c);
  }

  template <int MR, int TV, bool NONNEG>
  static void run(const GemmArgs<T>& p, int64_t m0, int64_t m1, int64_t c0, int64_t c1) {
    static_assert(MC % MR == 0, "MC must be a multiple of the row tile");
    constexpr int TC = TV * L;  // columns per register tile (a divisor of KR)
    const int64_t ncmax = std::min<int64_t>(NC, p.N);
    const int64_t mcmax = std::min<int64_t>(MC, ceil_div<int64_t>(m1 - m0, MR) * MR);
    const int64_t ktiles = ceil_div<int64_t>(c1 - c0, KR);
    const size_t wsize = ktiles * KR * 2 * ncmax, gsize = mcmax * 2 * ncmax;
    const size_t msize = S::kStoredMasks ? ktiles * ncmax * 2 * KV : 0;
    Carver ws{static_cast<char*>(thread_workspace(
        carve_size<T>(wsize) + carve_size<T>(gsize) + carve_size<T>(2 * MR * TC) +
        carve_size<T>(2 * MR * KR) + carve_size<typename S::MaskBits>(msize)))};
    T* wbuf = ws.take<T>(wsize);
    typename S::MaskBits* mbuf = ws.take<typename S::MaskBits>(msize);
    T* gbuf = ws.take<T>(gsize);
    T* cbuf = ws.take<T>(2 * MR * TC);
    T* xt = ws.take<T>(2 * MR * KR);
    // General mode: per register tile's columns (j, s) of this block, whether its panel's
    // weights are all sign-routed (micro_routed where the tile's inputs are too).
    std::vector<uint8_t> routed(NONNEG ? 0 : ktiles * (KR / TC));

    for (int64_t r0 = 0; r0 < p.N; r0 += NC) {
      const int64_t nc = std::min<int64_t>(NC, p.N - r0);
      const bool first = r0 == 0 && !p.accumulate;
      const bool a_only = pack_w(p, r0, nc, c0, c1, wbuf, mbuf);
      for (size_t t = 0; t < routed.size(); ++t) {
        const int64_t j = t / (KR / TC), s = t % (KR / TC) * TC;
        const int64_t cols = std::clamp<int64_t>(c1 - (c0 + j * KR + s), 0, TC);
        const T* wp = wbuf + j * nc * 2 * KR + s;
        routed[t] = 1;
        for (int64_t n = 0; n < nc && routed[t]; ++n) {
          routed[t] = weights_routed(wp + n * 2 * KR, 1, wp + n * 2 * KR + KR, 1, cols);
        }
      }
      for (int64_t mc0 = m0; mc0 < m1; mc0 += MC) {
        const int64_t rows = std::min<int64_t>(MC, m1 - mc0);
        pack_g<MR>(p, mc0, rows, r0, nc, gbuf);
        for (int64_t j = 0; j < ktiles; ++j) {
          const T* wp = wbuf + j * nc * 2 * KR;
          const typename S::MaskBits* mp = mbuf + (S::kStoredMasks ? j * nc * 2 * KV : 0);
          for (int64_t i = 0; i < rows; i += MR) {
            const int tr = static_cast<int>(std::min<int64_t>(MR, rows - i));
            for (int s = 0; s < KR; s += TC) {
              const int64_t k = c0 + j * KR + s;
              if (k >= c1) break;
              const int cols = static_cast<int>(std::min<int64_t>(TC, c1 - k));
              const OutTile<T> c =
                  open_tile<T, MR, TC>(p.y_lo, p.y_hi, mc0 + i, k, tr, cols, first, cbuf);
              if constexpr (NONNEG) {
                if (a_only) {
                  micro_nonneg<MR>(nc, gbuf + i * nc * 2, wp + s, nullptr, c, first);
                } else {
                  micro_nonneg3<MR>(nc, gbuf + i * nc * 2, wp + s, mp, c, first);
                }
              } else {
                for (int r = 0; r < MR; ++r) {
                  const bool in = r < tr;
                  gather(xt + r * 2 * KR, 1, in ? row_ptr(p.x_lo, mc0 + i + r, k) : nullptr,
                         p.x_lo.col_stride, in ? cols : 0, KR);
                  gather(xt + r * 2 * KR + KR, 1, in ? row_ptr(p.x_hi, mc0 + i + r, k) : nullptr,
                         p.x_hi.col_stride, in ? cols : 0, KR);
                }
                bool tile_routed = routed[j * (KR / TC) + s / TC];
                for (int r = 0; r < MR && tile_routed; ++r) {
                  tile_routed = lanes_routed(xt + r * 2 * KR, xt + r * 2 * KR + KR, KR);
                }
                if (tile_routed) {
                  micro_routed<MR>(nc, gbuf + i * nc * 2, wp + s, xt, c, first);
                } else {
                  micro_general<MR>(nc, gbuf + i * nc * 2, wp + s, xt, c, first);
                }
              }
              close_tile<T, MR, TC>(p.y_lo, p.y_hi, mc0 + i, k, tr, cols, c, cbuf);
            }
          }
        }
      }
    }
  }

  static void block(const GemmArgs<T>& p, int64_t m0, int64_t m1, int64_t c0, int64_t c1) {
    if (p.input_nonneg) {
      run<S::kBiMR, KV, true>(p, m0, m1, c0, c1);
    } else {
      run<S::kBiGenMR, S::kBiGenKV, false>(p, m0, m1, c0, c1);
    }
  }
};

// ------------------------------------------------------------------------------------------------
// Backward weight: y = dw (N x K) over m; lanes over k. Which input bound each weight bound's
// gradient multiplies is fixed per weight element (nonneg mode), so the tile keeps its masks for
// the whole reduction.
template <class S>
struct BackwardWeight {
  using T = typename S::T;
  using V = typename S::V;
  using M = typename S::M;
  static constexpr int L = S::L;
  static constexpr int KV = S::kBwKV;
  static constexpr int KR = KV * L;
  static constexpr int64_t MC = S::kBwMC;  // reduction block

  // The tile's weights: NR rows of a at a + r * lda, of b at b + r * ldb (in place or packed).
  struct WeightRows {
    const T* a;
    const T* b;
    int64_t lda, ldb;
  };

  // x[m0:m0+mc, c0:c1] -> per KR-column tile: mc rows of [l x KR, h x KR].
  static void pack_x(const GemmArgs<T>& p, int64_t m0, int64_t mc, int64_t c0, int64_t c1,
                     T* out) {
    for (int64_t j = c0; j < c1; j += KR) {
      const int64_t cols = std::min<int64_t>(KR, c1 - j);
      for (int64_t m = 0; m < mc; ++m, out += 2 * KR) {
        gather(out, 1, row_ptr(p.x_lo, m0 + m, j), p.x_lo.col_stride, cols, KR);
        gather(out + KR, 1, row_ptr(p.x_hi, m0 + m, j), p.x_hi.col_stride, cols, KR);
      }
    }
  }

  // g[m0:m0+mc, n0:n0+rows] -> per NR-row tile: mc rows of [gl x NR, gh x NR].
  template <int NR>
  static void pack_g(const GemmArgs<T>& p, int64_t m0, int64_t mc, int64_t n0, int64_t rows,
                     T* out) {
    for (int64_t i = 0; i < rows; i += NR) {
      const int64_t cnt = std::min<int64_t>(NR, rows - i);
      for (int64_t m = 0; m < mc; ++m, out += 2 * NR) {
        gather(out, 1, row_ptr(p.g_lo, m0 + m, n0 + i), p.g_lo.col_stride, cnt, NR);
        gather(out + NR, 1, row_ptr(p.g_hi, m0 + m, n0 + i), p.g_hi.col_stride, cnt, NR);
      }
    }
  }

  // The weights of the NR x TC tile at (n, k): read in place when it is whole and the rows of w
  // are contiguous, else gathered (zero padded) into `buf` ([NR][a x KR, b x KR]).
  template <int NR, int TC>
  static WeightRows weight_rows(const GemmArgs<T>& p, int64_t n, int64_t k, int rows, int cols,
                                T* buf) {
    if (rows == NR && cols == TC && p.w_lo.col_stride == 1 && p.w_hi.col_stride == 1) {
      return {row_ptr(p.w_lo, n, k), row_ptr(p.w_hi, n, k), p.w_lo.row_stride,
              p.w_hi.row_stride};
    }
    for (int r = 0; r < NR; ++r) {
      const bool in = r < rows;
      gather(buf + r * 2 * KR, 1, in ? row_ptr(p.w_lo, n + r, k) : nullptr, p.w_lo.col_stride,
             in ? cols : 0, KR);
      gather(buf + r * 2 * KR + KR, 1, in ? row_ptr(p.w_hi, n + r, k) : nullptr,
             p.w_hi.col_stride, in ? cols : 0, KR);
    }
    return {buf, buf + KR, 2 * KR, 2 * KR};
  }

  // da += gl * (a >= 0 ? l : h), db += gh * (b >= 0 ? h : l). The masks live for the whole
  // reduction: those of a in mask registers (a non-destructive blend), those of b in vector
  // registers (there are only 7 mask registers; the vector select needs a register copy per use).
  template <int NR>
  static void micro_nonneg(int64_t mc, const T* __restrict xp, const T* __restrict gp,
                           const WeightRows& w, const OutTile<T>& c, bool first) {
    V da[NR][KV], db[NR][KV], sb[NR][KV];
    M sa[NR][KV];
    load_acc<S>(da, db, c, first);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) {
        sa[r][v] = S::ge0(S::load(w.a + r * w.lda + v * L));
        sb[r][v] = S::vmask_ge0(S::load(w.b + r * w.ldb + v * L));
      }
    }
    for (int64_t m = 0; m < mc; ++m, xp += 2 * KR, gp += 2 * NR) {
      V l[KV], h[KV];
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) {
        l[v] = S::load(xp + v * L);
        h[v] = S::load(xp + KR + v * L);
      }
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const V gl = S::set1(gp[r]), gh = S::set1(gp[NR + r]);
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) {
          da[r][v] = S::fma(gl, S::select(sa[r][v], l[v], h[v]), da[r][v]);
          db[r][v] = S::fma(gh, S::vselect(sb[r][v], h[v], l[v]), db[r][v]);
        }
      }
    }
    store_acc<S>(da, db, c);
  }

  // General mode: the candidate choice depends on (a, b, l, h) per term; each selected product's
  // gradient goes to the weight bound it multiplies.
  template <int NR>
  static void micro_general(int64_t mc, const T* __restrict xp, const T* __restrict gp,
                            const WeightRows& w, const OutTile<T>& c, bool first) {
    constexpr int GV = S::kBwGenKV;
    static_assert(GV <= KV, "general tile narrower than the packed panel");
    V da[NR][GV], db[NR][GV], a[NR][GV], b[NR][GV];
    load_acc<S>(da, db, c, first);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
#pragma GCC unroll 4
      for (int v = 0; v < GV; ++v) {
        a[r][v] = S::load(w.a + r * w.lda + v * L);
        b[r][v] = S::load(w.b + r * w.ldb + v * L);
      }
    }
    for (int64_t m = 0; m < mc; ++m, xp += 2 * KR, gp += 2 * NR) {
#pragma GCC unroll 4
      for (int v = 0; v < GV; ++v) {
        const V l = S::load(xp + v * L), h = S::load(xp + KR + v * L);
        const M ml = S::ge0(l), mh = S::ge0(h);
#pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          const V gl = S::set1(gp[r]), gh = S::set1(gp[NR + r]);
          // The selected product x * w has w = a exactly where the chosen x is >= 0 (lower
          // bound), resp. where it is < 0 (upper bound).
          const V pl = S::mul(l, S::select(ml, a[r][v], b[r][v]));
          const V ph = S::mul(h, S::select(mh, a[r][v], b[r][v]));
          const V x_lo = S::select(S::lo_takes_h(pl, ph), h, l);
          const M to_a = S::ge0(x_lo);
          da[r][v] = S::mask_fma(to_a, gl, x_lo, da[r][v]);
          db[r][v] = S::mask_fma(S::mnot(to_a), gl, x_lo, db[r][v]);
          const V ql = S::mul(l, S::select(ml, b[r][v], a[r][v]));
          const V qh = S::mul(h, S::select(mh, b[r][v], a[r][v]));
          const V x_hi = S::select(S::hi_takes_h(ql, qh), h, l);
          const M to_b = S::ge0(x_hi);
          db[r][v] = S::mask_fma(to_b, gh, x_hi, db[r][v]);
          da[r][v] = S::mask_fma(S::mnot(to_b), gh, x_hi, da[r][v]);
        }
      }
    }
    store_acc<S>(da, db, c);
  }

  // General mode on a tile whose input lanes and weights are all sign-routed: known candidates
  // (add_routed_weight_term), two blends and four FMAs per term.
  template <int NR>
  static void micro_routed(int64_t mc, const T* __restrict xp, const T* __restrict gp,
                           const WeightRows& w, const OutTile<T>& c, bool first) {
    constexpr int GV = S::kBwGenKV;
    V da[NR][GV], db[NR][GV];
    M swap[NR][GV];
    load_acc<S>(da, db, c, first);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
#pragma GCC unroll 4
      for (int v = 0; v < GV; ++v) {  // sign-routed: a < 0 means a, b < 0
        swap[r][v] = S::mnot(S::ge0(S::load(w.a + r * w.lda + v * L)));
        swap_where<S>(swap[r][v], da[r][v], db[r][v]);
      }
    }
    for (int64_t m = 0; m < mc; ++m, xp += 2 * KR, gp += 2 * NR) {
      SignedParts<S> x[GV];
#pragma GCC unroll 4
      for (int v = 0; v < GV; ++v) x[v] = signed_parts<S>(xp + v * L, xp + KR + v * L);
      add_routed_weight_terms<S>(swap, x, [&](int r) {
        return std::pair<V, V>{S::set1(gp[r]), S::set1(gp[NR + r])};
      }, da, db);
    }
    swap_tile<S>(swap, da, db);
    store_acc<S>(da, db, c);
  }

  template <int NR, int TV, bool NONNEG>
  static void run(const GemmArgs<T>& p, int64_t n0, int64_t n1, int64_t c0, int64_t c1) {
    constexpr int TC = TV * L;
    const int64_t mcmax = std::min<int64_t>(MC, p.M);
    const int64_t ktiles = ceil_div<int64_t>(c1 - c0, KR);
    const int64_t ntiles = ceil_div<int64_t>(n1 - n0, NR);
    const size_t xsize = ktiles * KR * 2 * mcmax, gsize = ntiles * NR * 2 * mcmax;
    Carver ws{static_cast<char*>(
        thread_workspace(carve_size<T>(xsize) + carve_size<T>(gsize) +
                         carve_size<T>(2 * NR * KR) + carve_size<T>(2 * NR * TC)))};
    T* xbuf = ws.take<T>(xsize);
    T* gbuf = ws.take<T>(gsize);
    T* wbuf = ws.take<T>(2 * NR * KR);
    T* cbuf = ws.take<T>(2 * NR * TC);
    // General mode: per register tile (t, j, s) of this block, whether its weights are all
    // sign-routed (read once, not per reduction block), and per columns (j, s) of a reduction
    // block whether its inputs are (micro_routed where both are).
    const int64_t splits = KR / TC;
    std::vector<uint8_t> routed(NONNEG ? 0 : ntiles * ktiles * splits);
    std::vector<uint8_t> inputs_routed(NONNEG ? 0 : ktiles * splits);
    for (size_t at = 0; at < routed.size(); ++at) {
      const int64_t t = at / (ktiles * splits), j = at / splits % ktiles, s = at % splits * TC;
      const int64_t n = n0 + t * NR, k = c0 + j * KR + s;
      const int64_t rows = std::min<int64_t>(NR, n1 - n), cols = std::clamp<int64_t>(c1 - k, 0, TC);
      routed[at] = 1;
      for (int64_t r = 0; r < rows && routed[at]; ++r) {
        routed[at] = weights_routed(row_ptr(p.w_lo, n + r, k), p.w_lo.col_stride,
                                    row_ptr(p.w_hi, n + r, k), p.w_hi.col_stride, cols);
      }
    }

    for (int64_t m0 = 0; m0 < p.M; m0 += MC) {
      const int64_t mc = std::min<int64_t>(MC, p.M - m0);
      const bool first = m0 == 0 && !p.accumulate;
      pack_x(p, m0, mc, c0, c1, xbuf);
      pack_g<NR>(p, m0, mc, n0, n1 - n0, gbuf);
      for (size_t at = 0; at < inputs_routed.size(); ++at) {
        const T* xp = xbuf + at / splits * mc * 2 * KR + at % splits * TC;
        inputs_routed[at] = 1;
        for (int64_t m = 0; m < mc && inputs_routed[at]; ++m) {
          inputs_routed[at] = lanes_routed(xp + m * 2 * KR, xp + m * 2 * KR + KR, TC);
        }
      }
      for (int64_t j = 0; j < ktiles; ++j) {  // x micro-panel stays in L1 over the n tiles
        for (int s = 0; s < KR; s += TC) {
          const int64_t k = c0 + j * KR + s;
          if (k >= c1) break;
          const int cols = static_cast<int>(std::min<int64_t>(TC, c1 - k));
          const T* xp = xbuf + j * mc * 2 * KR + s;
          for (int64_t t = 0; t < ntiles; ++t) {
            const int64_t n = n0 + t * NR;
            const int tr = static_cast<int>(std::min<int64_t>(NR, n1 - n));
            const T* gp = gbuf + t * mc * 2 * NR;
            const WeightRows w = weight_rows<NR, TC>(p, n, k, tr, cols, wbuf);
            const OutTile<T> c = open_tile<T, NR, TC>(p.y_lo, p.y_hi, n, k, tr, cols, first, cbuf);
            if constexpr (NONNEG) {
              micro_nonneg<NR>(mc, xp, gp, w, c, first);
            } else if (inputs_routed[j * splits + s / TC] &&
                       routed[(t * ktiles + j) * splits + s / TC]) {
              micro_routed<NR>(mc, xp, gp, w, c, first);
            } else {
              micro_general<NR>(mc, xp, gp, w, c, first);
            }
            close_tile<T, NR, TC>(p.y_lo, p.y_hi, n, k, tr, cols, c, cbuf);
          }
        }
      }
    }
  }

  static void block(const GemmArgs<T>& p, int64_t n0, int64_t n1, int64_t c0, int64_t c1) {
    if (p.input_nonneg) {
      run<S::kBwNR, KV, true>(p, n0, n1, c0, c1);
    } else {
      run<S::kBwGenNR, S::kBwGenKV, false>(p, n0, n1, c0, c1);
    }
  }
};

template <class S>
constexpr IsaKernels<typename S::T> make_kernels() {
  return {
      {&Forward<S>::block, {S::kFwdMR, S::kFwdNV * S::L, S::kWideCols}},
      {&BackwardInput<S>::block, {S::kBiMR, S::kBiKV * S::L, S::kWideCols}},
      {&BackwardWeight<S>::block, {S::kBwNR, S::kBwKV * S::L, S::kWideCols}},
  };
}
