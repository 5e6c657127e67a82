// The op schemas (declared once, here) and the extension module `inn_cuda._C`.
//
// Backends implement the ops in their own translation units with TORCH_LIBRARY_IMPL. The same
// schema strings are repeated in inn_cuda/_backend.py for builds without this extension; a test
// checks that both agree.
#include <Python.h>
#include <torch/library.h>

#include <sstream>
#include <stdexcept>
#include <string>

#include "backend_registry.h"
#include "cpu/cpu_isa.h"
#include "library/algorithm.h"
#include "inn_build_config.h"


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
      << ", \"cpu_isa\": " << json_string(cpu::active_isa())
      << ", \"compiler\": " << json_string(__VERSION__) << ", \"kernels\": {";
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

TORCH_LIBRARY(inn_cuda, m) {
  m.def(
      "interval_linear(Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, Tensor? b_lo, "
      "Tensor? b_hi, bool input_nonneg) -> (Tensor, Tensor)");
  m.def(
      "interval_linear_backward_input(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, "
      "Tensor w_lo, Tensor w_hi, bool input_nonneg) -> (Tensor, Tensor)");
  m.def(
      "interval_linear_backward_weight(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, "
      "Tensor w_lo, Tensor w_hi, bool input_nonneg) -> (Tensor, Tensor)");
  m.def(
      "interval_conv2d(Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, Tensor? b_lo, "
      "Tensor? b_hi, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "bool input_nonneg) -> (Tensor, Tensor)");
  m.def(
      "interval_conv2d_backward_input(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, "
      "Tensor w_lo, Tensor w_hi, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "bool input_nonneg) -> (Tensor, Tensor)");
  m.def(
      "interval_conv2d_backward_weight(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, "
      "Tensor w_lo, Tensor w_hi, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "bool input_nonneg) -> (Tensor, Tensor)");
  m.def(
      "interval_conv_transpose2d(Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, "
      "Tensor? b_lo, Tensor? b_hi, int[2] stride, int[2] padding, int[2] output_padding, "
      "int groups, int[2] dilation, bool input_nonneg) -> (Tensor, Tensor)");
  m.def(
      "interval_conv_transpose2d_backward_input(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, "
      "Tensor x_hi, Tensor w_lo, Tensor w_hi, int[2] stride, int[2] padding, "
      "int[2] output_padding, int groups, int[2] dilation, bool input_nonneg) -> (Tensor, Tensor)");
  m.def(
      "interval_conv_transpose2d_backward_weight(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, "
      "Tensor x_hi, Tensor w_lo, Tensor w_hi, int[2] stride, int[2] padding, "
      "int[2] output_padding, int groups, int[2] dilation, bool input_nonneg) -> (Tensor, Tensor)");
  m.def("build_info() -> str", &inn::build_info);
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
