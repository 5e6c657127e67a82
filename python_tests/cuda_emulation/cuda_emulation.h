// Just enough of CUDA for g++ to compile the kernel templates of csrc/kernels/ as host code and
// run a launch on the CPU, so their logic can be tested on machines without a GPU.
//
// A launch runs its blocks one after another. Each thread of a block is a std::thread (one team,
// kept between launches, runs every block); __syncthreads is a std::barrier over the team, and
// __shared__ variables are `static`: one instance per kernel instantiation, which is exactly
// per-block shared memory when blocks do not overlap. After every block the team checks that all
// its threads passed the same number of barriers (a thread that skips a __syncthreads deadlocks or
// corrupts shared memory on a GPU). Threads really run concurrently, so a missing barrier between
// writing and reading shared memory usually shows up as wrong results (not always: the OS decides
// the interleaving).
//
// Not emulated: warp-level intrinsics, atomics, cp.async, tensor cores, memory fences beyond the
// barrier, concurrent blocks (races between blocks), register/shared-memory limits, and
// device-specific rounding (no FMA contraction at -O1 without -mfma; a GPU contracts a * b + c).
#pragma once

#include <barrier>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#ifdef INN_KERNELS_HALF_TYPES
// CUDA's own fp16/bf16 headers compile with a host compiler; they bring dim3 (vector_types.h) and
// define the execution-space keywords away, except __shared__, redefined below.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#else
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
#endif

#undef __shared__
#define __shared__ static
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

namespace emu {

inline std::barrier<>* block_barrier = nullptr;
inline thread_local long long barriers_passed = 0;
// The first problem a launch found (empty: none).
inline std::string launch_error;

// Threads that stay alive between launches (creating 256 threads per launch dominated the run
// time); run(n, job) calls job(t) on threads t = 0..n-1 and returns when all have finished.
class ThreadTeam {
 public:
  ~ThreadTeam() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    start_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }

  void run(unsigned n, const std::function<void(unsigned)>& job) {
    while (threads_.size() < n) {
      const unsigned t = static_cast<unsigned>(threads_.size());
      threads_.emplace_back([this, t] { work(t); });
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      active_ = n;
      remaining_ = n;
      ++generation_;
    }
    start_.notify_all();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return remaining_ == 0; });
  }

 private:
  void work(unsigned t) {
    unsigned long long seen = 0;
    for (;;) {
      const std::function<void(unsigned)>* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        start_.wait(lock, [&] { return stop_ || (generation_ != seen && t < active_); });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(t);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--remaining_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  const std::function<void(unsigned)>* job_ = nullptr;
  unsigned active_ = 0, remaining_ = 0;
  unsigned long long generation_ = 0;
  bool stop_ = false;
};

inline ThreadTeam team;

// Runs `body` (a call of the kernel with its arguments) for every thread of every block.
template <typename Body>
void launch(dim3 grid, dim3 block, const Body& body) {
  const unsigned threads = block.x * block.y * block.z;
  gridDim = grid;
  blockDim = block;
  std::barrier<> barrier(threads);
  block_barrier = &barrier;
  std::vector<long long> passed(threads);
  const std::function<void(unsigned)> run = [&](unsigned t) {
    threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
    for (unsigned z = 0; z < grid.z; ++z) {
      for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          blockIdx = dim3(x, y, z);
          barriers_passed = 0;
          body();
          passed[t] = barriers_passed;
          barrier.arrive_and_wait();  // the block is done: shared memory may be reused
          if (t == 0) {
            for (unsigned u = 1; u < threads; ++u) {
              if (passed[u] != passed[0] && launch_error.empty()) {
                launch_error = "block (" + std::to_string(x) + ", " + std::to_string(y) + ", " +
                               std::to_string(z) + "): thread " + std::to_string(u) + " passed " +
                               std::to_string(passed[u]) + " __syncthreads, thread 0 passed " +
                               std::to_string(passed[0]);
              }
            }
          }
          barrier.arrive_and_wait();
        }
      }
    }
  };
  team.run(threads, run);
  block_barrier = nullptr;
}

}  // namespace emu

inline void __syncthreads() {
  ++emu::barriers_passed;
  emu::block_barrier->arrive_and_wait();
}
