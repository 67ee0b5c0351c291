#include "core/network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include <armadillo>
#include <gtest/gtest.h>

#include "core/blas.h"
#include "core/spec.h"

namespace backprop {
namespace {

// ---------------------------------------------------------------------------
// An independent scalar reference: one example at a time, plain loops and
// std::exp, weights as w[l][j][k] (layer l = 1..L, neuron j, input k). It
// shares no code with the engine (no Armadillo, no BLAS).
struct ScalarNet {
  std::vector<std::vector<std::vector<double>>> w;  // slot 0 empty
  std::vector<std::vector<double>> b;               // slot 0 empty
};

double ScalarSigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// z^l of every layer for input x (sigmoid everywhere).
std::vector<std::vector<double>> ScalarForwardZ(const ScalarNet& net,
                                                const std::vector<double>& x,
                                                Activation hidden) {
  std::vector<std::vector<double>> z(net.w.size());
  std::vector<double> a = x;
  for (size_t l = 1; l < net.w.size(); ++l) {
    z[l].assign(net.w[l].size(), 0.0);
    for (size_t j = 0; j < net.w[l].size(); ++j) {
      double s = net.b[l][j];
      for (size_t k = 0; k < a.size(); ++k) s += net.w[l][j][k] * a[k];
      z[l][j] = s;
    }
    a.assign(z[l].size(), 0.0);
    for (size_t j = 0; j < z[l].size(); ++j) {
      switch (hidden) {
        case Activation::kTanh:
          a[j] = std::tanh(z[l][j]);
          break;
        case Activation::kRelu:
          a[j] = std::max(z[l][j], 0.0);
          break;
        default:
          a[j] = ScalarSigmoid(z[l][j]);
      }
    }
  }
  return z;
}

ScalarNet ToScalar(const Network<double>& net) {
  ScalarNet s;
  s.w.resize(net.num_layers());
  s.b.resize(net.num_layers());
  for (size_t l = 1; l < net.num_layers(); ++l) {
    const arma::mat& w = net.w(l);
    s.w[l].assign(w.n_rows, std::vector<double>(w.n_cols));
    for (arma::uword j = 0; j < w.n_rows; ++j) {
      for (arma::uword k = 0; k < w.n_cols; ++k) s.w[l][j][k] = w(j, k);
    }
    s.b[l].assign(net.b(l).begin(), net.b(l).end());
  }
  return s;
}

// Cost and gradient of a sigmoid/quadratic net, averaged over the examples,
// by the chain rule written out per neuron:
//   dC_x/da^L_j = a_j - y_j, dC_x/dz^l_j = dC_x/da^l_j * a_j (1 - a_j),
//   dC_x/da^{l-1}_k = sum_j w_jk dC_x/dz^l_j,  dC_x/dw_jk = dC_x/dz_j a_k.
struct ScalarGradients {
  double cost = 0;
  ScalarNet grad;
};
ScalarGradients ScalarSigmoidQuadratic(
    const ScalarNet& net, const std::vector<std::vector<double>>& xs,
    const std::vector<std::vector<double>>& ys) {
  const size_t L = net.w.size() - 1;
  ScalarGradients out;
  out.grad = net;
  for (size_t l = 1; l <= L; ++l) {
    for (auto& row : out.grad.w[l]) std::fill(row.begin(), row.end(), 0.0);
    std::fill(out.grad.b[l].begin(), out.grad.b[l].end(), 0.0);
  }
  for (size_t e = 0; e < xs.size(); ++e) {
    std::vector<std::vector<double>> a(L + 1);
    a[0] = xs[e];
    for (size_t l = 1; l <= L; ++l) {
      for (size_t j = 0; j < net.w[l].size(); ++j) {
        double z = net.b[l][j];
        for (size_t k = 0; k < a[l - 1].size(); ++k) {
          z += net.w[l][j][k] * a[l - 1][k];
        }
        a[l].push_back(ScalarSigmoid(z));
      }
    }
    std::vector<double> dc_da(a[L].size());
    for (size_t j = 0; j < a[L].size(); ++j) {
      out.cost += 0.5 * (ys[e][j] - a[L][j]) * (ys[e][j] - a[L][j]);
      dc_da[j] = a[L][j] - ys[e][j];
    }
    for (size_t l = L; l >= 1; --l) {
      std::vector<double> dc_dz(a[l].size());
      for (size_t j = 0; j < a[l].size(); ++j) {
        dc_dz[j] = dc_da[j] * a[l][j] * (1 - a[l][j]);
      }
      std::vector<double> prev(a[l - 1].size(), 0.0);
      for (size_t j = 0; j < a[l].size(); ++j) {
        out.grad.b[l][j] += dc_dz[j];
        for (size_t k = 0; k < a[l - 1].size(); ++k) {
          out.grad.w[l][j][k] += dc_dz[j] * a[l - 1][k];
          prev[k] += net.w[l][j][k] * dc_dz[j];
        }
      }
      dc_da = prev;
    }
  }
  const double n = static_cast<double>(xs.size());
  out.cost /= n;
  for (size_t l = 1; l <= L; ++l) {
    for (auto& row : out.grad.w[l]) {
      for (double& v : row) v /= n;
    }
    for (double& v : out.grad.b[l]) v /= n;
  }
  return out;
}

ModelSpec MakeSpec(std::vector<uint32_t> sizes, Activation hidden,
                   Activation output, Cost cost, uint64_t seed = 1,
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

// Inputs in [-1, 1] and targets that suit the output activation: one-hot
// for SOFTMAX, values in (0, 1) for SIGMOID, (-1, 1) for TANH, else any.
void MakeBatch(const ModelSpec& spec, arma::uword m, uint64_t seed,
               arma::mat& x, arma::mat& y) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  x.set_size(spec.layer_sizes.front(), m);
  x.imbue([&] { return u(rng); });
  const arma::uword n_out = spec.layer_sizes.back();
  y.zeros(n_out, m);
  for (arma::uword j = 0; j < m; ++j) {
    if (spec.output_activation == Activation::kSoftmax) {
      y((j * 7 + 3) % n_out, j) = 1.0;
      continue;
    }
    for (arma::uword i = 0; i < n_out; ++i) {
      const double v = u(rng);
      y(i, j) = spec.output_activation == Activation::kSigmoid ? 0.5 + 0.4 * v
                : spec.output_activation == Activation::kTanh  ? 0.9 * v
                                                               : 2.0 * v;
    }
  }
}

// ---------------------------------------------------------------------------
// Every allowed (hidden, output, cost) combination on 3-4-2 and 3-5-4-2.
using Combo = std::tuple<Activation, std::pair<Activation, Cost>, int>;

class GradientTest : public ::testing::TestWithParam<Combo> {
 protected:
  ModelSpec Spec(uint64_t seed) const {
    const auto& [hidden, out, arch] = GetParam();
    std::vector<uint32_t> sizes = arch == 0 ? std::vector<uint32_t>{3, 4, 2}
                                            : std::vector<uint32_t>{3, 5, 4, 2};
    ModelSpec s = MakeSpec(sizes, hidden, out.first, out.second, seed);
    s.initializer = Initializer::kStandardNormal;
    return s;
  }
};

// Smallest |z| over every ReLU layer of the batch (scalar reference), so the
// test can pick weights whose ReLUs are at least that far from the kink.
double MinReluDistance(const Network<double>& net, const arma::mat& x) {
  const ModelSpec& s = net.spec();
  double closest = 1e300;
  const ScalarNet scalar = ToScalar(net);
  for (arma::uword j = 0; j < x.n_cols; ++j) {
    std::vector<double> col(x.colptr(j), x.colptr(j) + x.n_rows);
    const auto z = ScalarForwardZ(scalar, col, s.hidden_activation);
    const size_t L = net.num_layers() - 1;
    for (size_t l = 1; l <= L; ++l) {
      const Activation f = l == L ? s.output_activation : s.hidden_activation;
      if (f != Activation::kRelu) continue;
      for (double v : z[l]) closest = std::min(closest, std::abs(v));
    }
  }
  return closest;
}

TEST_P(GradientTest, GradientsMatchCentralDifferences) {
  arma::mat x, y;
  // By construction no ReLU sits within 1e-3 of its kink (a step h = 1e-6
  // moves z by far less): take the first seed whose batch satisfies that.
  Network<double> net = Network<double>::Create(Spec(1)).value();
  for (uint64_t seed = 1; seed < 200; ++seed) {
    net = Network<double>::Create(Spec(seed)).value();
    MakeBatch(net.spec(), 5, seed, x, y);
    if (MinReluDistance(net, x) > 1e-3) break;
  }
  ASSERT_GT(MinReluDistance(net, x), 1e-3);

  const Gradients<double> g = net.Backprop(x, y).value();
  EXPECT_NEAR(g.cost, net.Cost(x, y).value(), 1e-14);
  const double h = 1e-6;
  // Relative error |g - fd| / max(|g|, |fd|, floor) <= 1e-7. The cost C is
  // computed with a few ulps of rounding (~4e-16 C), so fd itself is only
  // good to ~4e-16 C / (2h) = 2e-10 C absolute: with floor = 1e-2 max(1, C)
  // the test is relative for gradients >= floor and absolute (1e-9 max(1, C))
  // below it.
  const double floor = 1e-2 * std::max(1.0, g.cost);
  auto check = [&](double* p, double analytic, const std::string& what) {
    const double saved = *p;
    *p = saved + h;
    const double c_plus = net.Cost(x, y).value();
    *p = saved - h;
    const double c_minus = net.Cost(x, y).value();
    *p = saved;
    const double fd = (c_plus - c_minus) / (2 * h);
    const double rel = std::abs(analytic - fd) /
                       std::max({std::abs(analytic), std::abs(fd), floor});
    EXPECT_LE(rel, 1e-7) << what << " analytic " << analytic << " fd " << fd;
  };
  for (size_t l = 1; l < net.num_layers(); ++l) {
    for (arma::uword i = 0; i < net.w(l).n_elem; ++i) {
      check(net.mutable_w(l).memptr() + i, g.nabla_w[l][i],
            "w(" + std::to_string(l) + ")[" + std::to_string(i) + "]");
    }
    for (arma::uword i = 0; i < net.b(l).n_elem; ++i) {
      check(net.mutable_b(l).memptr() + i, g.nabla_b[l][i],
            "b(" + std::to_string(l) + ")[" + std::to_string(i) + "]");
    }
  }
}

TEST_P(GradientTest, Float32GradientsAgreeWithFloat64) {
  ModelSpec spec = Spec(3);
  const Network<double> net = Network<double>::Create(spec).value();
  arma::mat x, y;
  MakeBatch(spec, 6, 3, x, y);
  const Network<float> net32 = net.Cast<float>();
  EXPECT_EQ(net32.spec().dtype, DType::kFloat32);
  const Gradients<double> g = net.Backprop(x, y).value();
  const Gradients<float> g32 = net32
                                   .Backprop(arma::conv_to<arma::fmat>::from(x),
                                             arma::conv_to<arma::fmat>::from(y))
                                   .value();
  EXPECT_NEAR(g32.cost, g.cost, 1e-3 * std::max(1.0, std::abs(g.cost)));
  // float32 carries ~7 digits; 1e-3 relative (floor 1e-3 for entries near
  // zero, where relative error is meaningless) is loose enough for rounding
  // and tight enough to catch a wrong formula.
  for (size_t l = 1; l < net.num_layers(); ++l) {
    for (arma::uword i = 0; i < g.nabla_w[l].n_elem; ++i) {
      const double ref = g.nabla_w[l][i];
      EXPECT_NEAR(g32.nabla_w[l][i], ref, 1e-3 * std::max(std::abs(ref), 1e-3));
    }
    for (arma::uword i = 0; i < g.nabla_b[l].n_elem; ++i) {
      const double ref = g.nabla_b[l][i];
      EXPECT_NEAR(g32.nabla_b[l][i], ref, 1e-3 * std::max(std::abs(ref), 1e-3));
    }
  }
}

TEST_P(GradientTest, CheckGradientsReportsSmallErrors) {
  ModelSpec spec = Spec(5);
  Network<double> net = Network<double>::Create(spec).value();
  arma::mat x, y;
  MakeBatch(spec, 4, 5, x, y);
  const GradientCheckResult r = net.CheckGradients(x, y, 1e-6, 0).value();
  uint32_t total = 0;
  for (size_t l = 1; l < net.num_layers(); ++l) {
    total += net.w(l).n_elem + net.b(l).n_elem;
  }
  EXPECT_EQ(r.parameters_checked, std::min(total, 100u));
  EXPECT_LT(r.max_abs_error, 1e-8);
}

std::string ComboName(const ::testing::TestParamInfo<Combo>& info) {
  const auto& [hidden, out, arch] = info.param;
  return std::string(ActivationName(hidden)) + "_" +
         std::string(ActivationName(out.first)) + "_" +
         std::string(CostName(out.second)) + (arch == 0 ? "_342" : "_3542");
}

INSTANTIATE_TEST_SUITE_P(
    AllowedPairs, GradientTest,
    ::testing::Combine(
        ::testing::Values(Activation::kSigmoid, Activation::kTanh,
                          Activation::kRelu),
        ::testing::Values(
            std::make_pair(Activation::kSigmoid, Cost::kQuadratic),
            std::make_pair(Activation::kTanh, Cost::kQuadratic),
            std::make_pair(Activation::kRelu, Cost::kQuadratic),
            std::make_pair(Activation::kIdentity, Cost::kQuadratic),
            std::make_pair(Activation::kSigmoid, Cost::kCrossEntropy),
            std::make_pair(Activation::kSoftmax, Cost::kCrossEntropy)),
        ::testing::Values(0, 1)),
    ComboName);

// ---------------------------------------------------------------------------
// [2,2,1] sigmoid/quadratic with hand-set weights.
Network<double> HandSetNet() {
  ModelSpec spec = MakeSpec({2, 2, 1}, Activation::kSigmoid,
                            Activation::kSigmoid, Cost::kQuadratic);
  std::vector<arma::mat> w = {arma::mat{{0.15, -0.20}, {0.25, 0.30}},
                              arma::mat{{0.40, -0.45}}};
  std::vector<arma::vec> b = {arma::vec{0.35, -0.10}, arma::vec{0.60}};
  return Network<double>::FromParameters(spec, w, b).value();
}

TEST(BackpropTest, HandSetNetworkMatchesScalarReference) {
  const Network<double> net = HandSetNet();
  const arma::mat x = {{0.05, 1.0}, {0.10, -0.5}};  // two examples (columns)
  const arma::mat y = {{0.01, 0.99}};
  // Golden cost, computed by hand (python3 with the math module only) from
  // the forward pass z1 = w1 x + b1, a1 = sigma(z1), z2 = w2 a1 + b2:
  // example 1: a2 = 0.64905779527, C = 0.5 (0.01 - a2)^2 = 0.20419743285;
  // example 2: a2 = 0.65322886076, C = 0.5 (0.99 - a2)^2 = 0.05670740011;
  // mean = 0.13045241648.
  const Gradients<double> g = net.Backprop(x, y).value();
  EXPECT_NEAR(g.cost, 0.13045241648, 1e-10);

  ScalarNet scalar = ToScalar(net);
  const ScalarGradients ref = ScalarSigmoidQuadratic(
      scalar, {{0.05, 0.10}, {1.0, -0.5}}, {{0.01}, {0.99}});
  EXPECT_NEAR(g.cost, ref.cost, 1e-15);
  for (size_t l = 1; l <= 2; ++l) {
    for (arma::uword j = 0; j < net.w(l).n_rows; ++j) {
      for (arma::uword k = 0; k < net.w(l).n_cols; ++k) {
        EXPECT_NEAR(g.nabla_w[l](j, k), ref.grad.w[l][j][k], 1e-15)
            << "l=" << l << " j=" << j << " k=" << k;
      }
      EXPECT_NEAR(g.nabla_b[l][j], ref.grad.b[l][j], 1e-15);
    }
  }
  const arma::mat a = net.Feedforward(x).value();
  EXPECT_NEAR(a(0, 0), 0.64905779527, 1e-10);
  EXPECT_NEAR(a(0, 1), 0.65322886076, 1e-10);
}

TEST(BackpropTest, LargerRandomNetworkMatchesScalarReference) {
  ModelSpec spec = MakeSpec({5, 7, 6, 3}, Activation::kSigmoid,
                            Activation::kSigmoid, Cost::kQuadratic, 42);
  const Network<double> net = Network<double>::Create(spec).value();
  arma::mat x, y;
  MakeBatch(spec, 9, 42, x, y);
  std::vector<std::vector<double>> xs, ys;
  for (arma::uword j = 0; j < x.n_cols; ++j) {
    xs.emplace_back(x.colptr(j), x.colptr(j) + x.n_rows);
    ys.emplace_back(y.colptr(j), y.colptr(j) + y.n_rows);
  }
  const ScalarGradients ref = ScalarSigmoidQuadratic(ToScalar(net), xs, ys);
  const Gradients<double> g = net.Backprop(x, y).value();
  EXPECT_NEAR(g.cost, ref.cost, 1e-13);
  for (size_t l = 1; l < net.num_layers(); ++l) {
    for (arma::uword j = 0; j < net.w(l).n_rows; ++j) {
      for (arma::uword k = 0; k < net.w(l).n_cols; ++k) {
        EXPECT_NEAR(g.nabla_w[l](j, k), ref.grad.w[l][j][k], 1e-13);
      }
      EXPECT_NEAR(g.nabla_b[l][j], ref.grad.b[l][j], 1e-13);
    }
  }
}

// ---------------------------------------------------------------------------
// A 1 x 1 matrix (brace-initializing one is ambiguous in Armadillo).
template <typename T = double>
arma::Mat<T> One(T v) {
  return arma::Mat<T>(1, 1, arma::fill::value(v));
}

TEST(CostTest, CrossEntropyIsFiniteWhenSigmoidSaturates) {
  // One output with z = 800: a rounds to exactly 1, so a naive ln(1 - a)
  // would be -inf. The exact cost for y = 0 is softplus(800) = 800 (to
  // double precision), for y = 1 it is softplus(-800) ~ e^-800 ~ 0.
  ModelSpec spec = MakeSpec({1, 1}, Activation::kSigmoid, Activation::kSigmoid,
                            Cost::kCrossEntropy);
  Network<double> net =
      Network<double>::FromParameters(spec, {One(1.0)}, {arma::vec{0.0}})
          .value();
  const arma::mat x = One(800.0);
  EXPECT_NEAR(net.Cost(x, One(0.0)).value(), 800.0, 1e-9);
  EXPECT_NEAR(net.Cost(x, One(1.0)).value(), 0.0, 1e-300);
  const Gradients<double> g = net.Backprop(x, One(0.0)).value();
  EXPECT_NEAR(g.nabla_b[1][0], 1.0, 1e-15);  // delta = a - y = 1
}

TEST(CostTest, SoftmaxCrossEntropyUsesLogSumExp) {
  // z = (1000, 0): softmax without the max shift overflows. Expected by
  // hand: for y = (0, 1), C = logsumexp(z) - z_2 = 1000 + log(1 + e^-1000)
  // = 1000; outputs (1, e^-1000 = 0).
  ModelSpec spec = MakeSpec({1, 2}, Activation::kSigmoid, Activation::kSoftmax,
                            Cost::kCrossEntropy);
  Network<double> net =
      Network<double>::FromParameters(
          spec, {arma::mat(arma::colvec{1000.0, 0.0})}, {arma::vec{0.0, 0.0}})
          .value();
  const arma::mat x = One(1.0);
  EXPECT_NEAR(net.Cost(x, arma::mat(arma::colvec{0.0, 1.0})).value(), 1000.0,
              1e-9);
  const arma::mat a = net.Feedforward(x).value();
  EXPECT_NEAR(a(0, 0), 1.0, 1e-15);
  EXPECT_NEAR(a(1, 0), 0.0, 1e-300);
}

TEST(CostTest, FloatNetworkAccumulatesCostInDouble) {
  // 3000 examples, each with quadratic cost 0.5 * 0.1^2 = 0.005 computed
  // from float values: a float accumulator would drift by ~1e-4 relative;
  // the double one stays within float's rounding of the terms (~1e-7).
  ModelSpec spec = MakeSpec({1, 1}, Activation::kSigmoid, Activation::kIdentity,
                            Cost::kQuadratic, 1, DType::kFloat32);
  Network<float> net =
      Network<float>::FromParameters(spec, {One(0.0f)}, {arma::fvec{0.1f}})
          .value();
  const arma::fmat x(1, 3000, arma::fill::zeros);
  const arma::fmat y(1, 3000, arma::fill::zeros);
  EXPECT_NEAR(net.Cost(x, y).value(), 0.005, 0.005 * 1e-6);
}

// ---------------------------------------------------------------------------
TEST(NetworkTest, SameSeedGivesBitwiseIdenticalWeights) {
  ModelSpec spec = MakeSpec({6, 5, 3}, Activation::kTanh, Activation::kSigmoid,
                            Cost::kQuadratic, 77);
  const Network<double> a = Network<double>::Create(spec).value();
  const Network<double> b = Network<double>::Create(spec).value();
  spec.seed = 78;
  const Network<double> c = Network<double>::Create(spec).value();
  for (size_t l = 1; l < a.num_layers(); ++l) {
    EXPECT_EQ(std::memcmp(a.w(l).memptr(), b.w(l).memptr(),
                          a.w(l).n_elem * sizeof(double)),
              0);
    EXPECT_EQ(std::memcmp(a.b(l).memptr(), b.b(l).memptr(),
                          a.b(l).n_elem * sizeof(double)),
              0);
    EXPECT_FALSE(arma::approx_equal(a.w(l), c.w(l), "absdiff", 1e-12));
  }
}

TEST(NetworkTest, FloatAndDoubleFromSameSeedAgreeUpToRounding) {
  ModelSpec spec = MakeSpec({6, 5, 3}, Activation::kTanh, Activation::kSigmoid,
                            Cost::kQuadratic, 9);
  const Network<double> d = Network<double>::Create(spec).value();
  spec.dtype = DType::kFloat32;
  const Network<float> f = Network<float>::Create(spec).value();
  for (size_t l = 1; l < d.num_layers(); ++l) {
    for (arma::uword i = 0; i < d.w(l).n_elem; ++i) {
      EXPECT_EQ(f.w(l)[i], static_cast<float>(d.w(l)[i]));
    }
    for (arma::uword i = 0; i < d.b(l).n_elem; ++i) {
      EXPECT_EQ(f.b(l)[i], static_cast<float>(d.b(l)[i]));
    }
  }
}

TEST(NetworkTest, InitializersHaveTheDocumentedSpread) {
  // 400 x 100 weights: the sample standard deviation of 40,000 N(0, s^2)
  // draws is within 2% of s with overwhelming probability (its own standard
  // error is s / sqrt(2 * 40000) = 0.35% of s).
  ModelSpec spec = MakeSpec({400, 100, 1}, Activation::kSigmoid,
                            Activation::kSigmoid, Cost::kQuadratic, 3);
  spec.initializer = Initializer::kStandardNormal;
  const Network<double> standard = Network<double>::Create(spec).value();
  EXPECT_NEAR(arma::stddev(arma::vectorise(standard.w(1))), 1.0, 0.02);
  spec.initializer = Initializer::kScaledNormal;
  const Network<double> scaled = Network<double>::Create(spec).value();
  EXPECT_NEAR(arma::stddev(arma::vectorise(scaled.w(1))), 1.0 / 20.0,
              0.02 / 20.0);
  EXPECT_NEAR(arma::stddev(scaled.b(1)), 1.0, 0.2);  // 100 draws: +-7% s.e.
}

TEST(NetworkTest, CreateRejectsBadSpecAndDTypeMismatch) {
  ModelSpec spec = MakeSpec({3}, Activation::kSigmoid, Activation::kSigmoid,
                            Cost::kQuadratic);
  EXPECT_EQ(Network<double>::Create(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec.layer_sizes = {3, 2};
  spec.dtype = DType::kFloat32;
  EXPECT_EQ(Network<double>::Create(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Network<float>::Create(spec).ok());
  absl::StatusOr<AnyNetwork> any = CreateAnyNetwork(spec);
  ASSERT_TRUE(any.ok());
  EXPECT_TRUE(std::holds_alternative<Network<float>>(*any));
}

TEST(NetworkTest, FromParametersRejectsWrongShapesAndNonFinite) {
  ModelSpec spec = MakeSpec({2, 2, 1}, Activation::kSigmoid,
                            Activation::kSigmoid, Cost::kQuadratic);
  const arma::mat w1(2, 2, arma::fill::ones), w2(1, 2, arma::fill::ones);
  const arma::vec b1(2, arma::fill::ones), b2(1, arma::fill::ones);
  EXPECT_TRUE(Network<double>::FromParameters(spec, {w1, w2}, {b1, b2}).ok());
  EXPECT_EQ(Network<double>::FromParameters(spec, {w1}, {b1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Network<double>::FromParameters(spec, {w2, w1}, {b1, b2}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Network<double>::FromParameters(spec, {w1, w2}, {b2, b2}).status().code(),
      absl::StatusCode::kInvalidArgument);
  arma::mat bad = w1;
  bad(1, 0) = std::nan("");
  EXPECT_EQ(Network<double>::FromParameters(spec, {bad, w2}, {b1, b2})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NetworkTest, BadShapesAreInvalidArgumentNotExceptions) {
  const Network<double> net = HandSetNet();  // 2 inputs, 1 output
  EXPECT_EQ(net.Feedforward(arma::mat(3, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(net.Feedforward(arma::mat(2, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  const arma::mat x(2, 4, arma::fill::zeros);
  EXPECT_EQ(net.Backprop(x, arma::mat(2, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(net.Backprop(x, arma::mat(1, 3)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(net.Cost(arma::mat(1, 4), arma::mat(1, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(net.CheckGradients(x, arma::mat(1, 4, arma::fill::zeros), 0.0, 10)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(net.CheckGradients(x, arma::mat(3, 4), 1e-6, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NetworkTest, FeedforwardOfLargeBatchEqualsColumnByColumn) {
  // 2500 columns cross the engine's internal chunk boundaries; each column
  // fed alone (the GEMV path for one example, not GEMM) must give the same
  // output.
  ModelSpec spec = MakeSpec({4, 6, 3}, Activation::kRelu, Activation::kSoftmax,
                            Cost::kCrossEntropy, 11);
  const Network<double> net = Network<double>::Create(spec).value();
  arma::mat x, y;
  MakeBatch(spec, 2500, 11, x, y);
  const arma::mat a = net.Feedforward(x).value();
  ASSERT_EQ(a.n_cols, 2500u);
  for (arma::uword j : {0u, 1023u, 1024u, 2047u, 2048u, 2499u}) {
    const arma::mat one = net.Feedforward(x.col(j)).value();
    for (arma::uword i = 0; i < 3; ++i) EXPECT_NEAR(a(i, j), one(i, 0), 1e-15);
    EXPECT_NEAR(arma::accu(a.col(j)), 1.0, 1e-12);  // softmax sums to 1
  }
  // Backprop over the chunks equals the mean of per-half gradients.
  const Gradients<double> g = net.Backprop(x, y).value();
  const Gradients<double> g1 =
      net.Backprop(x.cols(0, 1249), y.cols(0, 1249)).value();
  const Gradients<double> g2 =
      net.Backprop(x.cols(1250, 2499), y.cols(1250, 2499)).value();
  EXPECT_NEAR(g.cost, 0.5 * (g1.cost + g2.cost), 1e-12);
  for (size_t l = 1; l < net.num_layers(); ++l) {
    EXPECT_TRUE(arma::approx_equal(
        g.nabla_w[l], 0.5 * (g1.nabla_w[l] + g2.nabla_w[l]), "absdiff", 1e-12));
  }
}

// internal::Gemv (one example's z = w a + b) sweeps w's columns with the
// outputs in vector-sized chunks of rows, the last chunk overlapping the one
// before it when the width is not a multiple of the vector; below one
// vector's width it calls BLAS. Every width around those edges (both
// vector widths, 4 to 16 lanes), with 1, 3 and 784 inputs, must match a
// long double computation of the same sums to within the rounding of a
// k-term sum, and the batch path (GEMM) for the same columns.
template <typename T>
void ExpectGemvMatchesLongDouble() {
  const double eps = std::numeric_limits<T>::epsilon();
  for (arma::uword m : {1u, 7u, 8u, 9u, 15u, 16u, 17u, 23u, 30u, 31u, 32u,
                        33u, 63u, 64u, 65u, 100u, 129u, 200u}) {
    for (arma::uword k : {1u, 3u, 784u}) {
      arma::arma_rng::set_seed(m * 1000 + k);
      const arma::Mat<T> w = arma::randn<arma::Mat<T>>(m, k);
      const arma::Col<T> x = arma::randu<arma::Col<T>>(k);
      const arma::Col<T> b = arma::randn<arma::Col<T>>(m);
      arma::Col<T> y = b;
      internal::Gemv<T>(m, k, w.memptr(), m, x.memptr(), y.memptr());
      for (arma::uword i = 0; i < m; ++i) {
        long double exact = b(i);
        long double magnitude = std::fabs(static_cast<long double>(b(i)));
        for (arma::uword p = 0; p < k; ++p) {
          const long double t = static_cast<long double>(w(i, p)) * x(p);
          exact += t;
          magnitude += std::fabs(t);
        }
        // A sum of k + 1 terms in T: error at most ~(k + 1) eps |terms|.
        const long double bound = (k + 1) * eps * magnitude + 1e-300;
        ASSERT_LE(std::fabs(y(i) - exact), bound)
            << "m=" << m << " k=" << k << " row " << i;
      }
      // The batch path for the same column, twice (GEMM).
      arma::Mat<T> y2(m, 2);
      y2.each_col() = b;
      const arma::Mat<T> x2 = arma::join_rows(x, x);
      internal::Gemm<T>('N', 'N', m, 2, k, T{1}, w.memptr(), m, x2.memptr(),
                        k, T{1}, y2.memptr(), m);
      for (arma::uword i = 0; i < m; ++i) {
        const double scale = std::max(1.0, std::fabs(double(y2(i, 0))));
        ASSERT_NEAR(double(y(i)), double(y2(i, 0)), 4 * k * eps * scale * 8)
            << "m=" << m << " k=" << k << " row " << i;
      }
    }
  }
}

TEST(GemvTest, EveryWidthMatchesLongDoubleAndGemm) {
  ExpectGemvMatchesLongDouble<double>();
  ExpectGemvMatchesLongDouble<float>();
}

// The activations run through glibc's vector math library on x86-64 (core/
// network.cc). Every width of the layer goes through the vector loop and its
// remainder, so sigma(z) for 4099 values of z over the whole range must
// stay within 8 ulps of a long double computation (libmvec's exp and tanh
// are within 4; the formula adds two roundings), or within the smallest
// normal number where the true value is below it (1 / (1 + e^-z) gives 0
// there, with or without vectors).
template <typename T>
void ExpectActivationMatchesLongDouble(Activation hidden) {
  const bool is_tanh = hidden == Activation::kTanh;
  const arma::uword k = 4099;  // not a multiple of any vector width
  std::vector<long double> z(k);
  for (arma::uword j = 0; j < k; ++j) {
    const double t = static_cast<double>(j) / (k - 1) * 2.0 - 1.0;  // -1..1
    // Dense near 0, reaching +-800 (where exp overflows) at the ends.
    z[j] = static_cast<long double>(static_cast<T>(800.0 * t * t * t));
  }
  z[k / 2] = 0;
  // sigmoid: [1, k] with a sigmoid output; tanh: [1, k, k] whose identity
  // output layer copies the tanh layer exactly (1 * a + 0 * the others).
  ModelSpec spec = MakeSpec(is_tanh ? std::vector<uint32_t>{1, k, k}
                                    : std::vector<uint32_t>{1, k},
                            hidden,
                            is_tanh ? Activation::kIdentity
                                    : Activation::kSigmoid,
                            Cost::kQuadratic, 1,
                            std::is_same_v<T, float> ? DType::kFloat32
                                                     : DType::kFloat64);
  std::vector<arma::Mat<T>> w;
  std::vector<arma::Col<T>> b;
  arma::Mat<T> w1(k, 1);
  for (arma::uword j = 0; j < k; ++j) w1(j, 0) = static_cast<T>(z[j]);
  w.push_back(w1);
  b.push_back(arma::Col<T>(k, arma::fill::zeros));
  if (is_tanh) {
    w.push_back(arma::Mat<T>(k, k, arma::fill::eye));
    b.push_back(arma::Col<T>(k, arma::fill::zeros));
  }
  const Network<T> net = Network<T>::FromParameters(spec, w, b).value();
  const arma::Mat<T> a = net.Feedforward(arma::Mat<T>(1, 1, arma::fill::ones))
                             .value();
  ASSERT_EQ(a.n_rows, k);
  double worst = 0;
  for (arma::uword j = 0; j < k; ++j) {
    const long double want =
        is_tanh ? std::tanh(z[j]) : 1.0L / (1.0L + std::exp(-z[j]));
    const T rounded = static_cast<T>(want);
    const T ulp = std::max(
        std::nextafter(std::fabs(rounded), std::numeric_limits<T>::infinity()) -
            std::fabs(rounded),
        std::numeric_limits<T>::denorm_min());
    const long double err = std::fabs(static_cast<long double>(a(j, 0)) - want);
    if (std::fabs(want) < std::numeric_limits<T>::min()) {
      EXPECT_LE(err, std::numeric_limits<T>::min()) << "z = " << z[j];
      continue;
    }
    const double ulps = static_cast<double>(err / ulp);
    worst = std::max(worst, ulps);
    EXPECT_LE(ulps, 8.0) << "z = " << z[j] << ": got " << a(j, 0)
                         << ", want " << static_cast<double>(want);
  }
  ::testing::Test::RecordProperty("worst_ulps", std::to_string(worst));
}

TEST(ActivationTest, SigmoidWithinEightUlpsFloat64) {
  ExpectActivationMatchesLongDouble<double>(Activation::kSigmoid);
}
TEST(ActivationTest, SigmoidWithinEightUlpsFloat32) {
  ExpectActivationMatchesLongDouble<float>(Activation::kSigmoid);
}
TEST(ActivationTest, TanhWithinEightUlpsFloat64) {
  ExpectActivationMatchesLongDouble<double>(Activation::kTanh);
}
TEST(ActivationTest, TanhWithinEightUlpsFloat32) {
  ExpectActivationMatchesLongDouble<float>(Activation::kTanh);
}

TEST(NetworkTest, CheckGradientsCatchesAWrongGradient) {
  // A check that always passes would be useless: with eps far too large the
  // central difference of a curved cost must disagree with the gradient.
  ModelSpec spec = MakeSpec({3, 4, 2}, Activation::kSigmoid,
                            Activation::kSigmoid, Cost::kQuadratic, 8);
  spec.initializer = Initializer::kStandardNormal;
  const Network<double> net = Network<double>::Create(spec).value();
  arma::mat x, y;
  MakeBatch(spec, 4, 8, x, y);
  EXPECT_LT(net.CheckGradients(x, y, 1e-6, 0).value().max_rel_error, 1e-5);
  EXPECT_GT(net.CheckGradients(x, y, 3.0, 0).value().max_rel_error, 1e-2);
  EXPECT_EQ(net.CheckGradients(x, y, 1e-6, 7).value().parameters_checked, 7u);
}

}  // namespace
}  // namespace backprop

namespace backprop {
namespace {

// The server pins OpenBLAS to one thread per call (core/blas.h). Our
// packages install OpenBLAS as the BLAS, so the controls must be found and
// must take effect.
TEST(BlasThreadsTest, SetsOpenBlasThreadCount) {
  const int before = BlasThreads();
  ASSERT_GT(before, 0) << "the loaded BLAS is not OpenBLAS";
  ASSERT_TRUE(SetBlasThreads(2));
  EXPECT_EQ(BlasThreads(), 2);
  ASSERT_TRUE(SetBlasThreads(1));
  EXPECT_EQ(BlasThreads(), 1);
  EXPECT_FALSE(SetBlasThreads(0));
  EXPECT_EQ(BlasThreads(), 1);
  SetBlasThreads(before);
}

}  // namespace
}  // namespace backprop
