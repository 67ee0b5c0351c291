#include "client/wire.h"

#include <algorithm>
#include <cctype>

namespace backprop::client {
namespace {

using backprop::v1::Activation;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

const std::map<std::string, Activation>& HiddenActivations() {
  static const auto* m = new std::map<std::string, Activation>{
      {"sigmoid", v1::SIGMOID}, {"tanh", v1::TANH}, {"relu", v1::RELU}};
  return *m;
}

const std::map<std::string, Activation>& OutputActivations() {
  static const auto* m =
      new std::map<std::string, Activation>{{"sigmoid", v1::SIGMOID},
                                            {"tanh", v1::TANH},
                                            {"relu", v1::RELU},
                                            {"softmax", v1::SOFTMAX},
                                            {"identity", v1::IDENTITY}};
  return *m;
}

const std::map<std::string, v1::Cost>& Costs() {
  static const auto* m = new std::map<std::string, v1::Cost>{
      {"quadratic", v1::QUADRATIC}, {"cross_entropy", v1::CROSS_ENTROPY}};
  return *m;
}

const std::map<std::string, v1::Initializer>& Initializers() {
  static const auto* m = new std::map<std::string, v1::Initializer>{
      {"standard_normal", v1::STANDARD_NORMAL},
      {"scaled_normal", v1::SCALED_NORMAL}};
  return *m;
}

const std::map<std::string, v1::DType>& DTypes() {
  static const auto* m = new std::map<std::string, v1::DType>{
      {"float64", v1::FLOAT64}, {"float32", v1::FLOAT32}};
  return *m;
}

std::string ActivationName(Activation a) {
  return Lower(v1::Activation_Name(a));
}
std::string CostName(v1::Cost c) { return Lower(v1::Cost_Name(c)); }
std::string InitializerName(v1::Initializer i) {
  return Lower(v1::Initializer_Name(i));
}
std::string DTypeName(v1::DType d) { return Lower(v1::DType_Name(d)); }

void FillMatrix(uint64_t rows, uint64_t cols, const double* values,
                v1::DType dtype, v1::Matrix* m) {
  m->Clear();
  m->set_rows(rows);
  m->set_cols(cols);
  const uint64_t n = rows * cols;
  if (dtype == v1::FLOAT32) {
    auto* out = m->mutable_float_values();
    out->Resize(static_cast<int>(n), 0.0f);
    for (uint64_t i = 0; i < n; ++i) {
      out->Set(static_cast<int>(i), static_cast<float>(values[i]));
    }
  } else {
    m->mutable_double_values()->Add(values, values + n);
  }
}

std::vector<double> MatrixValues(const v1::Matrix& m) {
  if (m.float_values_size() > 0) {
    return std::vector<double>(m.float_values().begin(),
                               m.float_values().end());
  }
  return std::vector<double>(m.double_values().begin(),
                             m.double_values().end());
}

size_t MatrixValueCount(const v1::Matrix& m) {
  return static_cast<size_t>(m.float_values_size() + m.double_values_size());
}

std::string LayerSizesText(const v1::ModelSpec& spec) {
  std::string out;
  for (int i = 0; i < spec.layer_sizes_size(); ++i) {
    if (i > 0) out += ",";
    out += std::to_string(spec.layer_sizes(i));
  }
  return out;
}

}  // namespace backprop::client
