// Which ops each compiled backend implements, for `inn-cuda info` and for the Python layer, which
// registers the reference implementation (loudly) wherever a kernel is missing.
#pragma once

#include <initializer_list>
#include <map>
#include <string>
#include <vector>

namespace inn {

std::map<std::string, std::vector<std::string>>& backend_ops();

// Construct one static instance per backend translation unit, next to its TORCH_LIBRARY_IMPL.
struct BackendOps {
  BackendOps(const char* backend, std::initializer_list<const char*> ops) {
    auto& list = backend_ops()[backend];
    for (const char* op : ops) list.emplace_back(op);
  }
};

}  // namespace inn
