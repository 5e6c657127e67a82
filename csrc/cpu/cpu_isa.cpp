// The run-time choice of the CPU kernels' instruction set (cpu_isa.h): what the CPU supports, the
// INN_CUDA_CPU_ISA environment variable (read on first use, so the whole process can be forced
// onto one path), and set_isa (so tests can cover every path in one process).
#include "cpu_isa.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>

#include "gemm_isa.h"

namespace inn::cpu {
namespace {

struct IsaChoice {
  const char* name;
  const IsaTable* table;
  bool supported;
  const char* needs;
};

bool cpu_has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("fma");
}

bool cpu_has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

// Widest first.
const std::vector<IsaChoice>& choices() {
  static const std::vector<IsaChoice> all = {
      {"avx512", &kAvx512Kernels, cpu_has_avx512(), "AVX-512 F/VL/DQ/BW and FMA"},
      {"avx2", &kAvx2Kernels, cpu_has_avx2(), "AVX2 and FMA"},
      {"scalar", &kScalarKernels, true, ""},
  };
  return all;
}

// The table called `name`, checked against the CPU; `what` names the setting, for the errors.
const IsaTable& table_named(const std::string& name, const char* what) {
  for (const IsaChoice& c : choices()) {
    if (name == c.name) {
      TORCH_CHECK(c.supported, what, "=", name, " asks for the ", c.name,
                  " kernels, but this CPU lacks ", c.needs);
      return *c.table;
    }
  }
  TORCH_CHECK(false, what, " must be avx512, avx2 or scalar, got '", name, "'");
}

const IsaTable& default_table() {
  const char* forced = std::getenv("INN_CUDA_CPU_ISA");
  if (forced != nullptr && *forced != '\0') return table_named(forced, "INN_CUDA_CPU_ISA");
  for (const IsaChoice& c : choices()) {
    if (c.supported) return *c.table;
  }
  return kScalarKernels;
}

std::atomic<const IsaTable*> active{nullptr};

}  // namespace

const IsaTable& active_table() {
  const IsaTable* table = active.load(std::memory_order_acquire);
  if (table == nullptr) {
    const IsaTable* chosen = &default_table();
    active.compare_exchange_strong(table, chosen, std::memory_order_acq_rel);
    table = active.load(std::memory_order_acquire);
  }
  return *table;
}

const char* active_isa() { return active_table().name; }

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const IsaChoice& c : choices()) {
    if (c.supported) names.push_back(c.name);
  }
  return names;
}

std::string set_isa(const std::string& isa) {
  const IsaTable& table =
      isa == "default" ? default_table() : table_named(isa, "_set_cpu_isa: isa (or 'default')");
  active.store(&table, std::memory_order_release);
  return table.name;
}

}  // namespace inn::cpu
