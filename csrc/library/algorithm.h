// Which implementation serves an interval op call: the fused interval kernel of the backend
// (csrc/cpu, csrc/cuda) or the library path (library_path.h: ATen GEMM/convolution, i.e.
// cuBLAS/cuDNN on CUDA). The choice is made inside the registered op, so direct
// `torch.ops.inn_cuda.*` calls, torch.compile and opcheck see the same dispatch.
#pragma once

#include <string>

namespace inn::library {

enum class Algorithm { kAuto = 0, kFused = 1, kLibrary = 2 };

// Process-wide setting (inn_cuda.set_algorithm / INN_CUDA_ALGORITHM). Throws std::invalid_argument
// for an unknown name.
void set_algorithm(const std::string& name);
std::string algorithm_name();
Algorithm algorithm();

// Counts of calls served by each path, per op (for `inn-cuda info` / `inn-cuda bench` and the
// tests): a small JSON object {"op": {"fused": n, "library": m}, ...}.
void record(const char* op, bool library);
std::string path_counts_json();
void reset_path_counts();

}  // namespace inn::library
