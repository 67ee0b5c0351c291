#include "core/dataset.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include <armadillo>
#include <gtest/gtest.h>

namespace backprop {
namespace {

Dataset Labeled() {
  Dataset d;
  d.inputs = arma::reshape(arma::linspace(0.0, 1.1, 12), 3, 4);
  d.class_count = 3;
  d.labels = {0, 2, 1, 2};
  return d;
}

Dataset WithTargets() {
  Dataset d;
  d.inputs = arma::mat(2, 3, arma::fill::zeros);
  d.targets = {{0.5, 1.5, -2.0}, {1.0, 0.0, 3.0}};  // 2 x 3
  return d;
}

TEST(DatasetTest, ValidAcceptsLabelsOrTargets) {
  EXPECT_TRUE(Labeled().Validate().ok());
  EXPECT_TRUE(WithTargets().Validate().ok());
  EXPECT_EQ(Labeled().output_size(), 3u);
  EXPECT_EQ(WithTargets().output_size(), 2u);
  EXPECT_EQ(Labeled().size(), 4u);
  EXPECT_EQ(Labeled().feature_count(), 3u);
}

TEST(DatasetTest, ValidateRejectsEachBrokenInvariant) {
  Dataset d = Labeled();
  d.inputs.set_size(3, 0);
  d.labels.clear();
  EXPECT_EQ(d.Validate().code(), absl::StatusCode::kInvalidArgument);

  d = Labeled();
  d.inputs.set_size(0, 4);
  EXPECT_EQ(d.Validate().code(), absl::StatusCode::kInvalidArgument);

  d = Labeled();
  d.targets = arma::mat(3, 4, arma::fill::zeros);  // both kinds
  EXPECT_EQ(d.Validate().code(), absl::StatusCode::kInvalidArgument);

  d = Labeled();
  d.class_count = 0;  // neither kind (labels without a class count)
  EXPECT_EQ(d.Validate().code(), absl::StatusCode::kInvalidArgument);

  d = Labeled();
  d.labels.pop_back();  // count disagrees
  EXPECT_EQ(d.Validate().code(), absl::StatusCode::kInvalidArgument);

  d = Labeled();
  d.labels[1] = 3;  // == class_count
  EXPECT_EQ(d.Validate().code(), absl::StatusCode::kInvalidArgument);

  d = Labeled();
  d.inputs(2, 3) = std::nan("");
  EXPECT_EQ(d.Validate().code(), absl::StatusCode::kInvalidArgument);

  d = WithTargets();
  d.targets(0, 1) = INFINITY;
  EXPECT_EQ(d.Validate().code(), absl::StatusCode::kInvalidArgument);

  d = WithTargets();
  d.targets.shed_col(2);
  EXPECT_EQ(d.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DatasetTest, SliceCopiesColumnsAndClipsCount) {
  const Dataset d = Labeled();
  const Dataset s = d.Slice(1, 2);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(arma::approx_equal(s.inputs, d.inputs.cols(1, 2), "absdiff", 0));
  EXPECT_EQ(s.labels, (std::vector<uint32_t>{2, 1}));
  EXPECT_TRUE(s.Validate().ok());

  const Dataset clipped = d.Slice(3, 100);
  EXPECT_EQ(clipped.size(), 1u);
  EXPECT_EQ(clipped.labels, (std::vector<uint32_t>{2}));
  EXPECT_EQ(d.Slice(10, 2).size(), 0u);

  const Dataset t = WithTargets().Slice(2, 1);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_DOUBLE_EQ(t.targets(0, 0), -2.0);
  EXPECT_DOUBLE_EQ(t.targets(1, 0), 3.0);
}

TEST(DatasetTest, TargetMatrixIsOneHotForLabels) {
  const arma::fmat y = TargetMatrix<float>(Labeled());
  ASSERT_EQ(y.n_rows, 3u);
  ASSERT_EQ(y.n_cols, 4u);
  const arma::fmat expected = {
      {1, 0, 0, 0}, {0, 0, 1, 0}, {0, 1, 0, 1}};  // labels 0, 2, 1, 2
  EXPECT_TRUE(arma::approx_equal(y, expected, "absdiff", 0.0f));
  const arma::mat t = TargetMatrix<double>(WithTargets());
  EXPECT_TRUE(arma::approx_equal(t, WithTargets().targets, "absdiff", 0.0));
}

TEST(DatasetTest, ArgmaxColumnsTakesTheFirstMaximum) {
  const arma::mat a = {{0.1, 5.0, 2.0}, {0.7, 5.0, 1.0}, {0.2, -1.0, 2.0}};
  EXPECT_EQ(ArgmaxColumns(a), (std::vector<uint32_t>{1, 0, 0}));
  EXPECT_EQ(ArgmaxColumns(arma::conv_to<arma::fmat>::from(a)),
            (std::vector<uint32_t>{1, 0, 0}));
}

}  // namespace
}  // namespace backprop
