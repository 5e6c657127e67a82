// The one tiled kernel behind every op: a (rows x cols) output per group, each element a sum over
// `depth` terms of two streamed interval operands A (indexed by row) and B (indexed by column),
// plus, for gradients, the element's own operand. Linear layers and convolutions differ only in the
// Problem, which maps (group, row/col, depth index) to memory (linear_problems.cuh,
// conv_problems.cuh).
//
// Design. The kernel is a template over a tile configuration (tile_config.cuh: Config::kRows x
// kCols outputs per block, depth steps of kDepth, a kThreadRows x kThreadCols register tile per
// thread); the launch plan (tile_runner.cuh: choose_tile) picks one per call, so a layer with few
// output channels runs in 16-row tiles instead of wasting most of a 64-row one, and a reduction
// of at most 8 terms in 8-deep steps. Per depth step a
// block stages the A and B tiles (both bounds, converted to the accumulator type) in shared
// memory, then each thread updates its register tile of BOTH accumulators; the global loads of
// the next step are issued before that compute (register prefetch), so their latency overlaps it.
// Thread (ty, tx) owns rows ty + i * kThreadsPerCol and columns tx + j * kThreadsPerRow, so a warp
// reads A tiles as broadcasts, B tiles without bank conflicts, and stores runs of consecutive
// columns. The last step of a block's depth range computes only the terms that exist (its staged
// tail is zero and is not read), so a 9-term 3x3 single-channel reduction costs 9 term updates,
// not 16.
//
// Index decoding stays out of the depth loop: a row's (column's) operand position is decoded once
// per block into a cursor, and a problem whose depth index needs decoding (the convolutions: a
// (channel, kh, kw) tap or a (batch, pixel) position, which take integer divisions) declares
// kDepthTable: the first kDepth threads then decode the next step's depth indices into a small
// shared table while the tiles are staged, and every load of that step reads its entry (offsets
// and tap displacements) instead of dividing: kDepth decodes per block and step instead of one
// per staged element, for one more barrier per block (before the first step) and 2 x kDepth
// entries of shared memory. Linear problems use the depth index as it is.
//
// Split-K: blockIdx.y selects a slice of the depth; with more than one slice the partial sums go
// to a workspace that split_reduce_kernel sums (deterministically, no atomics) before the
// epilogue. All of this is written for, and checked in, the CPU emulation of the CUDA execution
// model (python_tests/cuda_emulation: every configuration, exact against a brute-force oracle,
// also under AddressSanitizer and ThreadSanitizer); it compiles for sm_80/sm_90 but has not been
// run or timed on a GPU, so the configurations and thresholds are reasoned, not measured.
//
// Torch-free. No thread leaves early: every thread reaches every
// __syncthreads (the CPU emulation checks this); only a guarded launch (TileOutput::run_if) ends
// whole blocks before the first barrier.
//
// Problem interface (all members usable on the device):
//   using T, Acc; static constexpr TermKind kKind; static constexpr bool kAFirst (A is the `first`
//   operand of accumulate_term, else B is); static constexpr bool kALoadsAlongDepth,
//   kBLoadsAlongDepth (the operand is contiguous along the depth index: consecutive threads then
//   load consecutive depth indices, else consecutive rows/columns; speed only);
//   TileShape shape; TileOutput<T> out;
//   Context context(int g); index_t cols(const Context&), depth(const Context&);
//   DepthIndex; static constexpr bool kDepthTable; DepthIndex depth_index(ctx, index_t t)
//   (a trivially copyable aggregate: it is kept in shared memory);
//   ACursor a_cursor(ctx, index_t row); void load_a(ctx, const ACursor&, const DepthIndex&, Acc&,
//   Acc&); BCursor b_cursor(ctx, index_t col); void load_b(ctx, const BCursor&, const DepthIndex&,
//   Acc&, Acc&);
//   void load_own(ctx, index_t row, index_t col, Acc&, Acc&) (gradients only);
//   index_t out_index(ctx, index_t row, index_t col).
// TileProblem below provides the usual Context (the group index), extents (the shape's) and the
// undecoded depth index. A context holds what a block's group needs (ConvBigOut: its stride
// phase, whose columns and depth are smaller); a cursor what a row (column) needs to find its
// operand elements.
#pragma once

#include <cstring>
#include <type_traits>

#include "interval_terms.cuh"
#include "tile_config.cuh"

namespace inn::kernels {

// The grid of a tile problem: blockIdx.x = (group, row tile, column tile), blockIdx.y = depth
// slice.
struct TileShape {
  index_t rows = 0, cols = 0, depth = 0;  // per group
  int groups = 1;
  index_t row_tiles = 0, col_tiles = 0;
  int splits = 1;    // depth slices
  index_t chunk = 0; // depth per slice, a multiple of the configuration's depth step
};

// Where results go. With splits > 1 the tile kernel writes raw partial sums to
// split_lo/split_hi[split * numel + index]; the epilogue (finish) adds the bias and stores.
template <typename T>
struct TileOutput {
  using Acc = acc_t<T>;
  T* lo = nullptr;
  T* hi = nullptr;
  Acc* split_lo = nullptr;
  Acc* split_hi = nullptr;
  // Forward only: element `index` takes bias[(index / bias_inner) % bias_channels].
  const T* bias_lo = nullptr;
  const T* bias_hi = nullptr;
  index_t numel = 0;
  index_t bias_inner = 1;
  index_t bias_channels = 1;
  // Launch guard: when set, the kernels do nothing unless *run_if (a device flag). The library
  // path (csrc/library) sets it to "an operand was not finite" and has the fused kernel overwrite
  // its result only then, without the host reading the flag.
  const bool* run_if = nullptr;

  INN_HD bool skipped() const { return run_if != nullptr && !*run_if; }

  INN_HD void finish(index_t index, Acc v0, Acc v1) const {
    if (bias_lo != nullptr) {
      const index_t channel = (index / bias_inner) % bias_channels;
      v0 += Element<T>::load(bias_lo[channel]);
      v1 += Element<T>::load(bias_hi[channel]);
    }
    lo[index] = Element<T>::store(v0);
    hi[index] = Element<T>::store(v1);
  }

  INN_HD void store(int split, int splits, index_t index, Acc v0, Acc v1) const {
    if (splits > 1) {
      split_lo[split * numel + index] = v0;
      split_hi[split * numel + index] = v1;
    } else {
      finish(index, v0, v1);
    }
  }
};

// What most problems share: the group index as the block's context, the shape's extents, and the
// depth index used as it is (no table).
template <typename Elem>
struct TileProblem {
  using T = Elem;
  using Acc = acc_t<T>;
  using Context = int;
  using DepthIndex = index_t;
  static constexpr bool kDepthTable = false;
  TileShape shape;
  TileOutput<T> out;

  INN_HD Context context(int g) const { return g; }
  INN_HD index_t cols(Context) const { return shape.cols; }
  INN_HD index_t depth(Context) const { return shape.depth; }
  INN_HD DepthIndex depth_index(Context, index_t t) const { return t; }
};

// Which elements of a [kDepth][kExtent] operand tile thread `tid` stages: kLoads of them, e, those
// that exist (a tile smaller than the block leaves the last threads without one). Along the
// depth, consecutive threads take consecutive depth indices and a thread's elements lie in kLoads
// different rows (one cursor each); otherwise consecutive threads take consecutive rows and a
// thread keeps one row (a single cursor). The formulas are written so that every element's
// position is a constant offset from the thread's first.
template <typename Config, int kExtent, bool kAlongDepth>
struct StageLayout {
  static constexpr int kDepth = Config::kDepth;
  static constexpr int kElements = kExtent * kDepth;
  static constexpr int kLoads = (kElements + kTileThreads - 1) / kTileThreads;
  static constexpr int kCursors = kAlongDepth ? kLoads : 1;
  static_assert(kElements % kTileThreads == 0 || kLoads == 1, "threads stage alike");
  static_assert(kTileThreads % (kAlongDepth ? kDepth : kExtent) == 0,
                "a thread's elements keep their depth index (along the depth) or row");
  static INN_HD bool exists(int tid, int e) {
    return kElements % kTileThreads == 0 || tid + e * kTileThreads < kElements;
  }
  static INN_HD int depth(int tid, int e) {
    return kAlongDepth ? tid % kDepth : tid / kExtent + e * (kTileThreads / kExtent);
  }
  static INN_HD int row(int tid, int e) {
    return kAlongDepth ? tid / kDepth + e * (kTileThreads / kDepth) : tid % kExtent;
  }
  static INN_HD int cursor(int e) { return kAlongDepth ? e : 0; }
};

// Copies a depth table entry (trivially copyable) in 4-byte words: on the GPU the bytes of a
// struct copy, in 4-byte shared-memory accesses; in the CPU emulation it keeps the table's
// accesses visible to ThreadSanitizer, which GCC does not instrument for aggregate copies (a race
// planted on the table went unreported with plain struct assignments, and is caught this way).
template <typename T>
INN_HD void copy_words(T& to, const T& from) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % sizeof(unsigned) == 0,
                "a table entry is copied as words");
#pragma unroll
  for (int i = 0; i < static_cast<int>(sizeof(T) / sizeof(unsigned)); ++i) {
    unsigned word;
    memcpy(&word, reinterpret_cast<const char*>(&from) + i * sizeof(unsigned), sizeof(unsigned));
    memcpy(reinterpret_cast<char*>(&to) + i * sizeof(unsigned), &word, sizeof(unsigned));
  }
}

template <typename Problem, typename Config, bool kNonneg>
__global__ void __launch_bounds__(kTileThreads) interval_tile_kernel(const Problem p) {
  using Acc = typename Problem::Acc;
  using DepthIndex = typename Problem::DepthIndex;
  constexpr int kRows = Config::kRows, kCols = Config::kCols, kDepth = Config::kDepth;
  constexpr int kThreadRows = Config::kThreadRows, kThreadCols = Config::kThreadCols;
  constexpr int kThreadsPerRow = Config::kThreadsPerRow, kThreadsPerCol = Config::kThreadsPerCol;
  using ALayout = StageLayout<Config, kRows, Problem::kALoadsAlongDepth>;
  using BLayout = StageLayout<Config, kCols, Problem::kBLoadsAlongDepth>;
  // +1 column: a depth-major store of consecutive depth indices does not hit one bank.
  __shared__ Acc a0_s[kDepth][kRows + 1];
  __shared__ Acc a1_s[kDepth][kRows + 1];
  __shared__ Acc b0_s[kDepth][kCols + 1];
  __shared__ Acc b1_s[kDepth][kCols + 1];
  // The decoded depth indices of a step (kDepthTable problems only; unused, and so not allocated,
  // otherwise). Two buffers: the first step's loads read one while the loop's first staging
  // writes the second step's into the other.
  __shared__ DepthIndex depth_table[2][kDepth];
  static_assert(sizeof(a0_s) + sizeof(a1_s) + sizeof(b0_s) + sizeof(b1_s) +
                        (Problem::kDepthTable ? sizeof(depth_table) : 0) <= 48 * 1024,
                "static shared memory of a block is limited to 48 KB");

  if (p.out.skipped()) return;  // the whole block leaves: no barrier is reached
  const TileShape& s = p.shape;
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % kThreadsPerRow;
  const int ty = tid / kThreadsPerRow;
  index_t block = blockIdx.x;
  const index_t col_tile = block % s.col_tiles;
  block /= s.col_tiles;
  const index_t row_tile = block % s.row_tiles;
  const int g = static_cast<int>(block / s.row_tiles);
  const int split = static_cast<int>(blockIdx.y);
  const index_t r0 = row_tile * kRows;
  const index_t c0 = col_tile * kCols;
  const typename Problem::Context ctx = p.context(g);
  const index_t cols = p.cols(ctx);  // <= s.cols
  const index_t depth = p.depth(ctx);  // <= s.depth
  const index_t t_begin = split * s.chunk;
  const index_t t_end = t_begin + s.chunk < depth ? t_begin + s.chunk : depth;

  Acc acc0[kThreadRows][kThreadCols], acc1[kThreadRows][kThreadCols];
  Acc own0[kThreadRows][kThreadCols], own1[kThreadRows][kThreadCols];
#pragma unroll
  for (int i = 0; i < kThreadRows; ++i) {
#pragma unroll
    for (int j = 0; j < kThreadCols; ++j) {
      acc0[i][j] = acc1[i][j] = own0[i][j] = own1[i][j] = Acc(0);
      if constexpr (Problem::kKind != TermKind::kForward) {
        const index_t r = r0 + ty + i * kThreadsPerCol, c = c0 + tx + j * kThreadsPerRow;
        if (r < s.rows && c < cols) p.load_own(ctx, r, c, own0[i][j], own1[i][j]);
      }
    }
  }

  // Cursors of the rows (columns) this thread stages; outside the output they are never read.
  typename Problem::ACursor a_cursor[ALayout::kCursors];
  typename Problem::BCursor b_cursor[BLayout::kCursors];
  bool a_inside[ALayout::kCursors], b_inside[BLayout::kCursors];
#pragma unroll
  for (int c = 0; c < ALayout::kCursors; ++c) {
    const index_t r = r0 + ALayout::row(tid, c);
    a_inside[c] = ALayout::exists(tid, c) && r < s.rows;
    a_cursor[c] = p.a_cursor(ctx, a_inside[c] ? r : r0);
  }
#pragma unroll
  for (int c = 0; c < BLayout::kCursors; ++c) {
    const index_t col = c0 + BLayout::row(tid, c);
    b_inside[c] = BLayout::exists(tid, c) && col < cols;
    b_cursor[c] = p.b_cursor(ctx, b_inside[c] ? col : c0);
  }

  // Decodes the depth indices of the step at t0 into depth_table[buffer] (kDepthTable problems).
  const auto decode_step = [&](index_t t0, int buffer) {
    if constexpr (Problem::kDepthTable) {
      if (tid < kDepth && t0 + tid < t_end) {
        copy_words(depth_table[buffer][tid], p.depth_index(ctx, t0 + tid));
      }
    }
  };
  // Depth index d of the step at t0, which decode_step wrote to `buffer` before a barrier.
  const auto depth_index = [&](index_t t0, int d, int buffer) -> DepthIndex {
    if constexpr (Problem::kDepthTable) {
      DepthIndex entry;
      copy_words(entry, depth_table[buffer][d]);
      return entry;
    } else {
      return p.depth_index(ctx, t0 + d);
    }
  };

  // The next depth step's elements, loaded into registers while the current one is computed.
  // Outside the output or the depth slice they are zero: rows (columns) outside the output are
  // computed and discarded, and a zero term cannot make a NaN there; depth indices past the slice
  // are not computed at all.
  Acc a_next0[ALayout::kLoads], a_next1[ALayout::kLoads];
  Acc b_next0[BLayout::kLoads], b_next1[BLayout::kLoads];
  const auto fetch = [&](index_t t0, int buffer) {
#pragma unroll
    for (int e = 0; e < ALayout::kLoads; ++e) {
      const int d = ALayout::depth(tid, e);
      a_next0[e] = a_next1[e] = Acc(0);
      if (a_inside[ALayout::cursor(e)] && ALayout::exists(tid, e) && t0 + d < t_end) {
        p.load_a(ctx, a_cursor[ALayout::cursor(e)], depth_index(t0, d, buffer), a_next0[e],
                 a_next1[e]);
      }
    }
#pragma unroll
    for (int e = 0; e < BLayout::kLoads; ++e) {
      const int d = BLayout::depth(tid, e);
      b_next0[e] = b_next1[e] = Acc(0);
      if (b_inside[BLayout::cursor(e)] && BLayout::exists(tid, e) && t0 + d < t_end) {
        p.load_b(ctx, b_cursor[BLayout::cursor(e)], depth_index(t0, d, buffer), b_next0[e],
                 b_next1[e]);
      }
    }
  };

  if (t_begin < t_end) {  // the same for the whole block, so every thread meets the barrier
    decode_step(t_begin, 0);
    if constexpr (Problem::kDepthTable) __syncthreads();
    fetch(t_begin, 0);
  }
  int buffer = 0;  // the depth table of the step at t0
  for (index_t t0 = t_begin; t0 < t_end; t0 += kDepth, buffer ^= 1) {
#pragma unroll
    for (int e = 0; e < ALayout::kLoads; ++e) {
      if (ALayout::exists(tid, e)) {
        a0_s[ALayout::depth(tid, e)][ALayout::row(tid, e)] = a_next0[e];
        a1_s[ALayout::depth(tid, e)][ALayout::row(tid, e)] = a_next1[e];
      }
    }
#pragma unroll
    for (int e = 0; e < BLayout::kLoads; ++e) {
      if (BLayout::exists(tid, e)) {
        b0_s[BLayout::depth(tid, e)][BLayout::row(tid, e)] = b_next0[e];
        b1_s[BLayout::depth(tid, e)][BLayout::row(tid, e)] = b_next1[e];
      }
    }
    const index_t t_next = t0 + kDepth;
    if (t_next < t_end) decode_step(t_next, buffer ^ 1);
    __syncthreads();
    if (t_next < t_end) fetch(t_next, buffer ^ 1);
    // The terms of this step that exist: kDepth, except in the slice's last step.
    const int terms = t_end - t0 < kDepth ? static_cast<int>(t_end - t0) : kDepth;
#pragma unroll 4
    for (int tt = 0; tt < terms; ++tt) {
      Acc a0[kThreadRows], a1[kThreadRows], b0[kThreadCols], b1[kThreadCols];
#pragma unroll
      for (int i = 0; i < kThreadRows; ++i) {
        a0[i] = a0_s[tt][ty + i * kThreadsPerCol];
        a1[i] = a1_s[tt][ty + i * kThreadsPerCol];
      }
#pragma unroll
      for (int j = 0; j < kThreadCols; ++j) {
        b0[j] = b0_s[tt][tx + j * kThreadsPerRow];
        b1[j] = b1_s[tt][tx + j * kThreadsPerRow];
      }
#pragma unroll
      for (int i = 0; i < kThreadRows; ++i) {
#pragma unroll
        for (int j = 0; j < kThreadCols; ++j) {
          if constexpr (Problem::kAFirst) {
            accumulate_term<Problem::kKind, kNonneg>(a0[i], a1[i], b0[j], b1[j], own0[i][j],
                                                     own1[i][j], acc0[i][j], acc1[i][j]);
          } else {
            accumulate_term<Problem::kKind, kNonneg>(b0[j], b1[j], a0[i], a1[i], own0[i][j],
                                                     own1[i][j], acc0[i][j], acc1[i][j]);
          }
        }
      }
    }
    __syncthreads();  // the tiles are overwritten next step
  }

#pragma unroll
  for (int i = 0; i < kThreadRows; ++i) {
#pragma unroll
    for (int j = 0; j < kThreadCols; ++j) {
      const index_t r = r0 + ty + i * kThreadsPerCol, c = c0 + tx + j * kThreadsPerRow;
      if (r < s.rows && c < cols) {
        p.out.store(split, s.splits, p.out_index(ctx, r, c), acc0[i][j], acc1[i][j]);
      }
    }
  }
}

// Sums the depth slices of a split problem and runs the epilogue (grid-stride over elements).
template <typename T>
__global__ void __launch_bounds__(kTileThreads) split_reduce_kernel(const TileOutput<T> out,
                                                                     int splits) {
  using Acc = acc_t<T>;
  if (out.skipped()) return;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < out.numel;
       i += stride) {
    Acc v0 = Acc(0), v1 = Acc(0);
    for (int split = 0; split < splits; ++split) {
      v0 += out.split_lo[split * out.numel + i];
      v1 += out.split_hi[split * out.numel + i];
    }
    out.finish(i, v0, v1);
  }
}

}  // namespace inn::kernels
