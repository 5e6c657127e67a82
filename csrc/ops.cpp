// The op schemas (declared once, here) and the extension module `inn_cuda._C`.
//
// Backends implement the ops in their own translation units with TORCH_LIBRARY_IMPL. The same
// schema strings are repeated in inn_cuda/_backend.py for builds without this extension;
// python_tests/test_schemas.py checks that both agree, and that every op has its fake (meta)
// function in inn_cuda/ops.py. Ops whose names start with "_" are private (tests, benchmarks).
#include <Python.h>
#include <torch/library.h>

#include <sstream>
#include <stdexcept>
#include <string>

#include "backend_registry.h"
#include "cpu/cpu_isa.h"
#include "library/algorithm.h"
#include "inn_build_config.h"
#include "op_checks.h"


namespace inn {

std::map<std::string, std::vector<std::string>>& backend_ops() {
  static std::map<std::string, std::vector<std::string>> ops;
  return ops;
}

namespace {

std::string json_string(const std::string& s) { return "\"" + s + "\""; }

// A small JSON document; parsed by inn_cuda._backend.
std::string build_info() {
  std::ostringstream out;
  out << "{\"version\": " << json_string(INN_CUDA_VERSION)
      << ", \"torch_version\": " << json_string(INN_TORCH_VERSION)
      << ", \"cuda_toolkit\": " << json_string(INN_CUDA_TOOLKIT)
      << ", \"cuda_archs\": " << json_string(INN_CUDA_ARCHS)
      << ", \"cpu_isa\": " << json_string(cpu::active_isa()) << ", \"cpu_isas\": [";
  const std::vector<std::string> isas = cpu::supported_isas();
  for (size_t i = 0; i < isas.size(); ++i) out << (i ? ", " : "") << json_string(isas[i]);
  out << "], \"compiler\": " << json_string(__VERSION__) << ", \"kernels\": {";
  bool first_backend = true;
  for (const auto& [backend, ops] : backend_ops()) {
    out << (first_backend ? "" : ", ") << json_string(backend) << ": [";
    for (size_t i = 0; i < ops.size(); ++i) out << (i ? ", " : "") << json_string(ops[i]);
    out << "]";
    first_backend = false;
  }
  out << "}}";
  return out.str();
}

}  // namespace
}  // namespace inn

namespace inn {
namespace {

// The argument lists of the ops, each declared twice: the op itself, returning (lo, hi), and
// `_check_<op>`, returning nothing: the op's argument checks alone (op_checks.h), which the
// reference fallback runs first so that it accepts and refuses exactly what the kernels do.
constexpr const char* kLinear =
    "(Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, Tensor? b_lo, Tensor? b_hi, "
    "bool input_nonneg)";
constexpr const char* kLinearBackward =
    "(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, "
    "bool input_nonneg)";
constexpr const char* kConv2d =
    "(Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, Tensor? b_lo, Tensor? b_hi, "
    "int[2] stride, int[2] padding, int[2] dilation, int groups, bool input_nonneg)";
constexpr const char* kConv2dBackward =
    "(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, "
    "int[2] stride, int[2] padding, int[2] dilation, int groups, bool input_nonneg)";
constexpr const char* kConvTranspose2d =
    "(Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, Tensor? b_lo, Tensor? b_hi, "
    "int[2] stride, int[2] padding, int[2] output_padding, int groups, int[2] dilation, "
    "bool input_nonneg)";
constexpr const char* kConvTranspose2dBackward =
    "(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, "
    "int[2] stride, int[2] padding, int[2] output_padding, int groups, int[2] dilation, "
    "bool input_nonneg)";

// The `*_backward_weight_point` ops: the total weight gradient of a point weight w (w_lo and w_hi
// one tensor), returned as one tensor (csrc/library/library_path.h, weight_grad_point).
constexpr const char* kLinearBackwardPoint =
    "(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, Tensor w, bool input_nonneg)";
constexpr const char* kConv2dBackwardPoint =
    "(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, Tensor w, int[2] stride, "
    "int[2] padding, int[2] dilation, int groups, bool input_nonneg)";
constexpr const char* kConvTranspose2dBackwardPoint =
    "(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, Tensor w, int[2] stride, "
    "int[2] padding, int[2] output_padding, int groups, int[2] dilation, bool input_nonneg)";

using T = const at::Tensor&;
using OptT = const std::optional<at::Tensor>&;
using Ints = at::IntArrayRef;

void check_linear_op(T x_lo, T x_hi, T w_lo, T w_hi, OptT b_lo, OptT b_hi, bool) {
  check_linear("interval_linear", x_lo, x_hi, w_lo, w_hi, b_lo, b_hi);
}

template <bool kWeight>
void check_linear_backward_op(T g_lo, T g_hi, T x_lo, T x_hi, T w_lo, T w_hi, bool) {
  check_linear_backward(
      kWeight ? "interval_linear_backward_weight" : "interval_linear_backward_input", g_lo, g_hi,
      x_lo, x_hi, w_lo, w_hi);
}

void check_conv2d_op(T x_lo, T x_hi, T w_lo, T w_hi, OptT b_lo, OptT b_hi, Ints stride,
                     Ints padding, Ints dilation, int64_t groups, bool) {
  check_conv2d("interval_conv2d", x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding, dilation,
               groups);
}

template <bool kWeight>
void check_conv2d_backward_op(T g_lo, T g_hi, T x_lo, T x_hi, T w_lo, T w_hi, Ints stride,
                              Ints padding, Ints dilation, int64_t groups, bool) {
  check_conv2d_backward(
      kWeight ? "interval_conv2d_backward_weight" : "interval_conv2d_backward_input", g_lo, g_hi,
      x_lo, x_hi, w_lo, w_hi, stride, padding, dilation, groups);
}

void check_conv_transpose2d_op(T x_lo, T x_hi, T w_lo, T w_hi, OptT b_lo, OptT b_hi,
                               Ints stride, Ints padding, Ints output_padding, int64_t groups,
                               Ints dilation, bool) {
  check_conv_transpose2d("interval_conv_transpose2d", x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride,
                         padding, output_padding, groups, dilation);
}

template <bool kWeight>
void check_conv_transpose2d_backward_op(T g_lo, T g_hi, T x_lo, T x_hi, T w_lo, T w_hi,
                                        Ints stride, Ints padding, Ints output_padding,
                                        int64_t groups, Ints dilation, bool) {
  check_conv_transpose2d_backward(kWeight ? "interval_conv_transpose2d_backward_weight"
                                          : "interval_conv_transpose2d_backward_input",
                                  g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, stride, padding,
                                  output_padding, groups, dilation);
}

// The point ops check what the backward ops check, with w as both weight bounds.
void check_linear_backward_point_op(T g_lo, T g_hi, T x_lo, T x_hi, T w, bool) {
  check_linear_backward(kLinearPointChecks, g_lo, g_hi, x_lo, x_hi, w, w);
}

void check_conv2d_backward_point_op(T g_lo, T g_hi, T x_lo, T x_hi, T w, Ints stride,
                                    Ints padding, Ints dilation, int64_t groups, bool) {
  check_conv2d_backward(kConv2dPointChecks, g_lo, g_hi, x_lo, x_hi, w, w,
                        stride, padding, dilation, groups);
}

void check_conv_transpose2d_backward_point_op(T g_lo, T g_hi, T x_lo, T x_hi, T w, Ints stride,
                                              Ints padding, Ints output_padding, int64_t groups,
                                              Ints dilation, bool) {
  check_conv_transpose2d_backward(kConvTranspose2dPointChecks, g_lo, g_hi,
                                  x_lo, x_hi, w, w, stride, padding, output_padding, groups,
                                  dilation);
}

// Declares `name` (returning `returns`) and `_check_name` with the argument list `args`.
template <typename Check>
void define(torch::Library& m, const std::string& name, const char* args, Check check,
            const char* returns = "(Tensor, Tensor)") {
  m.def((name + args + " -> " + returns).c_str());
  m.def(("_check_" + name + args + " -> ()").c_str(), check);
}

}  // namespace
}  // namespace inn

TORCH_LIBRARY(inn_cuda, m) {
  using namespace inn;
  define(m, "interval_linear", kLinear, &check_linear_op);
  define(m, "interval_linear_backward_input", kLinearBackward,
         &check_linear_backward_op<false>);
  define(m, "interval_linear_backward_weight", kLinearBackward,
         &check_linear_backward_op<true>);
  define(m, "interval_linear_backward_weight_point", kLinearBackwardPoint,
         &check_linear_backward_point_op, "Tensor");
  define(m, "interval_conv2d", kConv2d, &check_conv2d_op);
  define(m, "interval_conv2d_backward_input", kConv2dBackward, &check_conv2d_backward_op<false>);
  define(m, "interval_conv2d_backward_weight", kConv2dBackward, &check_conv2d_backward_op<true>);
  define(m, "interval_conv2d_backward_weight_point", kConv2dBackwardPoint,
         &check_conv2d_backward_point_op, "Tensor");
  define(m, "interval_conv_transpose2d", kConvTranspose2d, &check_conv_transpose2d_op);
  define(m, "interval_conv_transpose2d_backward_input", kConvTranspose2dBackward,
         &check_conv_transpose2d_backward_op<false>);
  define(m, "interval_conv_transpose2d_backward_weight", kConvTranspose2dBackward,
         &check_conv_transpose2d_backward_op<true>);
  define(m, "interval_conv_transpose2d_backward_weight_point", kConvTranspose2dBackwardPoint,
         &check_conv_transpose2d_backward_point_op, "Tensor");
  m.def("build_info() -> str", &inn::build_info);
  // Private: routes the CPU kernels to an instruction set (see csrc/cpu/cpu_isa.h), returns its
  // name. Used through inn_cuda._backend.set_cpu_isa by the tests.
  m.def("_set_cpu_isa(str isa) -> str", &inn::cpu::set_isa);
}

// The fused-or-library setting (csrc/library/algorithm.h), wrapped by inn_cuda._backend. Plain
// module functions, not ops: they configure the ops and are never traced.
namespace {

PyObject* py_set_algorithm(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  try {
    inn::library::set_algorithm(name);
  } catch (const std::invalid_argument& error) {
    PyErr_SetString(PyExc_ValueError, error.what());
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* py_algorithm(PyObject*, PyObject*) {
  return PyUnicode_FromString(inn::library::algorithm_name().c_str());
}

PyObject* py_path_counts(PyObject*, PyObject*) {
  return PyUnicode_FromString(inn::library::path_counts_json().c_str());
}

PyObject* py_reset_path_counts(PyObject*, PyObject*) {
  inn::library::reset_path_counts();
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"set_algorithm", py_set_algorithm, METH_O, "Set 'auto', 'fused' or 'library'."},
    {"algorithm", py_algorithm, METH_NOARGS, "The current algorithm setting."},
    {"path_counts", py_path_counts, METH_NOARGS, "JSON: calls per op served by each path."},
    {"reset_path_counts", py_reset_path_counts, METH_NOARGS, "Zero the path counts."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

// An importable module whose loading runs the registrations above and in the backend files.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "inn_cuda compiled kernels", -1,
                               methods};
  return PyModule_Create(&module);
}
