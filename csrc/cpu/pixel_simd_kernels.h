// The pixel-lane kernels of the CPU interval convolutions (conv_pixel_*.cpp), written once
// over the vector traits `S` of gemm_simd_kernels.h and included, like it, INSIDE the namespace of
// each SIMD translation unit after its target pragma (so it includes nothing itself; the TU
// provides csrc/interval_math.h).
//
// Lanes run over pixels (rows of a chunk buffer), weights are broadcast scalars. In non-negative
// mode every term of an interval convolution is a weight bound times ONE row of pixels, chosen by
// the weight's sign: a scalar, which the caller precomputes per weight as a sign word. Register
// tiles of several output rows x a few pixel vectors share each loaded vector between the rows
// (a blend by the sign picks the row); measured on Zen 5, such tiles run at about 1.6x the rate
// of a one-row tile that loads its source per product (combine_rows, kept for short term lists).
// General mode (signed input) needs both candidates of a bound and a choice only where the
// weight interval straddles zero; a weight of one sign always takes one known candidate per bound
// (general_tiles). The weights are classified once per call (ClassifiedWeights), each tile's taps
// regrouped into runs of one kind (which channels' weights are non-positive, or some straddle),
// and each run's kind is a template argument: a one-sign term costs one blend (the weight by the
// input's sign) and one FMA per bound, against two products, four blends, a min/max and an add.
// Measured on this AVX-512 machine, 2 threads: about 2.4x faster with no straddling weights,
// 1.5x with 10 %, the same with 50 % (README, Performance). The non-negative forward runs on the
// same classified runs, where a one-sign term needs no blend at all: one FMA per bound (on Intel
// cores blends take the FMA ports; measured 1.05-1.4x faster than select_tiles' blend and FMA).
// The general gradients route each term's gradient through the candidate the forward picks,
// ties included (the l-candidate wins). Known candidates hold for them too wherever a tie
// between two different products cannot happen: on sign-routed weights and input lanes
// (interval_math.h; each tile checks its lanes), where the only ties left are l == h. There a
// one-sign term's gradient costs what a non-negative term's does (general_grad_tiles,
// general_dot_tiles).
// Semantics, ties and NaN routing are those of csrc/interval_math.h.

// out[r * ld_out + p] (+)= sum over t in [begin[r], end[r]) of coef[t] * src[offset[t] + p], for
// p < width (a multiple of kCombineVectors * L). A tile is one row x kCombineVectors vectors:
// enough independent accumulators to cover the FMA latency; each FMA takes its own load, and the
// broadcast is shared by the tile.
template <class S>
void combine_rows(int64_t rows, const int64_t* begin, const int64_t* end,
                  const typename S::T* coef, const int64_t* offset, const typename S::T* src,
                  typename S::T* out, int64_t ld_out, int64_t width, bool accumulate) {
  using V = typename S::V;
  constexpr int L = S::L, NV = kCombineVectors;
  for (int64_t p = 0; p < width; p += NV * L) {
    for (int64_t r = 0; r < rows; ++r) {
      typename S::T* o = out + r * ld_out + p;
      V acc[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[v] = accumulate ? S::load(o + v * L) : S::zero();
      for (int64_t t = begin[r]; t < end[r]; ++t) {
        const V c = S::set1(coef[t]);
        const typename S::T* s = src + offset[t] + p;
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[v] = S::fma(c, S::load(s + v * L), acc[v]);
      }
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) S::store(o + v * L, acc[v]);
    }
  }
}

// The lane mask of a sign word (0xFFFF: all lanes, 0: none).
template <class S>
inline __attribute__((always_inline)) typename S::M word_mask(uint16_t word) {
  if constexpr (S::kStoredMasks) {
    return static_cast<typename S::M>(word);
  } else {
    return S::ge0(S::set1(typename S::T(word) - typename S::T(1)));
  }
}

// A register tile of both bounds for MR output rows x NV pixel vectors: cleared, and stored to
// rows 2i (lo) and 2i + 1 (hi) of `o` (row length ld_out).
template <class S, int MR, int NV>
inline __attribute__((always_inline)) void clear_pixel_tile(typename S::V (&lo)[MR][NV],
                                                            typename S::V (&hi)[MR][NV]) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) lo[i][v] = hi[i][v] = S::zero();
  }
}

// The tile's accumulators from out rows 2i (lower bound) and 2i + 1 (upper) of channel i.
template <class S, int MR, int NV>
inline __attribute__((always_inline)) void load_pixel_tile(typename S::V (&lo)[MR][NV],
                                                           typename S::V (&hi)[MR][NV],
                                                           const typename S::T* o,
                                                           int64_t ld_out) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      lo[i][v] = S::load(o + 2 * i * ld_out + v * S::L);
      hi[i][v] = S::load(o + (2 * i + 1) * ld_out + v * S::L);
    }
  }
}

template <class S, int MR, int NV>
inline __attribute__((always_inline)) void store_pixel_tile(const typename S::V (&lo)[MR][NV],
                                                            const typename S::V (&hi)[MR][NV],
                                                            typename S::T* o, int64_t ld_out) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      S::store(o + 2 * i * ld_out + v * S::L, lo[i][v]);
      S::store(o + (2 * i + 1) * ld_out + v * S::L, hi[i][v]);
    }
  }
}

// out row 2 * c = sum_t [e] a * (sa ? x_t : y_t), row 2 * c + 1 = sum_t b * (sb ? y_t : x_t), for
// the channels c of co_tiles tiles of kPixMR, tap t's rows x_t, y_t at src + x_off[t], y_off[t].
// Per tile and tap, coefficients [a x kPixMR, b x kPixMR] and sign words (0xFFFF: true, 0: false)
// alike; enable words e (lower row only) where given, else the lower row takes every term.
// Register tiles of kPixMR channels x NV vectors of both rows: each source vector loaded feeds
// kPixMR channels (the blend is free beside the FMAs), which keeps the loads below the FMAs;
// AVX2, without mask registers, compares the broadcast coefficient instead of loading its sign
// (its callers' signs are the coefficients' signs).
template <class S, int NV, bool GATED>
inline __attribute__((always_inline)) void pixel_tile(
    int64_t taps, const typename S::T* wt, const uint16_t* st, const uint16_t* et,
    const int64_t* lo_off, const int64_t* hi_off, const typename S::T* src, typename S::T* o,
    int64_t ld_out) {
  using V = typename S::V;
  using M = typename S::M;
  constexpr int L = S::L, MR = S::kPixMR;
  V lo[MR][NV], hi[MR][NV];
  clear_pixel_tile<S>(lo, hi);
  for (int64_t t = 0; t < taps; ++t, wt += 2 * MR, st += 2 * MR, et += GATED ? MR : 0) {
    V l[NV], h[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      l[v] = S::load(src + lo_off[t] + v * L);
      h[v] = S::load(src + hi_off[t] + v * L);
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V a = S::set1(wt[i]), b = S::set1(wt[MR + i]);
      M ma, mb, me;
      if constexpr (S::kStoredMasks) {
        ma = static_cast<M>(st[i]);
        mb = static_cast<M>(st[MR + i]);
        if constexpr (GATED) me = static_cast<M>(et[i]);
      } else {
        ma = S::ge0(a);
        mb = S::ge0(b);
        if constexpr (GATED) me = word_mask<S>(et[i]);
      }
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        if constexpr (GATED) {
          lo[i][v] = S::mask_fma(me, a, S::select(ma, l[v], h[v]), lo[i][v]);
        } else {
          lo[i][v] = S::fma(a, S::select(ma, l[v], h[v]), lo[i][v]);
        }
        hi[i][v] = S::fma(b, S::select(mb, h[v], l[v]), hi[i][v]);
      }
    }
  }
  store_pixel_tile<S>(lo, hi, o, ld_out);
}

template <class S, bool GATED>
void pixel_tiles(int64_t co_tiles, int64_t taps, const typename S::T* w, const uint16_t* sign,
                 const uint16_t* enable, const int64_t* x_off, const int64_t* y_off,
                 const typename S::T* src, typename S::T* out, int64_t ld_out, int64_t width) {
  constexpr int L = S::L, MR = S::kPixMR, NV = S::kPixNV;
  for (int64_t ct = 0; ct < co_tiles; ++ct) {
    const typename S::T* wt = w + ct * taps * 2 * MR;
    const uint16_t* st = sign + ct * taps * 2 * MR;
    const uint16_t* et = GATED ? enable + ct * taps * MR : nullptr;
    typename S::T* o = out + 2 * ct * MR * ld_out;
    int64_t p = 0;
    for (; p + NV * L <= width; p += NV * L) {
      pixel_tile<S, NV, GATED>(taps, wt, st, et, x_off, y_off, src + p, o + p, ld_out);
    }
    for (; p < width; p += L) {
      pixel_tile<S, 1, GATED>(taps, wt, st, et, x_off, y_off, src + p, o + p, ld_out);
    }
  }
}

template <class S>
void select_tiles(int64_t co_tiles, int64_t taps, const typename S::T* w, const uint16_t* sign,
                  const uint16_t* enable, const int64_t* x_off, const int64_t* y_off,
                  const typename S::T* src, typename S::T* out, int64_t ld_out, int64_t width) {
  (enable ? pixel_tiles<S, true> : pixel_tiles<S, false>)(co_tiles, taps, w, sign, enable, x_off,
                                                          y_off, src, out, ld_out, width);
}

// NV vectors of a tap's two rows x, y and their lanes' signs (x >= 0, y >= 0), for the general
// kernels below.
template <class S, int NV>
inline __attribute__((always_inline)) void load_signed_rows(
    const typename S::T* x, const typename S::T* y, typename S::V (&l)[NV],
    typename S::V (&h)[NV], typename S::M (&ml)[NV], typename S::M (&mh)[NV]) {
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    l[v] = S::load(x + v * S::L);
    h[v] = S::load(y + v * S::L);
    ml[v] = S::ge0(l[v]);
    mh[v] = S::ge0(h[v]);
  }
}

// The general (signed input) forward, on weights classified and grouped per tile by the caller
// (ClassifiedWeights, conv_pixel_lanes.h): the taps of a tile come in runs of one kind each,
// runs[kind] taps per kind, kinds 0 .. 2^kPixMR - 1 first, then kind 2^kPixMR; per tap the
// weights [a x kPixMR, b x kPixMR] and its own rows x = src + x_off[t], y = src + y_off[t] (the
// tile's taps in its order). Kind bit i says how channel i's weight [a, b] lies:
//   bit clear, a, b >= 0:  lo += x * (x >= 0 ? a : b),  hi += y * (y >= 0 ? b : a);
//   bit set,   a, b <= 0:  lo += y * (y >= 0 ? a : b),  hi += x * (x >= 0 ? b : a);
// (for a weight of one sign the lower bound's minimum is always its x (resp. y) candidate, the
// upper's maximum its y (resp. x) one), one blend and one FMA per bound; kind 2^kPixMR (some
// channel's weight is not of one sign, e.g. a < 0 < b): both candidates and the choice,
//   lo += min(x * (x >= 0 ? a : b), y * (y >= 0 ? a : b)),
//   hi += max(x * (x >= 0 ? b : a), y * (y >= 0 ? b : a)).
// A run's kind is a template argument: no per-tap branch, no per-channel blend of the rows.
// The candidates picked are the ones the two-candidate choice picks (rounding is monotonic), so
// each term is the same product; the fused add rounds once where the straddling kind rounds the
// product and the sum separately. Finite operands only (the dispatcher's contract).
//   NONNEG (non-negative mode, x = l and y = h, lo = sum a * (a >= 0 ? l : h), hi = sum b *
// (b >= 0 ? h : l) whatever the input's signs): a one-sign kind's terms are one FMA per bound
// and nothing else (bit clear: lo += l a, hi += h b; set: lo += h a, hi += l b; each the product
// the weight's sign picks, or an exact zero where a bound is 0); kind 2^kPixMR picks by each
// weight's sign, a blend per bound (select_tiles' term).
template <class S, int NV, int KIND, bool NONNEG>
inline __attribute__((always_inline)) void tap_run(
    int64_t n, const typename S::T*& wt, const int64_t*& x_off, const int64_t*& y_off,
    const typename S::T* src, typename S::V (&lo)[S::kPixMR][NV],
    typename S::V (&hi)[S::kPixMR][NV]) {
  using V = typename S::V;
  using M = typename S::M;
  constexpr int MR = S::kPixMR;
  constexpr bool kStraddling = KIND == (1 << MR);
  for (int64_t t = 0; t < n; ++t, wt += 2 * MR) {
    V l[NV], h[NV];
    M ml[NV], mh[NV];
    load_signed_rows<S, NV>(src + x_off[t], src + y_off[t], l, h, ml, mh);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V a = S::set1(wt[i]), b = S::set1(wt[MR + i]);
      [[maybe_unused]] M ma{}, mb{};  // the weights' signs: non-negative mode's mixed kind
      if constexpr (NONNEG && kStraddling) {
        ma = S::ge0(a);
        mb = S::ge0(b);
      }
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        if constexpr (NONNEG && kStraddling) {
          lo[i][v] = S::fma(S::select(ma, l[v], h[v]), a, lo[i][v]);
          hi[i][v] = S::fma(S::select(mb, h[v], l[v]), b, hi[i][v]);
        } else if constexpr (NONNEG) {
          const bool set = (KIND >> i) & 1;  // a, b <= 0 (a constant of the unrolled loop)
          lo[i][v] = S::fma(set ? h[v] : l[v], a, lo[i][v]);
          hi[i][v] = S::fma(set ? l[v] : h[v], b, hi[i][v]);
        } else if constexpr (kStraddling) {
          add_general_term<S>(l[v], h[v], ml[v], mh[v], a, b, lo[i][v], hi[i][v]);
        } else if ((KIND >> i) & 1) {  // a, b <= 0 (i is a constant of the unrolled loop)
          lo[i][v] = S::fma(h[v], S::select(mh[v], a, b), lo[i][v]);
          hi[i][v] = S::fma(l[v], S::select(ml[v], b, a), hi[i][v]);
        } else {  // a, b >= 0
          lo[i][v] = S::fma(l[v], S::select(ml[v], a, b), lo[i][v]);
          hi[i][v] = S::fma(h[v], S::select(mh[v], b, a), hi[i][v]);
        }
      }
    }
  }
  x_off += n;
  y_off += n;
}

// The runs of kinds KIND .. 2^kPixMR (the straddling kind last), in order.
template <class S, int NV, int KIND, bool NONNEG>
inline __attribute__((always_inline)) void tap_runs(
    const int64_t* runs, const typename S::T*& wt, const int64_t*& x_off, const int64_t*& y_off,
    const typename S::T* src, typename S::V (&lo)[S::kPixMR][NV],
    typename S::V (&hi)[S::kPixMR][NV]) {
  if constexpr (KIND <= (1 << S::kPixMR)) {
    tap_run<S, NV, KIND, NONNEG>(runs[KIND], wt, x_off, y_off, src, lo, hi);
    tap_runs<S, NV, KIND + 1, NONNEG>(runs, wt, x_off, y_off, src, lo, hi);
  }
}

template <class S, int NV, bool NONNEG>
inline __attribute__((always_inline)) void general_tile(const int64_t* runs,
                                                        const typename S::T* wt,
                                                        const int64_t* x_off,
                                                        const int64_t* y_off,
                                                        const typename S::T* src,
                                                        typename S::T* o, int64_t ld_out,
                                                        bool accumulate) {
  using V = typename S::V;
  constexpr int MR = S::kPixMR;
  V lo[MR][NV], hi[MR][NV];
  if (accumulate) {
    load_pixel_tile<S>(lo, hi, o, ld_out);
  } else {
    clear_pixel_tile<S>(lo, hi);
  }
  tap_runs<S, NV, 0, NONNEG>(runs, wt, x_off, y_off, src, lo, hi);
  store_pixel_tile<S>(lo, hi, o, ld_out);
}

// Tile ct's runs at runs + ct * (2^kPixMR + 1), its weights at w + ct * taps * 2 * kPixMR, its
// rows' offsets at x_off + ct * taps, y_off + ct * taps. Non-negative mode has the wider tile of
// select_tiles (no candidate temporaries). `accumulate`: add to the out rows (a later block of
// the taps) instead of starting from zero.
template <class S, bool NONNEG>
void general_tiles_(int64_t co_tiles, int64_t taps, const typename S::T* w, const int64_t* runs,
                    const int64_t* x_off, const int64_t* y_off, const typename S::T* src,
                    typename S::T* out, int64_t ld_out, int64_t width, bool accumulate) {
  constexpr int L = S::L, MR = S::kPixMR, NV = NONNEG ? S::kPixNV : S::kPixGenNV;
  for (int64_t ct = 0; ct < co_tiles; ++ct) {
    const typename S::T* wt = w + ct * taps * 2 * MR;
    const int64_t* rt = runs + ct * ((1 << MR) + 1);
    const int64_t *xt = x_off + ct * taps, *yt = y_off + ct * taps;
    typename S::T* o = out + 2 * ct * MR * ld_out;
    int64_t p = 0;
    for (; p + NV * L <= width; p += NV * L) {
      general_tile<S, NV, NONNEG>(rt, wt, xt, yt, src + p, o + p, ld_out, accumulate);
    }
    for (; p < width; p += L) {
      general_tile<S, 1, NONNEG>(rt, wt, xt, yt, src + p, o + p, ld_out, accumulate);
    }
  }
}

template <class S>
void general_tiles(int64_t co_tiles, int64_t taps, const typename S::T* w, const int64_t* runs,
                   const int64_t* x_off, const int64_t* y_off, const typename S::T* src,
                   typename S::T* out, int64_t ld_out, int64_t width, bool nonneg,
                   bool accumulate) {
  (nonneg ? general_tiles_<S, true> : general_tiles_<S, false>)(
      co_tiles, taps, w, runs, x_off, y_off, src, out, ld_out, width, accumulate);
}

// Whether the general product takes its h candidate (lower bound: lo_takes_h(pl, ph), upper:
// hi_takes_h(ql, qh)); with FINITE operands no candidate is NaN (no inf * 0), and one ordered
// compare decides (mask compares cost FMA slots).
template <class S, bool FINITE>
inline __attribute__((always_inline)) typename S::M lo_takes_h(typename S::V p, typename S::V q) {
  if constexpr (FINITE) {
    return S::gt(p, q);
  } else {
    return S::lo_takes_h(p, q);
  }
}
template <class S, bool FINITE>
inline __attribute__((always_inline)) typename S::M hi_takes_h(typename S::V p, typename S::V q) {
  if constexpr (FINITE) {
    return S::gt(q, p);
  } else {
    return S::hi_takes_h(p, q);
  }
}

// General-mode input gradient, on weights classified as for general_tiles (ClassifiedWeights
// for the gradient: its one-sign weights are also sign-routed, interval_math.h), for result rows
// (channels c) at the positions of their input rows: l at xs + 2c * ld, h at xs + (2c + 1) * ld.
// Per tap t the gradient rows gl = src + x_off[t], gh = src + y_off[t]. Each bound's selected
// candidate (as the forward picks it, per lane) routes g * (its weight) to dl or dh, as the
// GEMM's BackwardInput::micro_general. One vector per tile: the tile's input signs stay in
// registers for all taps, the gradient vectors are shared by its kPixMR channels.
//   ROUTED (every lane of the tile's input rows sign-routed): a one-sign term is one blend
// and one FMA per bound. The bound whose candidate never loses (lo of a, b >= 0, hi of
// a, b <= 0: l's candidate) adds to dl; the other bound takes h's candidate except at a tie,
// which in a sign-routed lane means l == h, where it takes l's: it adds to e, which goes to dl
// where l == h and to dh elsewhere. (For one-sign weights the term costs what a non-negative
// mode term does, against two products, two compares and four masked FMAs.)
//   The taps of the two-candidate kind, and every tap without ROUTED, compare the candidates
// per lane and route with masked FMAs (FINITE: one ordered compare, no NaN candidate).
template <class S, bool FINITE>
inline __attribute__((always_inline)) void compared_grad_terms(
    int64_t n, const typename S::T*& wt, const int64_t*& x_off, const int64_t*& y_off,
    const typename S::T* src, const typename S::V (&l)[S::kPixMR],
    const typename S::V (&h)[S::kPixMR], const typename S::V (&ml)[S::kPixMR],
    const typename S::V (&mh)[S::kPixMR], typename S::V (&dl)[S::kPixMR],
    typename S::V (&dh)[S::kPixMR]) {
  using V = typename S::V;
  using M = typename S::M;
  constexpr int MR = S::kPixMR;
  for (int64_t t = 0; t < n; ++t, wt += 2 * MR) {
    const V gl = S::load(src + x_off[t]), gh = S::load(src + y_off[t]);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V a = S::set1(wt[i]), b = S::set1(wt[MR + i]);
      const V wl = S::vselect(ml[i], a, b), wh = S::vselect(mh[i], a, b);
      const M lo_h = lo_takes_h<S, FINITE>(S::mul(l[i], wl), S::mul(h[i], wh));
      const V w_lo = S::select(lo_h, wh, wl);
      dl[i] = S::mask_fma(S::mnot(lo_h), gl, w_lo, dl[i]);
      dh[i] = S::mask_fma(lo_h, gl, w_lo, dh[i]);
      const V vl = S::vselect(ml[i], b, a), vh = S::vselect(mh[i], b, a);
      const M hi_h = hi_takes_h<S, FINITE>(S::mul(l[i], vl), S::mul(h[i], vh));
      const V w_hi = S::select(hi_h, vh, vl);
      dl[i] = S::mask_fma(S::mnot(hi_h), gh, w_hi, dl[i]);
      dh[i] = S::mask_fma(hi_h, gh, w_hi, dh[i]);
    }
  }
  x_off += n;
  y_off += n;
}

// The one-sign runs of kinds KIND .. 2^kPixMR - 1 of a ROUTED tile, in order (see above).
template <class S, int KIND>
inline __attribute__((always_inline)) void routed_grad_runs(
    const int64_t* runs, const typename S::T*& wt, const int64_t*& x_off, const int64_t*& y_off,
    const typename S::T* src, const typename S::V (&ml)[S::kPixMR],
    const typename S::V (&mh)[S::kPixMR], typename S::V (&dl)[S::kPixMR],
    typename S::V (&e)[S::kPixMR]) {
  using V = typename S::V;
  constexpr int MR = S::kPixMR;
  if constexpr (KIND < (1 << MR)) {
    for (int64_t t = 0; t < runs[KIND]; ++t, wt += 2 * MR) {
      const V gl = S::load(src + x_off[t]), gh = S::load(src + y_off[t]);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const V a = S::set1(wt[i]), b = S::set1(wt[MR + i]);
        if ((KIND >> i) & 1) {  // a, b <= 0: hi takes l's candidate, lo h's (or l's at a tie)
          dl[i] = S::fma(gh, S::vselect(ml[i], b, a), dl[i]);
          e[i] = S::fma(gl, S::vselect(mh[i], a, b), e[i]);
        } else {  // a, b >= 0: lo takes l's candidate, hi h's (or l's at a tie)
          dl[i] = S::fma(gl, S::vselect(ml[i], a, b), dl[i]);
          e[i] = S::fma(gh, S::vselect(mh[i], b, a), e[i]);
        }
      }
    }
    x_off += runs[KIND];
    y_off += runs[KIND];
    routed_grad_runs<S, KIND + 1>(runs, wt, x_off, y_off, src, ml, mh, dl, e);
  }
}

template <class S, bool FINITE, bool ROUTED>
inline __attribute__((always_inline)) void general_grad_tile(
    const int64_t* runs, int64_t taps, const typename S::T* wt, const int64_t* x_off,
    const int64_t* y_off, const typename S::T* src, const typename S::T* xs, typename S::T* o,
    int64_t ld) {
  using V = typename S::V;
  constexpr int MR = S::kPixMR;
  V dl[MR], dh[MR], l[MR], h[MR], ml[MR], mh[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    dl[i] = dh[i] = S::zero();
    l[i] = S::load(xs + 2 * i * ld);
    h[i] = S::load(xs + (2 * i + 1) * ld);
    ml[i] = S::vmask_ge0(l[i]);  // the input signs, fixed for all taps: vector masks, no
    mh[i] = S::vmask_ge0(h[i]);  // compares into mask registers per term
  }
  if constexpr (ROUTED) {
    V e[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) e[i] = S::zero();
    routed_grad_runs<S, 0>(runs, wt, x_off, y_off, src, ml, mh, dl, e);
    compared_grad_terms<S, FINITE>(runs[1 << MR], wt, x_off, y_off, src, l, h, ml, mh, dl, dh);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {  // l <= h in a sign-routed lane: a tie is l == h
      const typename S::M tie = S::mnot(S::gt(h[i], l[i]));
      dl[i] = S::select(tie, S::add(dl[i], e[i]), dl[i]);
      dh[i] = S::select(tie, dh[i], S::add(dh[i], e[i]));
    }
  } else {
    compared_grad_terms<S, FINITE>(taps, wt, x_off, y_off, src, l, h, ml, mh, dl, dh);
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    S::store(o + 2 * i * ld, dl[i]);
    S::store(o + (2 * i + 1) * ld, dh[i]);
  }
}

// Tile ct's runs at runs + ct * (2^kPixMR + 1), its weights at w + ct * taps * 2 * kPixMR, its
// rows' offsets at x_off + ct * taps, y_off + ct * taps (ClassifiedWeights' layout). With FINITE
// operands each pixel tile whose input lanes are all sign-routed is ROUTED (checked per tile: a
// few input lanes that are not cost only their own tiles the comparisons).
template <class S, bool FINITE>
void general_grad_tiles_(int64_t co_tiles, int64_t taps, const typename S::T* w,
                         const int64_t* runs, const int64_t* x_off, const int64_t* y_off,
                         const typename S::T* src, const typename S::T* xs, typename S::T* out,
                         int64_t ld, int64_t width) {
  constexpr int L = S::L, MR = S::kPixMR;
  for (int64_t ct = 0; ct < co_tiles; ++ct) {
    for (int64_t p = 0; p < width; p += L) {
      const typename S::T* xt = xs + 2 * ct * MR * ld + p;
      bool routed = FINITE;
      for (int i = 0; i < MR && routed; ++i) {
        routed = lanes_routed(xt + 2 * i * ld, xt + (2 * i + 1) * ld, L);
      }
      (routed ? general_grad_tile<S, FINITE, FINITE> : general_grad_tile<S, FINITE, false>)(
          runs + ct * ((1 << MR) + 1), taps, w + ct * taps * 2 * MR, x_off + ct * taps,
          y_off + ct * taps, src + p, xt, out + 2 * ct * MR * ld + p, ld);
    }
  }
}

template <class S>
void general_grad_tiles(int64_t co_tiles, int64_t taps, const typename S::T* w,
                        const int64_t* runs, const int64_t* x_off, const int64_t* y_off,
                        const typename S::T* src, const typename S::T* xs, typename S::T* out,
                        int64_t ld, int64_t width, bool finite) {
  (finite ? general_grad_tiles_<S, true> : general_grad_tiles_<S, false>)(
      co_tiles, taps, w, runs, x_off, y_off, src, xs, out, ld, width);
}

// Selected dot products over p < width, in tiles of kGradMR channels c x kGradNK taps k:
//   out[(c * 2 + 0) * k_pad + k] += sum_p g[2c][p] * (s_lo ? x_k : y_k)[p]
//   out[(c * 2 + 1) * k_pad + k] += sum_p g[2c + 1][p] * (s_hi ? y_k : x_k)[p]
// with g rows at g + row * ld, x_k = src + x_off[k], y_k = src + y_off[k], and sign words
// sign[(c * 2 + bound) * k_pad + k] (0xFFFF: true). The selections are fixed for the whole
// reduction, so the tile keeps its masks in registers (the lower bound's in mask registers where
// there are, the upper bound's in vector registers) and each loaded vector feeds several FMAs.
template <class S>
void dot_tiles(int64_t c_tiles, int64_t k_tiles, const typename S::T* g, const int64_t* x_off,
               const int64_t* y_off, const uint16_t* sign, const typename S::T* src, int64_t ld,
               int64_t width, typename S::T* out) {
  using T = typename S::T;
  using V = typename S::V;
  using M = typename S::M;
  constexpr int L = S::L, MR = S::kGradMR, NK = S::kGradNK;
  const int64_t k_pad = k_tiles * NK;
  for (int64_t ct = 0; ct < c_tiles; ++ct) {
    for (int64_t kt = 0; kt < k_tiles; ++kt) {
      V lo[MR][NK], hi[MR][NK], shi[MR][NK];
      M slo[MR][NK];
      const T* x[NK];
      const T* y[NK];
#pragma GCC unroll 4
      for (int j = 0; j < NK; ++j) {
        x[j] = src + x_off[kt * NK + j];
        y[j] = src + y_off[kt * NK + j];
      }
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
        for (int j = 0; j < NK; ++j) {
          const uint16_t* s = sign + (ct * MR + i) * 2 * k_pad + kt * NK + j;
          lo[i][j] = hi[i][j] = S::zero();
          slo[i][j] = word_mask<S>(s[0]);
          shi[i][j] = S::vmask_ge0(S::set1(T(s[k_pad]) - T(1)));
        }
      }
      for (int64_t p = 0; p < width; p += L) {
        V xv[NK], yv[NK];
#pragma GCC unroll 4
        for (int j = 0; j < NK; ++j) {
          xv[j] = S::load(x[j] + p);
          yv[j] = S::load(y[j] + p);
        }
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) {
          const V gl = S::load(g + 2 * (ct * MR + i) * ld + p);
          const V gh = S::load(g + (2 * (ct * MR + i) + 1) * ld + p);
#pragma GCC unroll 4
          for (int j = 0; j < NK; ++j) {
            lo[i][j] = S::fma(gl, S::select(slo[i][j], xv[j], yv[j]), lo[i][j]);
            hi[i][j] = S::fma(gh, S::vselect(shi[i][j], yv[j], xv[j]), hi[i][j]);
          }
        }
      }
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
        for (int j = 0; j < NK; ++j) {
          T* o = out + (ct * MR + i) * 2 * k_pad + kt * NK + j;
          o[0] += S::hsum(lo[i][j]);
          o[k_pad] += S::hsum(hi[i][j]);
        }
      }
    }
  }
}

// General-mode weight gradient in dot_tiles' layout, with the weights a = w[(2c) * k_pad + k],
// b = w[(2c + 1) * k_pad + k] in place of the signs: per lane the forward's candidate choice,
// and each selected product's g * x goes to the weight bound it multiplies (a where the chosen
// x is >= 0 for the lower bound, < 0 for the upper), as BackwardWeight::micro_general. FINITE
// (inputs, weights and gradients finite): g * max(x, 0) and g * min(x, 0) route it without
// masks (the other bound gets g * 0 = 0).
// Tiles of sign-routed weights take known candidates where they can (routed_dot_tile).
//
// One vector of the compared weight gradient: per lane the candidate choice, the selected
// product's g * x to the weight bound it multiplies; g at the tile's first row, p the vector.
template <class S, bool FINITE>
inline __attribute__((always_inline)) void compared_dot_step(
    const typename S::T* g, int64_t ld, int64_t p, const typename S::T* const (&x)[S::kGradNK],
    const typename S::T* const (&y)[S::kGradNK], const typename S::T (&a)[S::kGradMR][S::kGradNK],
    const typename S::T (&b)[S::kGradMR][S::kGradNK], typename S::V (&da)[S::kGradMR][S::kGradNK],
    typename S::V (&db)[S::kGradMR][S::kGradNK]) {
  using V = typename S::V;
  using M = typename S::M;
  constexpr int MR = S::kGradMR, NK = S::kGradNK;
  V l[NK], h[NK];
  M ml[NK], mh[NK];
#pragma GCC unroll 4
  for (int j = 0; j < NK; ++j) {
    l[j] = S::load(x[j] + p);
    h[j] = S::load(y[j] + p);
    ml[j] = S::ge0(l[j]);
    mh[j] = S::ge0(h[j]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    const V gl = S::load(g + 2 * i * ld + p), gh = S::load(g + (2 * i + 1) * ld + p);
#pragma GCC unroll 4
    for (int j = 0; j < NK; ++j) {
      const V va = S::set1(a[i][j]), vb = S::set1(b[i][j]);
      const V pl = S::mul(l[j], S::select(ml[j], va, vb));
      const V ph = S::mul(h[j], S::select(mh[j], va, vb));
      const V x_lo = S::select(lo_takes_h<S, FINITE>(pl, ph), h[j], l[j]);
      const V ql = S::mul(l[j], S::select(ml[j], vb, va));
      const V qh = S::mul(h[j], S::select(mh[j], vb, va));
      const V x_hi = S::select(hi_takes_h<S, FINITE>(ql, qh), h[j], l[j]);
      if constexpr (FINITE) {  // x >= 0 to one bound, x < 0 to the other: split by sign
        da[i][j] = S::fma(gl, S::max0(x_lo), S::fma(gh, S::min0(x_hi), da[i][j]));
        db[i][j] = S::fma(gl, S::min0(x_lo), S::fma(gh, S::max0(x_hi), db[i][j]));
      } else {
        const M to_a = S::ge0(x_lo), to_b = S::ge0(x_hi);
        da[i][j] = S::mask_fma(to_a, gl, x_lo, da[i][j]);
        db[i][j] = S::mask_fma(S::mnot(to_a), gl, x_lo, db[i][j]);
        db[i][j] = S::mask_fma(to_b, gh, x_hi, db[i][j]);
        da[i][j] = S::mask_fma(S::mnot(to_b), gh, x_hi, da[i][j]);
      }
    }
  }
}

//   Routed (finite operands, every weight of the tile sign-routed; per pixel vector, every input
// lane of its taps sign-routed, interval_math.h): known candidates (add_routed_weight_term: the
// accumulators of a, b <= 0 hold (db, da), which start at zero), two blends and four FMAs per
// weight and vector, the clamped inputs shared by the tile's channels, against four products,
// two compares and the choice. A vector with an input lane that is not sign-routed compares
// (its sums added to the exchanged accumulators).
template <class S>
inline __attribute__((always_inline)) void routed_dot_tile(
    const typename S::T* g, int64_t ld, int64_t width, const uint8_t* routed_vectors,
    const typename S::T* const (&x)[S::kGradNK], const typename S::T* const (&y)[S::kGradNK],
    const typename S::T (&a)[S::kGradMR][S::kGradNK],
    const typename S::T (&b)[S::kGradMR][S::kGradNK], typename S::V (&da)[S::kGradMR][S::kGradNK],
    typename S::V (&db)[S::kGradMR][S::kGradNK]) {
  using T = typename S::T;
  using V = typename S::V;
  using M = typename S::M;
  constexpr int L = S::L, MR = S::kGradMR, NK = S::kGradNK;
  M swap[MR][NK];  // a, b <= 0: gl and gh swap roles, and so do the two sums (da, db start at 0)
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NK; ++j) {
      swap[i][j] = word_mask<S>(uint16_t(-int(!(a[i][j] >= T(0) && b[i][j] >= T(0)))));
    }
  }
  for (int64_t p = 0; p < width; p += L) {
    if (!routed_vectors[p / L]) {
      V ta[MR][NK], tb[MR][NK];
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
        for (int j = 0; j < NK; ++j) ta[i][j] = tb[i][j] = S::zero();
      }
      compared_dot_step<S, true>(g, ld, p, x, y, a, b, ta, tb);
      swap_tile<S>(swap, ta, tb);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
        for (int j = 0; j < NK; ++j) {
          da[i][j] = S::add(da[i][j], ta[i][j]);
          db[i][j] = S::add(db[i][j], tb[i][j]);
        }
      }
      continue;
    }
    SignedParts<S> parts[NK];
#pragma GCC unroll 4
    for (int j = 0; j < NK; ++j) parts[j] = signed_parts<S>(x[j] + p, y[j] + p);
    add_routed_weight_terms<S>(swap, parts, [&](int i) {
      return std::pair<V, V>{S::load(g + 2 * i * ld + p), S::load(g + (2 * i + 1) * ld + p)};
    }, da, db);
  }
  swap_tile<S>(swap, da, db);
}

template <class S, bool FINITE>
void general_dot_tiles_(int64_t c_tiles, int64_t k_tiles, const typename S::T* g,
                        const int64_t* x_off, const int64_t* y_off, const typename S::T* w,
                        const typename S::T* src, int64_t ld, int64_t width, typename S::T* out) {
  using T = typename S::T;
  using V = typename S::V;
  constexpr int L = S::L, MR = S::kGradMR, NK = S::kGradNK;
  const int64_t k_pad = k_tiles * NK, vectors = width / L;
  // Per (k tile, pixel vector): whether every input lane of its taps is sign-routed.
  std::vector<uint8_t> routed(FINITE ? k_tiles * vectors : 0);
  for (int64_t kt = 0; kt < (FINITE ? k_tiles : 0); ++kt) {
    for (int64_t v = 0; v < vectors; ++v) {
      bool all = true;
      for (int j = 0; j < NK && all; ++j) {
        all = lanes_routed(src + x_off[kt * NK + j] + v * L, src + y_off[kt * NK + j] + v * L, L);
      }
      routed[kt * vectors + v] = all;
    }
  }
  for (int64_t ct = 0; ct < c_tiles; ++ct) {
    const T* gt = g + 2 * ct * MR * ld;
    for (int64_t kt = 0; kt < k_tiles; ++kt) {
      V da[MR][NK], db[MR][NK];
      T a[MR][NK], b[MR][NK];
      const T* x[NK];
      const T* y[NK];
      bool tile_routed = FINITE;
#pragma GCC unroll 4
      for (int j = 0; j < NK; ++j) {
        x[j] = src + x_off[kt * NK + j];
        y[j] = src + y_off[kt * NK + j];
      }
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const T* wi = w + (ct * MR + i) * 2 * k_pad + kt * NK;
        tile_routed = tile_routed && weights_routed(wi, 1, wi + k_pad, 1, NK);
#pragma GCC unroll 4
        for (int j = 0; j < NK; ++j) {
          da[i][j] = db[i][j] = S::zero();
          a[i][j] = wi[j];
          b[i][j] = wi[k_pad + j];
        }
      }
      if (tile_routed) {
        routed_dot_tile<S>(gt, ld, width, &routed[kt * vectors], x, y, a, b, da, db);
      } else {
        for (int64_t p = 0; p < width; p += L) {
          compared_dot_step<S, FINITE>(gt, ld, p, x, y, a, b, da, db);
        }
      }
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
        for (int j = 0; j < NK; ++j) {
          T* o = out + (ct * MR + i) * 2 * k_pad + kt * NK + j;
          o[0] += S::hsum(da[i][j]);
          o[k_pad] += S::hsum(db[i][j]);
        }
      }
    }
  }
}

template <class S>
void general_dot_tiles(int64_t c_tiles, int64_t k_tiles, const typename S::T* g,
                       const int64_t* x_off, const int64_t* y_off, const typename S::T* w,
                       const typename S::T* src, int64_t ld, int64_t width, typename S::T* out,
                       bool finite) {
  (finite ? general_dot_tiles_<S, true> : general_dot_tiles_<S, false>)(
      c_tiles, k_tiles, g, x_off, y_off, w, src, ld, width, out);
}

template <class S>
constexpr PixelKernels<typename S::T> make_pixel_kernels() {
  return {&combine_rows<S>, &select_tiles<S>, &general_tiles<S>, &dot_tiles<S>,
          &general_grad_tiles<S>, &general_dot_tiles<S>,
          kCombineVectors * S::L,
          S::kPixMR, S::kGradMR, S::kGradNK};
}
