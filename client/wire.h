// Conversions between command-line words, files and backprop.v1 messages.
#ifndef BACKPROP_CLIENT_WIRE_H_
#define BACKPROP_CLIENT_WIRE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backprop/v1/backprop.pb.h"

namespace backprop::client {

// Words accepted on the command line (for CLI11's CheckedTransformer).
const std::map<std::string, backprop::v1::Activation>& HiddenActivations();
const std::map<std::string, backprop::v1::Activation>& OutputActivations();
const std::map<std::string, backprop::v1::Cost>& Costs();
const std::map<std::string, backprop::v1::Initializer>& Initializers();
const std::map<std::string, backprop::v1::DType>& DTypes();

// The words of one of the maps above, for CLI11's IsMember check.
template <typename Enum>
std::vector<std::string> Words(const std::map<std::string, Enum>& m) {
  std::vector<std::string> words;
  for (const auto& [word, value] : m) words.push_back(word);
  return words;
}

// Lower-case proto enum names: "sigmoid", "cross_entropy", "float32", ...
std::string ActivationName(backprop::v1::Activation a);
std::string CostName(backprop::v1::Cost c);
std::string InitializerName(backprop::v1::Initializer i);
std::string DTypeName(backprop::v1::DType d);

// rows x cols row-major values into a Matrix of the given element type
// (FLOAT32 -> float_values, anything else -> double_values).
void FillMatrix(uint64_t rows, uint64_t cols, const double* values,
                backprop::v1::DType dtype, backprop::v1::Matrix* m);

// The values of a Matrix as doubles, whichever field carries them.
std::vector<double> MatrixValues(const backprop::v1::Matrix& m);
size_t MatrixValueCount(const backprop::v1::Matrix& m);

// "784,30,10" for a spec's layer sizes.
std::string LayerSizesText(const backprop::v1::ModelSpec& spec);

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_WIRE_H_
