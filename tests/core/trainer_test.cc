#include "core/trainer.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include <armadillo>
#include <gtest/gtest.h>

#include "core/dataset.h"
#include "core/network.h"
#include "core/spec.h"

namespace backprop {
namespace {

ModelSpec MakeSpec(std::vector<uint32_t> sizes, Activation hidden,
                   Activation output, Cost cost, uint64_t seed,
                   DType dtype = DType::kFloat64) {
  ModelSpec s;
  s.layer_sizes = std::move(sizes);
  s.hidden_activation = hidden;
  s.output_activation = output;
  s.cost = cost;
  s.seed = seed;
  s.dtype = dtype;
  return s;
}

// n examples with features uniform in [-1, 1] and labels or targets in
// (0, 1), from a fixed seed.
Dataset RandomData(uint32_t features, uint32_t outputs, uint64_t n, bool labels,
                   uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Dataset d;
  d.inputs.set_size(features, n);
  d.inputs.imbue([&] { return u(rng); });
  if (labels) {
    d.class_count = outputs;
    for (uint64_t i = 0; i < n; ++i) d.labels.push_back((i * 5 + 1) % outputs);
  } else {
    d.targets.set_size(outputs, n);
    d.targets.imbue([&] { return 0.5 + 0.45 * u(rng); });
  }
  return d;
}

template <typename T>
bool BitwiseEqual(const Network<T>& a, const Network<T>& b) {
  for (size_t l = 1; l < a.num_layers(); ++l) {
    if (std::memcmp(a.w(l).memptr(), b.w(l).memptr(),
                    a.w(l).n_elem * sizeof(T)) != 0 ||
        std::memcmp(a.b(l).memptr(), b.b(l).memptr(),
                    a.b(l).n_elem * sizeof(T)) != 0) {
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
TEST(ShuffleOrderTest, IsAPermutationThatDependsOnSeedAndEpoch) {
  const std::vector<uint64_t> a = ShuffleOrder(100, 7, 1);
  std::vector<uint64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (uint64_t i = 0; i < 100; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(a, ShuffleOrder(100, 7, 1));
  EXPECT_NE(a, ShuffleOrder(100, 7, 2));
  EXPECT_NE(a, ShuffleOrder(100, 8, 1));
  EXPECT_NE(a, ShuffleOrder(100, 7 + (uint64_t{1} << 32), 1));
  EXPECT_EQ(ShuffleOrder(1, 3, 1), std::vector<uint64_t>{0});
}

// ---------------------------------------------------------------------------
// Train against API.md's SGD rule replayed in the test from Backprop outputs:
//   g_w = nabla_w + (lambda/n) w, g_b = nabla_b, v <- mu v - eta g, w += v,
// where Backprop's nabla is already 1/m sum over the batch, batches follow
// ShuffleOrder and m is each batch's own size (n = 5, batch 2: 2, 2, 1).
void ExpectTrainMatchesReplayedRule(bool labels, uint64_t n_examples,
                                    uint32_t batch,
                                    std::vector<size_t> expected_sizes) {
  const ModelSpec spec = MakeSpec({3, 4, 2}, Activation::kTanh,
                                  Activation::kSigmoid, Cost::kCrossEntropy, 5);
  const Dataset data = RandomData(3, 2, n_examples, labels, 21);
  TrainOptions o;
  o.epochs = 2;  // 6 steps: momentum carries over steps and epochs
  o.mini_batch_size = batch;
  o.eta = 0.7;
  o.lambda = 0.3;
  o.mu = 0.6;
  o.shuffle_seed = 99;

  Network<double> expected = Network<double>::Create(spec).value();
  Network<double> trained = expected;
  ASSERT_TRUE(Train<double>(trained, data, nullptr, o, {}, nullptr).ok());

  const arma::mat y_all = TargetMatrix<double>(data);
  const double n = static_cast<double>(n_examples);
  std::vector<arma::mat> v_w(3);
  std::vector<arma::vec> v_b(3);
  for (size_t l = 1; l <= 2; ++l) {
    v_w[l].zeros(expected.w(l).n_rows, expected.w(l).n_cols);
    v_b[l].zeros(expected.b(l).n_elem);
  }
  std::vector<size_t> batch_sizes;
  for (uint32_t epoch = 1; epoch <= o.epochs; ++epoch) {
    const std::vector<uint64_t> order =
        ShuffleOrder(n_examples, o.shuffle_seed, epoch);
    for (size_t start = 0; start < order.size(); start += batch) {
      const size_t m = std::min<size_t>(batch, order.size() - start);
      batch_sizes.push_back(m);
      const arma::uvec idx(std::vector<arma::uword>(order.begin() + start,
                                                    order.begin() + start + m));
      const Gradients<double> g =
          expected.Backprop(data.inputs.cols(idx), y_all.cols(idx)).value();
      for (size_t l = 1; l <= 2; ++l) {
        const arma::mat g_w = g.nabla_w[l] + (o.lambda / n) * expected.w(l);
        v_w[l] = o.mu * v_w[l] - o.eta * g_w;
        v_b[l] = o.mu * v_b[l] - o.eta * g.nabla_b[l];
        expected.mutable_w(l) += v_w[l];
        expected.mutable_b(l) += v_b[l];
      }
    }
  }
  EXPECT_EQ(batch_sizes, expected_sizes);
  // Same arithmetic up to the order of floating-point operations: a few
  // ulps of weights of size ~1.
  for (size_t l = 1; l <= 2; ++l) {
    EXPECT_TRUE(
        arma::approx_equal(trained.w(l), expected.w(l), "absdiff", 1e-12))
        << "layer " << l << "\n"
        << trained.w(l) - expected.w(l);
    EXPECT_TRUE(
        arma::approx_equal(trained.b(l), expected.b(l), "absdiff", 1e-12));
  }
  // And the steps really moved the weights (the check is not vacuous).
  const Network<double> initial = Network<double>::Create(spec).value();
  EXPECT_GT(arma::abs(trained.w(1) - initial.w(1)).max(), 1e-3);
}

TEST(TrainTest, SgdStepsEqualApiRuleWithTargets) {
  ExpectTrainMatchesReplayedRule(false, 5, 2, {2, 2, 1, 2, 2, 1});
}
TEST(TrainTest, SgdStepsEqualApiRuleWithLabels) {
  ExpectTrainMatchesReplayedRule(true, 5, 2, {2, 2, 1, 2, 2, 1});
}
// Batches over 16 examples take the engine's BLAS path.
TEST(TrainTest, SgdStepsEqualApiRuleWithLargeBatches) {
  ExpectTrainMatchesReplayedRule(true, 45, 20, {20, 20, 5, 20, 20, 5});
}

TEST(TrainTest, FloatTrainingTracksDoubleTraining) {
  // The same three epochs in float32 and float64 from the same seed: the
  // float run carries ~1e-7 relative rounding per operation, so after 30
  // small steps the weights agree to well within 1e-4.
  ModelSpec spec = MakeSpec({4, 6, 3}, Activation::kSigmoid,
                            Activation::kSoftmax, Cost::kCrossEntropy, 12);
  const Dataset data = RandomData(4, 3, 40, true, 4);
  TrainOptions o;
  o.epochs = 3;
  o.mini_batch_size = 4;
  o.eta = 0.5;
  Network<double> d = Network<double>::Create(spec).value();
  spec.dtype = DType::kFloat32;
  Network<float> f = Network<float>::Create(spec).value();
  ASSERT_TRUE(Train<double>(d, data, nullptr, o, {}, nullptr).ok());
  ASSERT_TRUE(Train<float>(f, data, nullptr, o, {}, nullptr).ok());
  for (size_t l = 1; l < d.num_layers(); ++l) {
    EXPECT_TRUE(arma::approx_equal(arma::conv_to<arma::mat>::from(f.w(l)),
                                   d.w(l), "absdiff", 1e-4));
  }
}

TEST(TrainTest, FloatInputsAreConvertedOnceAndGiveTheSameWeights) {
  // Float32 training reads a float copy of the inputs that the dataset keeps
  // after the first call. The cached copy must train exactly like a fresh
  // conversion, and a copy of the dataset must start without it.
  ModelSpec spec = MakeSpec({6, 5, 3}, Activation::kSigmoid,
                            Activation::kSoftmax, Cost::kCrossEntropy, 21);
  spec.dtype = DType::kFloat32;
  Dataset data = RandomData(6, 3, 37, true, 9);
  TrainOptions o;
  o.epochs = 2;
  o.mini_batch_size = 5;
  o.eta = 0.4;
  o.shuffle_seed = 77;
  ASSERT_FALSE(data.float_inputs.filled());
  Network<float> first = Network<float>::Create(spec).value();
  Network<float> second = first;
  ASSERT_TRUE(Train<float>(first, data, nullptr, o, {}, nullptr).ok());
  ASSERT_TRUE(data.float_inputs.filled());
  const float* cached = data.float_inputs.Get(data.inputs).memptr();
  ASSERT_TRUE(Train<float>(second, data, nullptr, o, {}, nullptr).ok());
  EXPECT_EQ(data.float_inputs.Get(data.inputs).memptr(), cached)
      << "the second call converted the inputs again";
  EXPECT_TRUE(BitwiseEqual(first, second));

  // A copy whose inputs change must not train on the old values.
  Dataset edited = data;
  EXPECT_FALSE(edited.float_inputs.filled());
  edited.inputs *= 2.0;
  Network<float> on_edited = Network<float>::Create(spec).value();
  ASSERT_TRUE(Train<float>(on_edited, edited, nullptr, o, {}, nullptr).ok());
  EXPECT_FALSE(BitwiseEqual(first, on_edited));
  EXPECT_TRUE(arma::approx_equal(edited.float_inputs.Get(edited.inputs),
                                 arma::conv_to<arma::fmat>::from(edited.inputs),
                                 "absdiff", 0.0f));
}

TEST(TrainTest, SameSeedsGiveBitwiseEqualWeights) {
  const ModelSpec spec = MakeSpec({5, 7, 3}, Activation::kRelu,
                                  Activation::kSoftmax, Cost::kCrossEntropy, 3);
  const Dataset data = RandomData(5, 3, 53, true, 8);
  TrainOptions o;
  o.epochs = 3;
  o.mini_batch_size = 4;
  o.eta = 0.3;
  o.mu = 0.5;
  o.lambda = 0.1;
  o.shuffle_seed = 1234;
  Network<double> a = Network<double>::Create(spec).value();
  Network<double> b = a;
  Network<double> c = a;
  ASSERT_TRUE(Train<double>(a, data, nullptr, o, {}, nullptr).ok());
  ASSERT_TRUE(Train<double>(b, data, nullptr, o, {}, nullptr).ok());
  o.shuffle_seed = 1235;
  ASSERT_TRUE(Train<double>(c, data, nullptr, o, {}, nullptr).ok());
  EXPECT_TRUE(BitwiseEqual(a, b));
  EXPECT_FALSE(BitwiseEqual(a, c));
}

TEST(TrainTest, LearnsXor) {
  // [2,3,1] sigmoid with cross-entropy; a fixed seed and full-batch
  // training, so the run is deterministic. Correct = output on the right
  // side of 0.5 for all four inputs.
  const ModelSpec spec =
      MakeSpec({2, 3, 1}, Activation::kSigmoid, Activation::kSigmoid,
               Cost::kCrossEntropy, 2024);
  Dataset data;
  data.inputs = {{0, 0, 1, 1}, {0, 1, 0, 1}};
  data.targets = {{0, 1, 1, 0}};
  TrainOptions o;
  o.epochs = 3000;
  o.mini_batch_size = 4;
  o.eta = 2.0;
  o.mu = 0.5;
  Network<double> net = Network<double>::Create(spec).value();
  ASSERT_TRUE(Train<double>(net, data, nullptr, o, {}, nullptr).ok());
  const arma::mat a = net.Feedforward(data.inputs).value();
  int correct = 0;
  for (int j = 0; j < 4; ++j)
    correct += (a(0, j) > 0.5) == (data.targets(0, j) > 0.5);
  EXPECT_EQ(correct, 4) << a;
  // The same with two softmax outputs and labels: Evaluate's accuracy is 1.
  const ModelSpec spec2 =
      MakeSpec({2, 3, 2}, Activation::kSigmoid, Activation::kSoftmax,
               Cost::kCrossEntropy, 2024);
  Dataset labeled;
  labeled.inputs = data.inputs;
  labeled.class_count = 2;
  labeled.labels = {0, 1, 1, 0};
  Network<double> net2 = Network<double>::Create(spec2).value();
  ASSERT_TRUE(Train<double>(net2, labeled, nullptr, o, {}, nullptr).ok());
  EXPECT_DOUBLE_EQ(Evaluate(net2, labeled, 0, 0).value().accuracy, 1.0);
}

// ---------------------------------------------------------------------------
// n examples in one full batch per epoch: n <= 16 runs the engine's
// register-blocked kernels, larger n its BLAS path.
void ExpectConsistentEpochMetrics(uint64_t n, double mu) {
  const ModelSpec spec = MakeSpec({4, 5, 3}, Activation::kSigmoid,
                                  Activation::kSoftmax, Cost::kCrossEntropy, 6);
  const Dataset train = RandomData(4, 3, n, true, 1);
  const Dataset validation = RandomData(4, 3, 11, true, 2);
  TrainOptions o;
  o.epochs = 3;
  o.mini_batch_size = 100;  // one full batch per epoch
  o.eta = 0.5;
  o.lambda = 0.2;
  o.mu = mu;
  o.monitor_training = true;
  Network<double> net = Network<double>::Create(spec).value();
  // With one batch per epoch the mean gradient norm of epoch 1 is the norm
  // of the full gradient at the initial weights: nabla_w + (lambda/n) w.
  const Gradients<double> g0 =
      net.Backprop(train.inputs, TargetMatrix<double>(train)).value();
  const double expected_grad_norm_1 =
      arma::norm(g0.nabla_w[1] + (0.2 / n) * net.w(1), "fro");
  std::vector<EpochMetrics> seen;
  TrainCallbacks<double> cb;
  cb.on_epoch = [&](const EpochMetrics& m, const Network<double>& net_now) {
    seen.push_back(m);
    const Evaluation t = Evaluate(net_now, train, 0.2, n).value();
    EXPECT_NEAR(m.training_cost, t.cost, 1e-12);
    EXPECT_DOUBLE_EQ(m.training_accuracy, t.accuracy);
    const Evaluation v = Evaluate(net_now, validation, 0.2, n).value();
    EXPECT_NEAR(m.validation_cost, v.cost, 1e-12);
    EXPECT_DOUBLE_EQ(m.validation_accuracy, v.accuracy);
    EXPECT_NEAR(m.layers[0].weight_norm, arma::norm(net_now.w(1), "fro"),
                1e-12);
    EXPECT_NEAR(m.layers[1].weight_norm, arma::norm(net_now.w(2), "fro"),
                1e-12);
    return absl::OkStatus();
  };
  ASSERT_TRUE(Train<double>(net, train, &validation, o, cb, nullptr).ok());
  ASSERT_EQ(seen.size(), 3u);
  for (uint32_t e = 0; e < 3; ++e) {
    EXPECT_EQ(seen[e].epoch, e + 1);
    EXPECT_TRUE(seen[e].has_training);
    EXPECT_TRUE(seen[e].has_validation);
    EXPECT_GE(seen[e].seconds, 0);
    ASSERT_EQ(seen[e].layers.size(), 2u);
    EXPECT_GE(seen[e].layers[0].saturated_fraction, 0);
    EXPECT_LE(seen[e].layers[0].saturated_fraction, 1);
    EXPECT_EQ(seen[e].layers[1].saturated_fraction, 0);  // softmax layer
  }
  EXPECT_NEAR(seen[0].layers[0].gradient_norm, expected_grad_norm_1, 1e-12);
}

TEST(TrainTest, EpochMetricsAreConsistentOnKernelPath) {
  ExpectConsistentEpochMetrics(12, 0.0);
  ExpectConsistentEpochMetrics(12, 0.5);
}
TEST(TrainTest, EpochMetricsAreConsistentOnBlasPath) {
  ExpectConsistentEpochMetrics(30, 0.0);
  ExpectConsistentEpochMetrics(30, 0.5);
}

TEST(TrainTest, SaturatedFractionCountsFlatSigmoids) {
  // Weights of 100 on inputs of +-1 put every hidden z at +-100 (plus a
  // small bias): |sigma'(z)| ~ e^-100 < 0.01, so the fraction is exactly 1
  // in the first epoch; the tanh-free identity output layer reports 0.
  const ModelSpec spec = MakeSpec({1, 2, 1}, Activation::kSigmoid,
                                  Activation::kIdentity, Cost::kQuadratic, 1);
  Network<double> net =
      Network<double>::FromParameters(
          spec, {arma::mat(2, 1, arma::fill::value(100.0)), arma::mat(1, 2)},
          {arma::vec(2, arma::fill::zeros), arma::vec(1, arma::fill::zeros)})
          .value();
  Dataset d;
  d.inputs = {{1.0, -1.0, 1.0, -1.0}};
  d.targets = {{0.0, 0.0, 0.0, 0.0}};
  TrainOptions o;
  o.mini_batch_size = 2;
  o.eta = 0.01;
  double fraction = -1, output_fraction = -1;
  TrainCallbacks<double> cb;
  cb.on_epoch = [&](const EpochMetrics& m, const Network<double>&) {
    fraction = m.layers[0].saturated_fraction;
    output_fraction = m.layers[1].saturated_fraction;
    return absl::OkStatus();
  };
  ASSERT_TRUE(Train<double>(net, d, nullptr, o, cb, nullptr).ok());
  EXPECT_DOUBLE_EQ(fraction, 1.0);
  EXPECT_DOUBLE_EQ(output_fraction, 0.0);
}

TEST(TrainTest, ProgressReportsRunningCost) {
  const ModelSpec spec = MakeSpec({3, 4, 2}, Activation::kSigmoid,
                                  Activation::kSigmoid, Cost::kQuadratic, 2);
  const Dataset data = RandomData(3, 2, 20, false, 3);
  TrainOptions o;
  o.epochs = 2;
  o.mini_batch_size = 5;
  o.eta = 0.1;
  o.progress_interval_seconds = 1e-9;  // every batch, in practice
  Network<double> net = Network<double>::Create(spec).value();
  // The first batch's running cost is the data cost of that batch at the
  // initial weights, computed here through Network::Cost.
  const std::vector<uint64_t> order = ShuffleOrder(20, 0, 1);
  const arma::uvec first(
      std::vector<arma::uword>(order.begin(), order.begin() + 5));
  const double first_cost =
      net.Cost(data.inputs.cols(first), data.targets.cols(first)).value();
  std::vector<BatchProgress> seen;
  TrainCallbacks<double> cb;
  cb.on_progress = [&](const BatchProgress& p) { seen.push_back(p); };
  ASSERT_TRUE(Train<double>(net, data, nullptr, o, cb, nullptr).ok());
  ASSERT_FALSE(seen.empty());
  EXPECT_LE(seen.size(), 8u);  // at most one per batch
  for (const BatchProgress& p : seen) {
    EXPECT_EQ(p.examples_total, 20u);
    EXPECT_GE(p.examples_done, 5u);
    EXPECT_LE(p.examples_done, 20u);
    EXPECT_TRUE(std::isfinite(p.running_cost));
  }
  // 1 ns has always passed by the end of the first batch.
  EXPECT_EQ(seen[0].epoch, 1u);
  EXPECT_EQ(seen[0].examples_done, 5u);
  EXPECT_NEAR(seen[0].running_cost, first_cost, 1e-12);
}

// ---------------------------------------------------------------------------
TEST(TrainTest, CancellationKeepsLastCompletedEpoch) {
  const ModelSpec spec = MakeSpec({3, 4, 2}, Activation::kSigmoid,
                                  Activation::kSigmoid, Cost::kQuadratic, 2);
  const Dataset data = RandomData(3, 2, 40, false, 3);
  TrainOptions o;
  o.epochs = 10;
  o.mini_batch_size = 4;
  o.eta = 1.0;
  o.progress_interval_seconds = 1e-9;
  Network<double> net = Network<double>::Create(spec).value();
  std::atomic<bool> cancel{false};
  Network<double> at_epoch_2 = net;
  TrainCallbacks<double> cb;
  cb.on_epoch = [&](const EpochMetrics& m, const Network<double>& n) {
    if (m.epoch == 2) at_epoch_2 = n;
    return absl::OkStatus();
  };
  cb.on_progress = [&](const BatchProgress& p) {
    // Mid-way through epoch 3, after some of its batches changed weights.
    if (p.epoch == 3 && p.examples_done >= 20) cancel = true;
  };
  const absl::Status s = Train<double>(net, data, nullptr, o, cb, &cancel);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(BitwiseEqual(net, at_epoch_2));

  // Cancelled before the first batch: nothing changes.
  Network<double> fresh = Network<double>::Create(spec).value();
  const Network<double> initial = fresh;
  EXPECT_EQ(Train<double>(fresh, data, nullptr, o, {}, &cancel).code(),
            absl::StatusCode::kCancelled);
  EXPECT_TRUE(BitwiseEqual(fresh, initial));
}

TEST(TrainTest, DivergenceAbortsAndKeepsLastGoodEpoch) {
  // Identity outputs with quadratic cost and eta = 1e6: every step multiplies
  // the output error by ~1e6, so the weights overflow to inf/NaN within a
  // few epochs (of 10 steps each).
  const ModelSpec spec = MakeSpec({3, 4, 2}, Activation::kSigmoid,
                                  Activation::kIdentity, Cost::kQuadratic, 4);
  const Dataset data = RandomData(3, 2, 20, false, 5);
  TrainOptions o;
  o.epochs = 50;
  o.mini_batch_size = 2;
  o.eta = 1e6;
  Network<double> net = Network<double>::Create(spec).value();
  Network<double> last_good = net;
  uint32_t completed = 0;
  TrainCallbacks<double> cb;
  cb.on_epoch = [&](const EpochMetrics& m, const Network<double>& n) {
    completed = m.epoch;
    last_good = n;
    return absl::OkStatus();
  };
  const absl::Status s = Train<double>(net, data, nullptr, o, cb, nullptr);
  ASSERT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  std::smatch match;
  const std::string message(s.message());
  ASSERT_TRUE(std::regex_search(message, match, std::regex("epoch (\\d+)")))
      << message;
  EXPECT_EQ(std::stoul(match[1]), completed + 1) << message;
  EXPECT_TRUE(net.AllFinite());
  EXPECT_TRUE(BitwiseEqual(net, last_good));
  EXPECT_GE(completed, 1u) << "diverged before any epoch completed: " << s;
}

TEST(TrainTest, OnEpochErrorStopsWithThatStatus) {
  const ModelSpec spec = MakeSpec({3, 4, 2}, Activation::kSigmoid,
                                  Activation::kSigmoid, Cost::kQuadratic, 2);
  const Dataset data = RandomData(3, 2, 10, false, 3);
  TrainOptions o;
  o.epochs = 5;
  Network<double> net = Network<double>::Create(spec).value();
  Network<double> at_2 = net;
  uint32_t calls = 0;
  TrainCallbacks<double> cb;
  cb.on_epoch = [&](const EpochMetrics& m, const Network<double>& n) {
    ++calls;
    at_2 = n;
    return m.epoch == 2 ? absl::DataLossError("disk full") : absl::OkStatus();
  };
  EXPECT_EQ(Train<double>(net, data, nullptr, o, cb, nullptr).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(calls, 2u);
  EXPECT_TRUE(BitwiseEqual(net, at_2));
}

// ---------------------------------------------------------------------------
TEST(TrainTest, RejectsBadOptionsAndShapesWithoutChangingTheNetwork) {
  const ModelSpec spec = MakeSpec({3, 4, 2}, Activation::kSigmoid,
                                  Activation::kSigmoid, Cost::kQuadratic, 2);
  Network<double> net = Network<double>::Create(spec).value();
  const Network<double> initial = net;
  const Dataset good = RandomData(3, 2, 10, false, 3);
  auto code = [&](const TrainOptions& o, const Dataset& d,
                  const Dataset* v = nullptr) {
    return Train<double>(net, d, v, o, {}, nullptr).code();
  };
  const TrainOptions ok;
  TrainOptions o = ok;
  o.epochs = 0;
  EXPECT_EQ(code(o, good), absl::StatusCode::kInvalidArgument);
  o = ok;
  o.mini_batch_size = 0;
  EXPECT_EQ(code(o, good), absl::StatusCode::kInvalidArgument);
  o = ok;
  o.eta = 0;
  EXPECT_EQ(code(o, good), absl::StatusCode::kInvalidArgument);
  o = ok;
  o.eta = INFINITY;
  EXPECT_EQ(code(o, good), absl::StatusCode::kInvalidArgument);
  o = ok;
  o.lambda = -1;
  EXPECT_EQ(code(o, good), absl::StatusCode::kInvalidArgument);
  o = ok;
  o.mu = 1.0;
  EXPECT_EQ(code(o, good), absl::StatusCode::kInvalidArgument);
  o = ok;
  o.mu = std::nan("");
  EXPECT_EQ(code(o, good), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(code(ok, RandomData(4, 2, 10, false, 3)),  // 4 features, not 3
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(ok, RandomData(3, 3, 10, false, 3)),  // targets 3 wide
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(ok, RandomData(3, 5, 10, true, 3)),  // 5 classes > 2 outputs
            absl::StatusCode::kInvalidArgument);
  Dataset broken = good;
  broken.targets.shed_col(0);
  EXPECT_EQ(code(ok, broken), absl::StatusCode::kInvalidArgument);
  const Dataset bad_validation = RandomData(2, 2, 5, false, 3);
  EXPECT_EQ(code(ok, good, &bad_validation),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(BitwiseEqual(net, initial));

  EXPECT_EQ(Evaluate(net, RandomData(4, 2, 10, false, 3), 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Evaluate(net, good, 0.5, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EvaluateTest, CostIncludesL2TermAndAccuracyUsesArgmax) {
  // [1,2] with identity outputs: w = (1, -1)^T, b = 0, so a = (x, -x).
  // x = 2, target (1, 0): argmax a = 0 = argmax target (correct), cost
  // 0.5 ((2-1)^2 + (-2)^2) = 2.5. x = -1, target (0, 3): a = (-1, 1),
  // argmax 1 = argmax target (correct), cost 0.5 (1 + 4) = 2.5.
  // x = 1, label-free target (0, 1): a = (1, -1), wrong, cost 0.5 (1 + 4).
  // Mean data cost 2.5; L2 term lambda/(2n) sum w^2 = 0.3/(2*10) * 2 = 0.03.
  const ModelSpec spec = MakeSpec({1, 2}, Activation::kSigmoid,
                                  Activation::kIdentity, Cost::kQuadratic, 1);
  const Network<double> net =
      Network<double>::FromParameters(
          spec, {arma::mat(arma::colvec{1.0, -1.0})}, {arma::vec{0.0, 0.0}})
          .value();
  Dataset d;
  d.inputs = {{2.0, -1.0, 1.0}};
  d.targets = {{1.0, 0.0, 0.0}, {0.0, 3.0, 1.0}};
  const Evaluation e = Evaluate(net, d, 0.3, 10).value();
  EXPECT_NEAR(e.cost, 2.5 + 0.03, 1e-14);
  EXPECT_NEAR(e.accuracy, 2.0 / 3.0, 1e-15);
  const Evaluation plain = Evaluate(net, d, 0, 0).value();
  EXPECT_NEAR(plain.cost, 2.5, 1e-14);
}

}  // namespace
}  // namespace backprop
