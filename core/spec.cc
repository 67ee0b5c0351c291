// ModelSpec names, parameter counting and validation (API.md "Validation").
#include "core/spec.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace backprop {
namespace {

bool KnownActivation(Activation a) {
  switch (a) {
    case Activation::kSigmoid:
    case Activation::kTanh:
    case Activation::kRelu:
    case Activation::kSoftmax:
    case Activation::kIdentity:
      return true;
  }
  return false;
}

bool KnownCost(Cost c) {
  return c == Cost::kQuadratic || c == Cost::kCrossEntropy;
}

bool KnownInitializer(Initializer i) {
  return i == Initializer::kStandardNormal || i == Initializer::kScaledNormal;
}

bool KnownDType(DType d) {
  return d == DType::kFloat64 || d == DType::kFloat32;
}

// The allowed output activation / cost pairs of API.md "The math".
bool AllowedOutputPair(Activation out, Cost cost) {
  switch (cost) {
    case Cost::kQuadratic:
      return out == Activation::kSigmoid || out == Activation::kTanh ||
             out == Activation::kRelu || out == Activation::kIdentity;
    case Cost::kCrossEntropy:
      return out == Activation::kSigmoid || out == Activation::kSoftmax;
  }
  return false;
}

}  // namespace

absl::string_view ActivationName(Activation a) {
  switch (a) {
    case Activation::kSigmoid:
      return "SIGMOID";
    case Activation::kTanh:
      return "TANH";
    case Activation::kRelu:
      return "RELU";
    case Activation::kSoftmax:
      return "SOFTMAX";
    case Activation::kIdentity:
      return "IDENTITY";
  }
  return "UNKNOWN_ACTIVATION";
}

absl::string_view CostName(Cost c) {
  switch (c) {
    case Cost::kQuadratic:
      return "QUADRATIC";
    case Cost::kCrossEntropy:
      return "CROSS_ENTROPY";
  }
  return "UNKNOWN_COST";
}

absl::string_view InitializerName(Initializer i) {
  switch (i) {
    case Initializer::kStandardNormal:
      return "STANDARD_NORMAL";
    case Initializer::kScaledNormal:
      return "SCALED_NORMAL";
  }
  return "UNKNOWN_INITIALIZER";
}

absl::string_view DTypeName(DType d) {
  switch (d) {
    case DType::kFloat64:
      return "FLOAT64";
    case DType::kFloat32:
      return "FLOAT32";
  }
  return "UNKNOWN_DTYPE";
}

bool ModelSpec::operator==(const ModelSpec& o) const {
  return layer_sizes == o.layer_sizes &&
         hidden_activation == o.hidden_activation &&
         output_activation == o.output_activation && cost == o.cost &&
         initializer == o.initializer && seed == o.seed && dtype == o.dtype;
}

absl::StatusOr<uint64_t> ParameterCount(const ModelSpec& spec) {
  uint64_t total = 0;
  for (size_t l = 1; l < spec.layer_sizes.size(); ++l) {
    // A product of two 32-bit widths always fits in 64 bits; the sums may not.
    const uint64_t n_out = spec.layer_sizes[l];
    const uint64_t n_in = spec.layer_sizes[l - 1];
    uint64_t layer = 0;
    if (__builtin_add_overflow(n_out * n_in, n_out, &layer) ||
        __builtin_add_overflow(total, layer, &total)) {
      return absl::InvalidArgumentError(
          "parameter count of the model spec overflows 64 bits");
    }
  }
  return total;
}

absl::Status ValidateSpec(const ModelSpec& spec, uint64_t max_parameters) {
  if (spec.layer_sizes.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer_sizes needs at least 2 entries (input and output), "
                     "got ",
                     spec.layer_sizes.size()));
  }
  for (size_t i = 0; i < spec.layer_sizes.size(); ++i) {
    if (spec.layer_sizes[i] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer_sizes[", i, "] is 0; every layer needs >= 1"));
    }
  }
  if (!KnownActivation(spec.hidden_activation)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown hidden_activation value ",
                     static_cast<int>(spec.hidden_activation)));
  }
  if (!KnownActivation(spec.output_activation)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown output_activation value ",
                     static_cast<int>(spec.output_activation)));
  }
  if (!KnownCost(spec.cost)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown cost value ", static_cast<int>(spec.cost)));
  }
  if (!KnownInitializer(spec.initializer)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown initializer value ", static_cast<int>(spec.initializer)));
  }
  if (!KnownDType(spec.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown dtype value ", static_cast<int>(spec.dtype)));
  }
  if (spec.hidden_activation == Activation::kSoftmax ||
      spec.hidden_activation == Activation::kIdentity) {
    return absl::InvalidArgumentError(
        absl::StrCat(ActivationName(spec.hidden_activation),
                     " is only allowed as the output activation"));
  }
  if (!AllowedOutputPair(spec.output_activation, spec.cost)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output activation ", ActivationName(spec.output_activation),
        " cannot be used with cost ", CostName(spec.cost),
        " (QUADRATIC allows SIGMOID, TANH, RELU, IDENTITY; CROSS_ENTROPY "
        "allows SIGMOID, SOFTMAX)"));
  }
  absl::StatusOr<uint64_t> count = ParameterCount(spec);
  if (!count.ok()) return count.status();
  if (*count > max_parameters) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the model has ", *count,
                     " parameters, over the limit of ", max_parameters));
  }
  return absl::OkStatus();
}

}  // namespace backprop
