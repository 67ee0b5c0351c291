#include "core/spec.h"

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include <gtest/gtest.h>

namespace backprop {
namespace {

constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

ModelSpec Valid() {
  ModelSpec s;
  s.layer_sizes = {784, 30, 10};
  return s;
}

TEST(ValidateSpecTest, AcceptsDefaultsAndEveryAllowedPair) {
  EXPECT_TRUE(ValidateSpec(Valid(), kNoLimit).ok());
  struct Pair {
    Activation out;
    Cost cost;
  };
  for (Activation hidden :
       {Activation::kSigmoid, Activation::kTanh, Activation::kRelu}) {
    for (Pair p : {Pair{Activation::kSigmoid, Cost::kQuadratic},
                   Pair{Activation::kTanh, Cost::kQuadratic},
                   Pair{Activation::kRelu, Cost::kQuadratic},
                   Pair{Activation::kIdentity, Cost::kQuadratic},
                   Pair{Activation::kSigmoid, Cost::kCrossEntropy},
                   Pair{Activation::kSoftmax, Cost::kCrossEntropy}}) {
      ModelSpec s = Valid();
      s.hidden_activation = hidden;
      s.output_activation = p.out;
      s.cost = p.cost;
      EXPECT_TRUE(ValidateSpec(s, kNoLimit).ok())
          << ActivationName(hidden) << " " << ActivationName(p.out) << " "
          << CostName(p.cost);
    }
  }
}

TEST(ValidateSpecTest, RejectsFewerThanTwoLayers) {
  ModelSpec s = Valid();
  s.layer_sizes = {5};
  EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
            absl::StatusCode::kInvalidArgument);
  s.layer_sizes = {};
  EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidateSpecTest, RejectsZeroWidth) {
  for (int i = 0; i < 3; ++i) {
    ModelSpec s = Valid();
    s.layer_sizes[i] = 0;
    EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
              absl::StatusCode::kInvalidArgument)
        << "layer " << i;
  }
}

TEST(ValidateSpecTest, RejectsDisallowedOutputCostPairs) {
  struct Pair {
    Activation out;
    Cost cost;
  };
  for (Pair p : {Pair{Activation::kSoftmax, Cost::kQuadratic},
                 Pair{Activation::kTanh, Cost::kCrossEntropy},
                 Pair{Activation::kRelu, Cost::kCrossEntropy},
                 Pair{Activation::kIdentity, Cost::kCrossEntropy}}) {
    ModelSpec s = Valid();
    s.output_activation = p.out;
    s.cost = p.cost;
    EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
              absl::StatusCode::kInvalidArgument)
        << ActivationName(p.out) << " " << CostName(p.cost);
  }
}

TEST(ValidateSpecTest, RejectsSoftmaxOrIdentityAsHiddenActivation) {
  for (Activation a : {Activation::kSoftmax, Activation::kIdentity}) {
    ModelSpec s = Valid();
    s.hidden_activation = a;
    EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ValidateSpecTest, RejectsOutOfRangeEnumValues) {
  ModelSpec s = Valid();
  s.hidden_activation = static_cast<Activation>(0);
  EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
            absl::StatusCode::kInvalidArgument);
  s = Valid();
  s.output_activation = static_cast<Activation>(6);
  EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
            absl::StatusCode::kInvalidArgument);
  s = Valid();
  s.cost = static_cast<Cost>(3);
  EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
            absl::StatusCode::kInvalidArgument);
  s = Valid();
  s.initializer = static_cast<Initializer>(0);
  EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
            absl::StatusCode::kInvalidArgument);
  s = Valid();
  s.dtype = static_cast<DType>(-1);
  EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidateSpecTest, ParameterLimitIsResourceExhausted) {
  // [784, 30, 10]: 784*30 + 30 + 30*10 + 10 = 23,860 (counted by hand).
  EXPECT_EQ(ParameterCount(Valid()).value(), 23860u);
  EXPECT_TRUE(ValidateSpec(Valid(), 23860).ok());
  EXPECT_EQ(ValidateSpec(Valid(), 23859).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(ParameterCountTest, DetectsOverflow) {
  // Each layer of 2^32-1 by 2^32-1 has about 2^64 parameters; two of them
  // overflow 64 bits. Nothing is allocated, only counted.
  ModelSpec s = Valid();
  s.layer_sizes = {0xffffffffu, 0xffffffffu, 0xffffffffu};
  EXPECT_EQ(ParameterCount(s).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateSpec(s, kNoLimit).code(),
            absl::StatusCode::kInvalidArgument);
  // One such layer fits: (2^32-1)^2 + (2^32-1) = 2^64 - 2^32.
  s.layer_sizes = {0xffffffffu, 0xffffffffu};
  EXPECT_EQ(ParameterCount(s).value(), 0xffffffff00000000u);
  EXPECT_EQ(ValidateSpec(s, 1000000).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(SpecNamesTest, NamesMatchTheWireEnums) {
  EXPECT_EQ(ActivationName(Activation::kSoftmax), "SOFTMAX");
  EXPECT_EQ(ActivationName(Activation::kIdentity), "IDENTITY");
  EXPECT_EQ(CostName(Cost::kCrossEntropy), "CROSS_ENTROPY");
  EXPECT_EQ(InitializerName(Initializer::kScaledNormal), "SCALED_NORMAL");
  EXPECT_EQ(DTypeName(DType::kFloat32), "FLOAT32");
}

TEST(SpecEqualityTest, ComparesEveryField) {
  const ModelSpec a = Valid();
  ModelSpec b = Valid();
  EXPECT_TRUE(a == b);
  b.seed = 1;
  EXPECT_FALSE(a == b);
  b = Valid();
  b.dtype = DType::kFloat32;
  EXPECT_FALSE(a == b);
  b = Valid();
  b.layer_sizes.back() = 11;
  EXPECT_FALSE(a == b);
}

}  // namespace
}  // namespace backprop
