// Config A of the performance goal, end to end on the real data set: one
// epoch of Nielsen's network.py setup ([784, 30, 10], sigmoid, quadratic,
// mini-batch 10, eta = 3.0) over the 60,000 Fashion-MNIST training images.
// The data comes from Debian's dataset-fashion-mnist package; when it is
// missing the test fails (it never skips), saying what to install.
#include <string>

#include "absl/status/statusor.h"
#include <gtest/gtest.h>

#include "core/dataset.h"
#include "core/network.h"
#include "core/readers.h"
#include "core/spec.h"
#include "core/trainer.h"

namespace backprop {
namespace {

class FashionMnistTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    train_ =
        new absl::StatusOr<Dataset>(ReadFashionMnist(kFashionMnistDir, true));
    test_ =
        new absl::StatusOr<Dataset>(ReadFashionMnist(kFashionMnistDir, false));
  }
  static void TearDownTestSuite() {
    delete train_;
    delete test_;
  }
  void SetUp() override {
    ASSERT_TRUE(train_->ok() && test_->ok())
        << "Fashion-MNIST is needed in " << kFashionMnistDir
        << " (apt-get install dataset-fashion-mnist): "
        << (train_->ok() ? test_->status() : train_->status());
    ASSERT_EQ((*train_)->size(), 60000u);
    ASSERT_EQ((*test_)->size(), 10000u);
  }

  // Trains config A for one epoch and returns the test-set accuracy.
  template <typename T>
  double OneEpochAccuracy(DType dtype) {
    ModelSpec spec;
    spec.layer_sizes = {784, 30, 10};
    spec.hidden_activation = Activation::kSigmoid;
    spec.output_activation = Activation::kSigmoid;
    spec.cost = Cost::kQuadratic;
    spec.initializer = Initializer::kScaledNormal;
    spec.seed = 2;
    spec.dtype = dtype;
    Network<T> net = Network<T>::Create(spec).value();
    TrainOptions o;
    o.epochs = 1;
    o.mini_batch_size = 10;
    o.eta = 3.0;
    o.shuffle_seed = 2;
    const absl::Status s = Train<T>(net, **train_, nullptr, o, {}, nullptr);
    EXPECT_TRUE(s.ok()) << s;
    const absl::StatusOr<Evaluation> e = Evaluate(net, **test_, 0, 0);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? e->accuracy : 0.0;
  }

  static absl::StatusOr<Dataset>* train_;
  static absl::StatusOr<Dataset>* test_;
};

absl::StatusOr<Dataset>* FashionMnistTest::train_ = nullptr;
absl::StatusOr<Dataset>* FashionMnistTest::test_ = nullptr;

// Over 16 seeds of this build the one-epoch test accuracy of config A was
// 0.814 on average (standard deviation 0.012, lowest 0.777); seed 2 gave
// 0.822 (float64). A build that rounds differently follows another SGD path
// from the same seed, so 0.78 is about three standard deviations below the
// mean rather than a tuned value.
TEST_F(FashionMnistTest, ConfigAReaches78PercentAfterOneEpochFloat64) {
  EXPECT_GE(OneEpochAccuracy<double>(DType::kFloat64), 0.78);
}

TEST_F(FashionMnistTest, ConfigAReaches78PercentAfterOneEpochFloat32) {
  EXPECT_GE(OneEpochAccuracy<float>(DType::kFloat32), 0.78);
}

}  // namespace
}  // namespace backprop
