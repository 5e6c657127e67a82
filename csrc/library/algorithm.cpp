#include "algorithm.h"

#include <atomic>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace inn::library {
namespace {

std::atomic<int> g_algorithm{static_cast<int>(Algorithm::kAuto)};

struct Counts {
  long long fused = 0, library = 0;
};

std::mutex& counts_mutex() {
  static std::mutex m;
  return m;
}

std::map<std::string, Counts>& counts() {
  static std::map<std::string, Counts> c;
  return c;
}

}  // namespace

void set_algorithm(const std::string& name) {
  Algorithm a;
  if (name == "auto") {
    a = Algorithm::kAuto;
  } else if (name == "fused") {
    a = Algorithm::kFused;
  } else if (name == "library") {
    a = Algorithm::kLibrary;
  } else {
    throw std::invalid_argument("algorithm must be 'auto', 'fused' or 'library', got '" + name +
                                "'");
  }
  g_algorithm.store(static_cast<int>(a), std::memory_order_relaxed);
}

Algorithm algorithm() { return static_cast<Algorithm>(g_algorithm.load(std::memory_order_relaxed)); }

std::string algorithm_name() {
  switch (algorithm()) {
    case Algorithm::kFused: return "fused";
    case Algorithm::kLibrary: return "library";
    default: return "auto";
  }
}

void record(const char* op, bool library) {
  const std::lock_guard<std::mutex> lock(counts_mutex());
  Counts& c = counts()[op];
  (library ? c.library : c.fused) += 1;
}

std::string path_counts_json() {
  const std::lock_guard<std::mutex> lock(counts_mutex());
  std::ostringstream out;
  out << "{";
  bool first = true;
  for (const auto& [op, c] : counts()) {
    out << (first ? "" : ", ") << "\"" << op << "\": {\"fused\": " << c.fused
        << ", \"library\": " << c.library << "}";
    first = false;
  }
  out << "}";
  return out.str();
}

void reset_path_counts() {
  const std::lock_guard<std::mutex> lock(counts_mutex());
  counts().clear();
}

}  // namespace inn::library
