// The model specification (mirrors backprop.v1.ModelSpec in ../shared/API.md)
// and its validation. Nielsen, NNDL ch. 2 gives the network these describe.
#ifndef BACKPROP_CORE_SPEC_H_
#define BACKPROP_CORE_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace backprop {

// Values match the wire enums; the server maps *_UNSPECIFIED to the defaults
// below and rejects unknown values before building a ModelSpec.
enum class Activation { kSigmoid = 1, kTanh = 2, kRelu = 3, kSoftmax = 4, kIdentity = 5 };
enum class Cost { kQuadratic = 1, kCrossEntropy = 2 };
enum class Initializer { kStandardNormal = 1, kScaledNormal = 2 };
enum class DType { kFloat64 = 1, kFloat32 = 2 };

absl::string_view ActivationName(Activation a);  // "SIGMOID", ...
absl::string_view CostName(Cost c);              // "QUADRATIC", ...
absl::string_view InitializerName(Initializer i);
absl::string_view DTypeName(DType d);

struct ModelSpec {
  // layer_sizes[0] is the input width n_0, layer_sizes.back() the output n_L.
  std::vector<uint32_t> layer_sizes;
  Activation hidden_activation = Activation::kSigmoid;
  Activation output_activation = Activation::kSigmoid;
  Cost cost = Cost::kQuadratic;
  Initializer initializer = Initializer::kScaledNormal;
  uint64_t seed = 0;
  DType dtype = DType::kFloat64;

  bool operator==(const ModelSpec& o) const;
};

// Total weights + biases, overflow-checked. kInvalidArgument when the count
// does not fit in 64 bits (it is then over any limit anyway).
absl::StatusOr<uint64_t> ParameterCount(const ModelSpec& spec);

// kInvalidArgument: fewer than 2 layers, a zero width, an enum value outside
// the ones above, SOFTMAX/IDENTITY as hidden activation, a disallowed output
// activation / cost pair (API.md: QUADRATIC with SIGMOID/TANH/RELU/IDENTITY;
// CROSS_ENTROPY with SIGMOID or SOFTMAX).
// kResourceExhausted: parameter count > max_parameters.
// Checks only arithmetic on the spec: allocates nothing sized by it.
absl::Status ValidateSpec(const ModelSpec& spec, uint64_t max_parameters);

}  // namespace backprop

#endif  // BACKPROP_CORE_SPEC_H_
