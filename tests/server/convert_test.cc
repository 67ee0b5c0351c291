// Unit tests of the server's plumbing that needs no running service:
// status mapping, ids and page tokens, proto <-> Armadillo conversion.
#include "server/convert.h"

#include <cmath>
#include <cstring>
#include <limits>

#include <gtest/gtest.h>

#include "server/ids.h"
#include "server/status_util.h"
#include "tests/server/test_util.h"

namespace backprop::server {
namespace {

using ::backprop::server::testing::DoubleMatrix;
using ::backprop::server::testing::FloatMatrix;

TEST(ToGrpcStatusTest, KeepsCodeAndMessage) {
  grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError("bad shape"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "bad shape");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("x")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(
      FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "m")).code(),
      absl::StatusCode::kNotFound);
}

TEST(IsValidIdTest, FollowsTheApiPattern) {
  for (const char* ok :
       {"a", "0", "m1", "fashion-mnist-train", "a.b_c-d", "a..", "z9"}) {
    EXPECT_TRUE(IsValidId(ok)) << ok;
  }
  for (const char* bad : {"", ".", "..", "../x", "a/b", "/etc/passwd", "-a",
                          "_a", ".hidden", "A", "CON", "a b", "é", "a\\b"}) {
    EXPECT_FALSE(IsValidId(bad)) << bad;
  }
  EXPECT_TRUE(IsValidId(std::string(63, 'a')));
  EXPECT_FALSE(IsValidId(std::string(64, 'a')));
  EXPECT_FALSE(IsValidId(std::string("x\0y", 3)));
  EXPECT_EQ(ValidateId("model_id", "../x").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NewIdTest, GivesValidDistinctIds) {
  const std::string a = NewId("model");
  const std::string b = NewId("model");
  EXPECT_TRUE(IsValidId(a)) << a;
  EXPECT_NE(a, b);
}

TEST(PageTokenTest, RoundTripsAndRejectsForeignTokens) {
  const std::string t = EncodePageToken("m", "model-7");
  absl::StatusOr<std::string> id = DecodePageToken("m", t);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "model-7");
  EXPECT_EQ(DecodePageToken("d", t).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodePageToken("m", "not base64 !").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      DecodePageToken("m", EncodePageToken("m", "../etc")).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(ValidateMatrixTest, RejectsMalformedMatrices) {
  EXPECT_TRUE(ValidateMatrix("m", DoubleMatrix(2, 2, {1, 2, 3, 4})).ok());
  // Count != rows * cols.
  EXPECT_EQ(ValidateMatrix("m", DoubleMatrix(2, 3, {1, 2, 3, 4})).code(),
            absl::StatusCode::kInvalidArgument);
  // rows * cols overflows 64 bits: must not wrap around to a small count.
  // (2^33 * 2^31 = 2^64 wraps to 0; 2^32+1 times 2^32 wraps to 2^32.)
  EXPECT_EQ(ValidateMatrix(
                "m", DoubleMatrix(uint64_t{1} << 33, uint64_t{1} << 31, {1}))
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateMatrix("m", DoubleMatrix(0, 1, {})).code(),
            absl::StatusCode::kInvalidArgument);
  v1::Matrix both = DoubleMatrix(1, 1, {1});
  both.add_float_values(1);
  EXPECT_EQ(ValidateMatrix("m", both).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateMatrix("m", DoubleMatrix(1, 2, {1, NAN})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ValidateMatrix(
          "m", FloatMatrix(1, 1, {std::numeric_limits<float>::infinity()}))
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(ExamplesFromProtoTest, RowsBecomeColumnsWithoutTranspose) {
  // 2 examples x 3 features, row-major: example i, feature j = 10 i + j.
  v1::Matrix m = DoubleMatrix(2, 3, {0, 1, 2, 10, 11, 12});
  absl::StatusOr<arma::mat> x =
      ExamplesFromProto<double>("inputs", m, 3, "expects 3", 100);
  ASSERT_TRUE(x.ok()) << x.status();
  ASSERT_EQ(x->n_rows, 3u);
  ASSERT_EQ(x->n_cols, 2u);
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 3; ++j) {
      // Exact: the values are small integers copied without arithmetic.
      EXPECT_EQ((*x)(j, i), 10.0 * i + j);
    }
  }
  v1::Matrix back;
  ExamplesToProto<double>(*x, &back);
  EXPECT_EQ(back.rows(), 2u);
  EXPECT_EQ(back.cols(), 3u);
  ASSERT_EQ(back.double_values_size(), 6);
  EXPECT_EQ(std::memcmp(back.double_values().data(), m.double_values().data(),
                        6 * sizeof(double)),
            0);

  // Float input into a float64 model, and the other way round.
  absl::StatusOr<arma::fmat> xf = ExamplesFromProto<float>(
      "inputs", DoubleMatrix(1, 2, {0.5, 1.5}), 2, "expects 2", 100);
  ASSERT_TRUE(xf.ok());
  EXPECT_EQ((*xf)(1, 0), 1.5f);
}

TEST(ExamplesFromProtoTest, RejectsWrongWidthAndTooManyRows) {
  v1::Matrix m = DoubleMatrix(2, 8, std::vector<double>(16, 0.0));
  EXPECT_EQ(ExamplesFromProto<double>("inputs", m, 16, "expects 16", 100)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ExamplesFromProto<double>("inputs", m, 8, "expects 8", 1).status().code(),
      absl::StatusCode::kResourceExhausted);
  // A finite double outside float32's range cannot enter a float32 model.
  EXPECT_EQ(ExamplesFromProto<float>("inputs", DoubleMatrix(1, 1, {1e300}), 1,
                                     "expects 1", 10)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SpecFromProtoTest, DefaultsUnspecifiedAndRejectsUnknownEnums) {
  v1::ModelSpec p;
  p.add_layer_sizes(3);
  p.add_layer_sizes(2);
  absl::StatusOr<ModelSpec> s = SpecFromProto(p);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->hidden_activation, Activation::kSigmoid);
  EXPECT_EQ(s->output_activation, Activation::kSigmoid);
  EXPECT_EQ(s->cost, Cost::kQuadratic);
  EXPECT_EQ(s->initializer, Initializer::kScaledNormal);
  EXPECT_EQ(s->dtype, DType::kFloat64);

  v1::ModelSpec bad = p;
  bad.set_hidden_activation(static_cast<v1::Activation>(42));
  EXPECT_EQ(SpecFromProto(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.set_cost(static_cast<v1::Cost>(-1));
  EXPECT_EQ(SpecFromProto(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.set_dtype(static_cast<v1::DType>(3));
  EXPECT_EQ(SpecFromProto(bad).status().code(),
            absl::StatusCode::kInvalidArgument);

  v1::ModelSpec round;
  SpecToProto(*s, &round);
  EXPECT_EQ(round.cost(), v1::QUADRATIC);
  EXPECT_EQ(round.layer_sizes_size(), 2);
}

TEST(ParameterToProtoTest, WeightsGoOutRowMajorInTheirOwnShape) {
  // w is 2 x 3 with w(j, k) = 10 j + k; on the wire row j is w(j, :).
  arma::mat w(2, 3);
  for (int j = 0; j < 2; ++j) {
    for (int k = 0; k < 3; ++k) w(j, k) = 10.0 * j + k;
  }
  v1::Matrix m;
  ParameterToProto<double>(w, &m);
  EXPECT_EQ(m.rows(), 2u);
  EXPECT_EQ(m.cols(), 3u);
  ASSERT_EQ(m.double_values_size(), 6);
  const std::vector<double> expected = {0, 1, 2, 10, 11, 12};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(m.double_values(i), expected[i]);
}

TEST(DatasetBuilderTest, AppendsChunksAndEnforcesHeaderAndLimit) {
  v1::DatasetHeader h;
  h.set_feature_count(2);
  h.set_class_count(3);
  absl::StatusOr<DatasetBuilder> b = DatasetBuilder::Create(h, 1 << 20);
  ASSERT_TRUE(b.ok()) << b.status();
  v1::Examples c;
  *c.mutable_inputs() = DoubleMatrix(2, 2, {1, 2, 3, 4});
  c.mutable_labels()->add_values(0);
  c.mutable_labels()->add_values(2);
  ASSERT_TRUE(b->Append(c).ok());
  ASSERT_TRUE(b->Append(c).ok());
  v1::Examples bad_label = c;
  bad_label.mutable_labels()->set_values(0, 3);
  EXPECT_EQ(b->Append(bad_label).code(), absl::StatusCode::kInvalidArgument);
  v1::Examples wide = c;
  *wide.mutable_inputs() = DoubleMatrix(1, 4, {1, 2, 3, 4});
  EXPECT_EQ(b->Append(wide).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->example_count(), 4u);
  absl::StatusOr<Dataset> d = b->Build();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->inputs.n_rows, 2u);
  EXPECT_EQ(d->inputs.n_cols, 4u);
  EXPECT_EQ(d->inputs(1, 3), 4.0);  // example 3 = second row of chunk 2
  EXPECT_EQ(d->labels, (std::vector<uint32_t>{0, 2, 0, 2}));

  // 2 examples cost 2 * (2 * 8 + 4) = 40 bytes: a 39-byte limit refuses it.
  absl::StatusOr<DatasetBuilder> small = DatasetBuilder::Create(h, 39);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->Append(c).code(), absl::StatusCode::kResourceExhausted);

  v1::DatasetHeader neither;
  neither.set_feature_count(2);
  EXPECT_EQ(DatasetBuilder::Create(neither, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::DatasetHeader both = h;
  both.set_target_size(1);
  EXPECT_EQ(DatasetBuilder::Create(both, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace backprop::server
