// Seconds per training epoch of backprop::Train on the full Fashion-MNIST
// training set (60,000 examples), and the same epoch's matrix products as
// bare BLAS GEMM calls with nothing else (no activation, no shuffle, no
// update): the floor for an epoch built on BLAS. (The engine's own fused
// kernels for small mini-batches can go below it.) Nielsen, NNDL ch. 2 gives
// the equations (BP1-BP4).
//
// Configs (all sigmoid, quadratic cost, STANDARD_NORMAL initial weights as in
// network.py):
//   A = [784, 30, 10], mini-batch 10, eta = 3.0 (float64 and float32)
//   C = [784, 256, 128, 10], mini-batch 64, eta = 3.0 (float32)
// BM_Epoch/<config>/<dtype>/1: each iteration is one Train call of one epoch,
// so real time per iteration is s/epoch including the per-call setup; /4 is
// one call of 4 epochs per iteration (setup amortised). The counter
// s_per_epoch is time / epochs for both, and sgd_s_per_epoch is Train's own
// clock of the SGD loop (EpochMetrics.seconds). Run with OPENBLAS_NUM_THREADS
// pinned (scripts/bench.sh pins it to 1); the data directory can be
// overridden with BACKPROP_FASHION_MNIST_DIR.
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include <armadillo>

#include "core/dataset.h"
#include "core/network.h"
#include "core/readers.h"
#include "core/spec.h"
#include "core/trainer.h"
#include <benchmark/benchmark.h>
#include <cblas.h>

namespace backprop {
namespace {

struct BenchConfig {
  const char* name;
  std::vector<uint32_t> sizes;
  uint32_t mini_batch_size;
  double eta;
};

const BenchConfig kConfigA = {"A", {784, 30, 10}, 10, 3.0};
const BenchConfig kConfigC = {"C", {784, 256, 128, 10}, 64, 3.0};

// Loaded once per process; a missing data set ends the run with a message
// (there is nothing meaningful to time without it).
const Dataset& TrainingSet() {
  static const Dataset* const kData = [] {
    const char* env = getenv("BACKPROP_FASHION_MNIST_DIR");
    const std::string dir = env != nullptr ? env : kFashionMnistDir;
    absl::StatusOr<Dataset> d = ReadFashionMnist(dir, /*train=*/true);
    if (!d.ok()) {
      std::cerr << "engine_bench: cannot read Fashion-MNIST from " << dir
                << ": " << d.status() << "\n";
      exit(2);
    }
    return new Dataset(*std::move(d));
  }();
  return *kData;
}

template <typename T>
constexpr DType kDTypeOf =
    std::is_same_v<T, double> ? DType::kFloat64 : DType::kFloat32;

// The config's network: sigmoid layers, quadratic cost, STANDARD_NORMAL
// initial weights from seed 1, element type T.
template <typename T>
ModelSpec SpecOf(const BenchConfig& config) {
  ModelSpec spec;
  spec.layer_sizes = config.sizes;
  spec.hidden_activation = Activation::kSigmoid;
  spec.output_activation = Activation::kSigmoid;
  spec.cost = Cost::kQuadratic;
  spec.initializer = Initializer::kStandardNormal;
  spec.seed = 1;
  spec.dtype = kDTypeOf<T>;
  return spec;
}

template <typename T>
void BM_Epoch(benchmark::State& state, const BenchConfig& config) {
  const Dataset& data = TrainingSet();
  const ModelSpec spec = SpecOf<T>(config);
  absl::StatusOr<Network<T>> net = Network<T>::Create(spec);
  if (!net.ok()) {
    state.SkipWithError(std::string(net.status().message()).c_str());
    return;
  }
  TrainOptions options;
  // range(0) epochs per Train call: 1 is the figure asked for (setup and all),
  // 4 shows the per-call setup amortised as in a real multi-epoch run.
  options.epochs = static_cast<uint32_t>(state.range(0));
  options.mini_batch_size = config.mini_batch_size;
  options.eta = config.eta;
  // The same network keeps training from one iteration to the next (an
  // epoch costs the same whatever the weights); a new shuffle each time.
  uint64_t shuffle_seed = 0;
  // Train's own clock for the epoch's SGD, which leaves out the per-call
  // setup (workspace, float copy of the inputs) that a multi-epoch call pays
  // once.
  double sgd_seconds = 0;
  TrainCallbacks<T> callbacks;
  callbacks.on_epoch = [&](const EpochMetrics& m, const Network<T>&) {
    sgd_seconds += m.seconds;
    return absl::OkStatus();
  };
  for (auto _ : state) {
    options.shuffle_seed = ++shuffle_seed;
    absl::Status s = Train<T>(*net, data, /*validation=*/nullptr, options,
                              callbacks, /*cancel=*/nullptr);
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
  }
  state.counters["s_per_epoch"] = benchmark::Counter(
      options.epochs, benchmark::Counter::kIsIterationInvariantRate |
                          benchmark::Counter::kInvert);
  state.counters["epochs_per_call"] = options.epochs;
  state.counters["examples_per_s"] =
      benchmark::Counter(static_cast<double>(data.size()),
                         benchmark::Counter::kIsIterationInvariantRate);
  state.counters["sgd_s_per_epoch"] = benchmark::Counter(
      sgd_seconds / static_cast<double>(state.iterations() * options.epochs));
  state.SetLabel(std::string(config.name) + " " +
                 std::string(DTypeName(spec.dtype)));
}

// What one Predict call costs the engine: Network::Feedforward of the first
// range(0) training examples (1: a single example, as `backprop bench`
// sends; 256: a batch) on a freshly initialized network of the config.
template <typename T>
void BM_Feedforward(benchmark::State& state, const BenchConfig& config) {
  const Dataset& data = TrainingSet();
  const ModelSpec spec = SpecOf<T>(config);
  const Network<T> net = Network<T>::Create(spec).value();
  const arma::uword m = static_cast<arma::uword>(state.range(0));
  const arma::Mat<T> x =
      arma::conv_to<arma::Mat<T>>::from(data.inputs.cols(0, m - 1));
  for (auto _ : state) {
    absl::StatusOr<arma::Mat<T>> a = net.Feedforward(x);
    benchmark::DoNotOptimize(a);
  }
  state.counters["examples_per_s"] = benchmark::Counter(
      static_cast<double>(m), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(config.name) + " " +
                 std::string(DTypeName(spec.dtype)));
}

// Column-major C (M x N) = op(A) op(B), leading dimensions = row counts.
void Gemm(bool trans_a, bool trans_b, int M, int N, int K, const double* A,
          int lda, const double* B, int ldb, double* C, int ldc) {
  cblas_dgemm(CblasColMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0, A, lda, B, ldb,
              0.0, C, ldc);
}
void Gemm(bool trans_a, bool trans_b, int M, int N, int K, const float* A,
          int lda, const float* B, int ldb, float* C, int ldc) {
  cblas_sgemm(CblasColMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda, B,
              ldb, 0.0f, C, ldc);
}

// The GEMMs of one epoch at the config's shapes, over consecutive mini-batches
// of the real inputs. range(0) == 0: only the products backprop needs,
//   z^l = w^l a^{l-1}            (feedforward, l = 1..L)
//   w^{l+1 T} delta^{l+1}        (BP2, l = L-1..1)
//   delta^l a^{l-1 T}            (BP4, l = 1..L),
// i.e. 3L - 1 per batch; range(0) == 1: all three per layer (3L, adding
// w^{1 T} delta^1, which no one needs) for comparison with floors quoted that
// way.
template <typename T>
void BM_GemmFloor(benchmark::State& state, const BenchConfig& config) {
  const bool all_three = state.range(0) == 1;
  const Dataset& data = TrainingSet();
  const arma::Mat<T> x = arma::conv_to<arma::Mat<T>>::from(data.inputs);
  const std::vector<uint32_t>& n = config.sizes;
  const size_t L = n.size() - 1;
  const int max_m = static_cast<int>(config.mini_batch_size);
  std::mt19937_64 rng(1);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<arma::Mat<T>> w(L + 1), nabla_w(L + 1), a(L + 1), delta(L + 1);
  for (size_t l = 1; l <= L; ++l) {
    w[l].set_size(n[l], n[l - 1]);
    w[l].imbue([&] { return static_cast<T>(normal(rng) / n[l - 1]); });
    nabla_w[l].zeros(n[l], n[l - 1]);
    a[l].zeros(n[l], max_m);
    delta[l].set_size(n[l], max_m);
    delta[l].imbue([&] { return static_cast<T>(normal(rng) * 0.01); });
  }
  delta[0].zeros(n[0], max_m);  // only written when all_three
  const int examples = static_cast<int>(x.n_cols);
  for (auto _ : state) {
    for (int k = 0; k < examples; k += max_m) {
      const int m = std::min(max_m, examples - k);
      const T* a0 = x.colptr(k);
      auto act = [&](size_t l) { return l == 0 ? a0 : a[l].memptr(); };
      for (size_t l = 1; l <= L; ++l) {
        Gemm(false, false, n[l], m, n[l - 1], w[l].memptr(), n[l], act(l - 1),
             n[l - 1], a[l].memptr(), n[l]);
      }
      for (size_t l = L; l >= (all_three ? 1 : 2); --l) {
        Gemm(true, false, n[l - 1], m, n[l], w[l].memptr(), n[l],
             delta[l].memptr(), n[l], delta[l - 1].memptr(), n[l - 1]);
      }
      for (size_t l = 1; l <= L; ++l) {
        Gemm(false, true, n[l], n[l - 1], m, delta[l].memptr(), n[l],
             act(l - 1), n[l - 1], nabla_w[l].memptr(), n[l]);
      }
    }
    benchmark::DoNotOptimize(nabla_w[1].memptr());
    benchmark::ClobberMemory();
  }
  state.counters["s_per_epoch"] =
      benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate |
                                benchmark::Counter::kInvert);
  state.SetLabel(std::string(config.name) +
                 (all_three ? " 3 per layer" : " needed only"));
}

// Repetitions give a spread on a shared machine; scripts/bench.sh reads the
// "min" aggregate (the least disturbed run), and the mean/median are printed
// too.
double MinOf(const std::vector<double>& v) {
  return *std::min_element(v.begin(), v.end());
}

// Registered by hand rather than with BENCHMARK_CAPTURE, whose generated
// variable names cannot contain a template argument list.
void Register(const char* name,
              void (*fn)(benchmark::State&, const BenchConfig&),
              const BenchConfig& config, int iterations,
              std::vector<int64_t> args) {
  benchmark::internal::Benchmark* b =
      benchmark::RegisterBenchmark(name, fn, config)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->Iterations(iterations)
          ->Repetitions(3)
          ->ComputeStatistics("min", MinOf);
  for (int64_t a : args) b->Arg(a);
}

void RegisterAll() {
  Register("BM_Epoch/A/float64", BM_Epoch<double>, kConfigA, 3, {1});
  Register("BM_Epoch/A/float64", BM_Epoch<double>, kConfigA, 1, {4});
  Register("BM_Epoch/A/float32", BM_Epoch<float>, kConfigA, 3, {1});
  Register("BM_Epoch/A/float32", BM_Epoch<float>, kConfigA, 1, {4});
  Register("BM_Epoch/C/float32", BM_Epoch<float>, kConfigC, 2, {1});
  Register("BM_Epoch/C/float32", BM_Epoch<float>, kConfigC, 1, {4});
  Register("BM_GemmFloor/A/float64", BM_GemmFloor<double>, kConfigA, 3, {0, 1});
  Register("BM_GemmFloor/A/float32", BM_GemmFloor<float>, kConfigA, 3, {0});
  Register("BM_GemmFloor/C/float32", BM_GemmFloor<float>, kConfigC, 2, {0});
  for (int64_t m : {1, 256}) {
    benchmark::RegisterBenchmark("BM_Feedforward/A/float64",
                                 BM_Feedforward<double>, kConfigA)
        ->Unit(benchmark::kMicrosecond)
        ->Arg(m);
    benchmark::RegisterBenchmark("BM_Feedforward/A/float32",
                                 BM_Feedforward<float>, kConfigA)
        ->Unit(benchmark::kMicrosecond)
        ->Arg(m);
  }
}

}  // namespace
}  // namespace backprop

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  backprop::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
