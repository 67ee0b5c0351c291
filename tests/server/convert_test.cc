// Unit tests of the server's plumbing that needs no running service:
// status mapping, ids and page tokens, proto <-> Armadillo conversion.
#include "server/convert.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

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

// ValidateMatrix scans blocks of 4,096 values with an integer test of the
// exponent bits before looking value by value. Checked here against
// std::isfinite: every kind of value that is not finite, and the finite
// values nearest to them, at the first, last and block-edge positions, in
// both element types; the message names the first bad value's place.
template <typename V>
void ExpectFindsFirstNonFinite(v1::Matrix (*make)(uint64_t, uint64_t,
                                                  const std::vector<V>&)) {
  using L = std::numeric_limits<V>;
  const uint64_t cols = 100;
  const uint64_t rows = 123;  // 12,300 values: three blocks, one partial
  const std::vector<V> finite_edges = {
      L::max(),  -L::max(),       L::min(),
      -L::min(), L::denorm_min(), -L::denorm_min(),
      V(0),      -V(0),           std::nextafter(L::max(), V(0))};
  std::vector<V> values(rows * cols);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = finite_edges[i % finite_edges.size()];
  }
  EXPECT_TRUE(ValidateMatrix("m", make(rows, cols, values)).ok());
  // A NaN with the sign bit and every mantissa bit set.
  V all_ones;
  std::memset(&all_ones, 0xff, sizeof(V));
  const V kinds[] = {L::infinity(),   -L::infinity(),     L::quiet_NaN(),
                     -L::quiet_NaN(), L::signaling_NaN(), all_ones};
  for (size_t pos : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096},
                     size_t{8191}, size_t{8192}, size_t{12299}}) {
    for (V bad : kinds) {
      std::vector<V> v = values;
      v[pos] = bad;
      // A second bad value later must not be the one reported.
      if (pos + 5000 < v.size()) v[pos + 5000] = L::infinity();
      ASSERT_FALSE(std::isfinite(v[pos]));
      const absl::Status s = ValidateMatrix("m", make(rows, cols, v));
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << pos;
      EXPECT_NE(s.message().find(absl::StrCat("row ", pos / cols, " column ",
                                              pos % cols, " is ")),
                std::string::npos)
          << pos << ": " << s.message();
    }
  }
}

TEST(ValidateMatrixTest, FindsTheFirstNonFiniteValueInEitherType) {
  ExpectFindsFirstNonFinite<double>(&DoubleMatrix);
  ExpectFindsFirstNonFinite<float>(&FloatMatrix);
}

TEST(ExamplesViewFromProtoTest, AliasesValuesOfTheModelTypeAndCopiesOthers) {
  const auto what = [] { return std::string("expects 3"); };
  const v1::Matrix d = DoubleMatrix(2, 3, {0, 1, 2, 10, 11, 12});
  absl::StatusOr<arma::mat> x =
      ExamplesViewFromProto<double>("inputs", d, 3, what, 100);
  ASSERT_TRUE(x.ok()) << x.status();
  ASSERT_EQ(x->n_rows, 3u);
  ASSERT_EQ(x->n_cols, 2u);
  EXPECT_EQ(x->memptr(), d.double_values().data());  // no copy
  EXPECT_EQ((*x)(2, 1), 12.0);

  const v1::Matrix f = FloatMatrix(2, 3, {0, 1, 2, 10, 11, 12});
  absl::StatusOr<arma::fmat> xf =
      ExamplesViewFromProto<float>("inputs", f, 3, what, 100);
  ASSERT_TRUE(xf.ok()) << xf.status();
  EXPECT_EQ(xf->memptr(), f.float_values().data());
  EXPECT_EQ((*xf)(1, 1), 11.0f);

  // Another type is converted into a matrix of its own, as by
  // ExamplesFromProto.
  absl::StatusOr<arma::fmat> converted =
      ExamplesViewFromProto<float>("inputs", d, 3, what, 100);
  ASSERT_TRUE(converted.ok()) << converted.status();
  EXPECT_NE(static_cast<const void*>(converted->memptr()),
            static_cast<const void*>(d.double_values().data()));
  EXPECT_EQ((*converted)(0, 1), 10.0f);
  absl::StatusOr<arma::mat> widened =
      ExamplesViewFromProto<double>("inputs", f, 3, what, 100);
  ASSERT_TRUE(widened.ok()) << widened.status();
  EXPECT_EQ((*widened)(1, 0), 1.0);

  // The same refusals as ExamplesFromProto, with the width explained.
  const absl::Status wrong_width =
      ExamplesViewFromProto<double>("inputs", d, 4, what, 100).status();
  EXPECT_EQ(wrong_width.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_width.message().find("3 columns but expects 3"),
            std::string::npos)
      << wrong_width.message();
  EXPECT_EQ(
      ExamplesViewFromProto<double>("inputs", d, 3, what, 1).status().code(),
      absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ExamplesViewFromProto<double>(
                "inputs", DoubleMatrix(1, 3, {0, NAN, 1}), 3, what, 10)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExamplesViewFromProto<float>("inputs", DoubleMatrix(1, 1, {1e300}),
                                         1, what, 10)
                .status()
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
