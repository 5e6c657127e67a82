// The one tiled kernel behind every op: a (rows x cols) output per group, each element a sum over
// `depth` terms of two streamed interval operands A (indexed by row) and B (indexed by column),
// plus, for gradients, the element's own operand. Linear layers and convolutions differ only in the
// Problem, which maps (group, row/col, depth index) to memory (linear_problems.cuh,
// conv_problems.cuh).
//
// A block computes a kTileRows x kTileCols tile of BOTH accumulators: per depth step of
// kTileDepth it stages the A and B tiles (both bounds, converted to the accumulator type) in shared
// memory, then each thread updates its kThreadRows x kThreadCols register tile; the global loads
// of the next step are issued before that compute (register prefetch), so their latency overlaps
// it. Thread (ty, tx)
// owns rows ty + 16 i and columns tx + 16 j, so a warp reads A tiles as broadcasts, B tiles without
// bank conflicts, and stores 16 consecutive columns. Split-K: blockIdx.y selects a slice of the
// depth; with more than one slice the partial sums go to a workspace that split_reduce_kernel sums
// (deterministically, no atomics) before the epilogue.
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
//   ACursor a_cursor(ctx, index_t row); void load_a(ctx, const ACursor&, index_t t, Acc&, Acc&);
//   BCursor b_cursor(ctx, index_t col); void load_b(ctx, const BCursor&, index_t t, Acc&, Acc&);
//   void load_own(ctx, index_t row, index_t col, Acc&, Acc&) (gradients only);
//   index_t out_index(ctx, index_t row, index_t col).
// TileProblem below provides the usual Context (the group index) and extents (the shape's). A
// context holds what a block's group needs (ConvBigOut: its stride phase, whose columns and depth
// are smaller); a cursor what a row (column) needs to find its operand elements. Both are decoded
// once per block, so the loads in the depth loop do little index arithmetic.
#pragma once

#include "interval_terms.cuh"

namespace inn::kernels {

constexpr int kTileRows = 64;
constexpr int kTileCols = 64;
constexpr int kTileDepth = 16;
constexpr int kThreadRows = 4;
constexpr int kThreadCols = 4;
constexpr int kThreadsPerRow = kTileCols / kThreadCols;  // 16
constexpr int kThreadsPerCol = kTileRows / kThreadRows;  // 16
constexpr int kTileThreads = kThreadsPerRow * kThreadsPerCol;  // 256
static_assert(kTileRows * kTileDepth % kTileThreads == 0, "A tile loads evenly");
static_assert(kTileCols * kTileDepth % kTileThreads == 0, "B tile loads evenly");

// The grid of a tile problem: blockIdx.x = (group, row tile, column tile), blockIdx.y = depth
// slice.
struct TileShape {
  index_t rows = 0, cols = 0, depth = 0;  // per group
  int groups = 1;
  index_t row_tiles = 0, col_tiles = 0;
  int splits = 1;    // depth slices
  index_t chunk = 0; // depth per slice, a multiple of kTileDepth
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

// What most problems share: the group index as the block's context, and the shape's extents.
template <typename Elem>
struct TileProblem {
  using T = Elem;
  using Acc = acc_t<T>;
  using Context = int;
  TileShape shape;
  TileOutput<T> out;

  INN_HD Context context(int g) const { return g; }
  INN_HD index_t cols(Context) const { return shape.cols; }
  INN_HD index_t depth(Context) const { return shape.depth; }
};

// Which elements of a [kTileDepth][kExtent] operand tile thread `tid` loads: kLoads of them, e.
// Along the depth, consecutive threads take consecutive depth indices and a thread's elements lie
// in kLoads different rows; otherwise consecutive threads take consecutive rows and a thread keeps
// one row, so it needs a single cursor.
template <int kExtent, bool kAlongDepth>
struct StageLayout {
  static constexpr int kLoads = kExtent * kTileDepth / kTileThreads;
  static constexpr int kCursors = kAlongDepth ? kLoads : 1;
  static_assert(kTileThreads % kExtent == 0 && kTileThreads % kTileDepth == 0,
                "a thread's elements keep their depth (along the depth) or row (otherwise)");
  static INN_HD int depth(int tid, int e) {
    return kAlongDepth ? tid % kTileDepth : tid / kExtent + e * (kTileThreads / kExtent);
  }
  static INN_HD int row(int tid, int e) {
    return kAlongDepth ? tid / kTileDepth + e * (kTileThreads / kTileDepth) : tid % kExtent;
  }
  static INN_HD int cursor(int e) { return kAlongDepth ? e : 0; }
};

template <typename Problem, bool kNonneg>
__global__ void __launch_bounds__(kTileThreads) interval_tile_kernel(const Problem p) {
  using Acc = typename Problem::Acc;
  using ALayout = StageLayout<kTileRows, Problem::kALoadsAlongDepth>;
  using BLayout = StageLayout<kTileCols, Problem::kBLoadsAlongDepth>;
  // +1 column: a depth-major store of consecutive depth indices does not hit one bank.
  __shared__ Acc a0_s[kTileDepth][kTileRows + 1];
  __shared__ Acc a1_s[kTileDepth][kTileRows + 1];
  __shared__ Acc b0_s[kTileDepth][kTileCols + 1];
  __shared__ Acc b1_s[kTileDepth][kTileCols + 1];

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
  const index_t r0 = row_tile * kTileRows;
  const index_t c0 = col_tile * kTileCols;
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
    a_inside[c] = r < s.rows;
    a_cursor[c] = p.a_cursor(ctx, a_inside[c] ? r : r0);
  }
#pragma unroll
  for (int c = 0; c < BLayout::kCursors; ++c) {
    const index_t col = c0 + BLayout::row(tid, c);
    b_inside[c] = col < cols;
    b_cursor[c] = p.b_cursor(ctx, b_inside[c] ? col : c0);
  }

  // The next depth step's elements, loaded into registers while the current one is computed.
  // Outside the output or the depth slice they are zero (a zero term adds nothing, and 0 * 0
  // cannot make a NaN).
  Acc a_next0[ALayout::kLoads], a_next1[ALayout::kLoads];
  Acc b_next0[BLayout::kLoads], b_next1[BLayout::kLoads];
  const auto fetch = [&](index_t t0) {
#pragma unroll
    for (int e = 0; e < ALayout::kLoads; ++e) {
      const index_t t = t0 + ALayout::depth(tid, e);
      a_next0[e] = a_next1[e] = Acc(0);
      if (a_inside[ALayout::cursor(e)] && t < t_end) {
        p.load_a(ctx, a_cursor[ALayout::cursor(e)], t, a_next0[e], a_next1[e]);
      }
    }
#pragma unroll
    for (int e = 0; e < BLayout::kLoads; ++e) {
      const index_t t = t0 + BLayout::depth(tid, e);
      b_next0[e] = b_next1[e] = Acc(0);
      if (b_inside[BLayout::cursor(e)] && t < t_end) {
        p.load_b(ctx, b_cursor[BLayout::cursor(e)], t, b_next0[e], b_next1[e]);
      }
    }
  };

  if (t_begin < t_end) fetch(t_begin);
  for (index_t t0 = t_begin; t0 < t_end; t0 += kTileDepth) {
#pragma unroll
    for (int e = 0; e < ALayout::kLoads; ++e) {
      a0_s[ALayout::depth(tid, e)][ALayout::row(tid, e)] = a_next0[e];
      a1_s[ALayout::depth(tid, e)][ALayout::row(tid, e)] = a_next1[e];
    }
#pragma unroll
    for (int e = 0; e < BLayout::kLoads; ++e) {
      b0_s[BLayout::depth(tid, e)][BLayout::row(tid, e)] = b_next0[e];
      b1_s[BLayout::depth(tid, e)][BLayout::row(tid, e)] = b_next1[e];
    }
    __syncthreads();
    if (t0 + kTileDepth < t_end) fetch(t0 + kTileDepth);
#pragma unroll 4
    for (int tt = 0; tt < kTileDepth; ++tt) {
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
