// Trains one fully-connected network on Fashion-MNIST with backprop::Train and
// prints the test-set accuracy after every epoch as a table, then the best and
// final accuracy. It exists to record BENCHMARKS.md's accuracy runs with the
// exact settings on the command line; flag defaults are Config A
// ([784, 30, 10], sigmoid, quadratic cost, mini-batch 10, eta = 3.0, 30
// epochs). Nielsen, NNDL ch. 1-3 describe the network and the SGD update.
//
//   accuracy --sizes=784,512,256,10 --hidden=relu --output=softmax \
//       --cost=cross_entropy --init=scaled --batch=64 --eta=0.01 --mu=0.9 \
//       --lambda=10 --epochs=40
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#include "core/dataset.h"
#include "core/network.h"
#include "core/readers.h"
#include "core/spec.h"
#include "core/trainer.h"

ABSL_FLAG(std::string, sizes, "784,30,10", "layer sizes n_0,...,n_L");
ABSL_FLAG(std::string, hidden, "sigmoid",
          "hidden activation: sigmoid|tanh|relu");
ABSL_FLAG(std::string, output, "sigmoid",
          "output activation: sigmoid|tanh|relu|softmax|identity");
ABSL_FLAG(std::string, cost, "quadratic", "quadratic|cross_entropy");
ABSL_FLAG(std::string, init, "standard",
          "standard (w, b ~ N(0,1)) | scaled (w ~ N(0, 1/n_in))");
ABSL_FLAG(std::string, dtype, "float64", "float64|float32");
ABSL_FLAG(uint64_t, seed, 1, "initial-weights seed");
ABSL_FLAG(uint64_t, shuffle_seed, 1, "mini-batch shuffle seed");
ABSL_FLAG(uint32_t, epochs, 30, "epochs");
ABSL_FLAG(uint32_t, batch, 10, "mini-batch size");
ABSL_FLAG(double, eta, 3.0, "learning rate");
ABSL_FLAG(double, mu, 0.0, "momentum");
ABSL_FLAG(double, lambda, 0.0, "L2 lambda; g_w gets + (lambda/n) w");
ABSL_FLAG(uint64_t, train_examples, 0,
          "use only the first N training examples (0 = all 60,000)");
ABSL_FLAG(std::string, data_dir, backprop::kFashionMnistDir,
          "folder with the four Fashion-MNIST .gz files");

namespace backprop {
namespace {

template <typename E>
absl::StatusOr<E> ParseName(const std::string& flag, const std::string& value,
                            std::vector<std::pair<const char*, E>> names) {
  for (const auto& [name, e] : names) {
    if (value == name) return e;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, ": unknown value '", value, "'"));
}

absl::StatusOr<ModelSpec> SpecFromFlags() {
  ModelSpec spec;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',')) {
    uint32_t n = 0;
    if (!absl::SimpleAtoi(s, &n)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sizes: not a number: '", s, "'"));
    }
    spec.layer_sizes.push_back(n);
  }
  const std::vector<std::pair<const char*, Activation>> activations = {
      {"sigmoid", Activation::kSigmoid},
      {"tanh", Activation::kTanh},
      {"relu", Activation::kRelu},
      {"softmax", Activation::kSoftmax},
      {"identity", Activation::kIdentity}};
  absl::StatusOr<Activation> hidden =
      ParseName("hidden", absl::GetFlag(FLAGS_hidden), activations);
  if (!hidden.ok()) return hidden.status();
  absl::StatusOr<Activation> output =
      ParseName("output", absl::GetFlag(FLAGS_output), activations);
  if (!output.ok()) return output.status();
  absl::StatusOr<Cost> cost =
      ParseName<Cost>("cost", absl::GetFlag(FLAGS_cost),
                      {{"quadratic", Cost::kQuadratic},
                       {"cross_entropy", Cost::kCrossEntropy}});
  if (!cost.ok()) return cost.status();
  absl::StatusOr<Initializer> init =
      ParseName<Initializer>("init", absl::GetFlag(FLAGS_init),
                             {{"standard", Initializer::kStandardNormal},
                              {"scaled", Initializer::kScaledNormal}});
  if (!init.ok()) return init.status();
  absl::StatusOr<DType> dtype = ParseName<DType>(
      "dtype", absl::GetFlag(FLAGS_dtype),
      {{"float64", DType::kFloat64}, {"float32", DType::kFloat32}});
  if (!dtype.ok()) return dtype.status();
  spec.hidden_activation = *hidden;
  spec.output_activation = *output;
  spec.cost = *cost;
  spec.initializer = *init;
  spec.dtype = *dtype;
  spec.seed = absl::GetFlag(FLAGS_seed);
  // No parameter limit here: this is a local tool, not the service.
  if (absl::Status s = ValidateSpec(spec, UINT64_MAX); !s.ok()) return s;
  return spec;
}

template <typename T>
absl::Status Run(Network<T> net, const Dataset& train, const Dataset& test,
                 const TrainOptions& options) {
  double best = 0, final_accuracy = 0;
  uint32_t best_epoch = 0;
  double train_seconds = 0;
  std::printf("%5s %9s %10s %9s\n", "epoch", "test_acc", "test_cost",
              "train_s");
  TrainCallbacks<T> callbacks;
  callbacks.on_epoch = [&](const EpochMetrics& m, const Network<T>&) {
    std::printf("%5u %9.4f %10.5f %9.2f\n", m.epoch, m.validation_accuracy,
                m.validation_cost, m.seconds);
    std::fflush(stdout);
    train_seconds += m.seconds;
    final_accuracy = m.validation_accuracy;
    if (m.validation_accuracy > best) {
      best = m.validation_accuracy;
      best_epoch = m.epoch;
    }
    return absl::OkStatus();
  };
  absl::Status s = Train<T>(net, train, &test, options, callbacks,
                            /*cancel=*/nullptr);
  std::printf(
      "best test accuracy %.4f at epoch %u; final %.4f; SGD time %.1f s\n",
      best, best_epoch, final_accuracy, train_seconds);
  return s;
}

int Main() {
  absl::StatusOr<ModelSpec> spec = SpecFromFlags();
  if (!spec.ok()) {
    std::cerr << "accuracy: " << spec.status() << "\n";
    return 2;
  }
  const std::string dir = absl::GetFlag(FLAGS_data_dir);
  absl::StatusOr<Dataset> train = ReadFashionMnist(dir, /*train=*/true);
  absl::StatusOr<Dataset> test = ReadFashionMnist(dir, /*train=*/false);
  if (!train.ok() || !test.ok()) {
    std::cerr << "accuracy: cannot read Fashion-MNIST from " << dir << ": "
              << (train.ok() ? test.status() : train.status()) << "\n";
    return 2;
  }
  if (uint64_t k = absl::GetFlag(FLAGS_train_examples); k > 0) {
    *train = train->Slice(0, k);
  }
  TrainOptions options;
  options.epochs = absl::GetFlag(FLAGS_epochs);
  options.mini_batch_size = absl::GetFlag(FLAGS_batch);
  options.eta = absl::GetFlag(FLAGS_eta);
  options.mu = absl::GetFlag(FLAGS_mu);
  options.lambda = absl::GetFlag(FLAGS_lambda);
  options.shuffle_seed = absl::GetFlag(FLAGS_shuffle_seed);
  if (absl::Status s = ValidateTrainOptions(options); !s.ok()) {
    std::cerr << "accuracy: " << s << "\n";
    return 2;
  }
  absl::StatusOr<AnyNetwork> net = CreateAnyNetwork(*spec);
  if (!net.ok()) {
    std::cerr << "accuracy: " << net.status() << "\n";
    return 2;
  }
  std::printf(
      "sizes %s hidden %s output %s cost %s init %s dtype %s seed %llu | "
      "n %llu batch %u eta %g mu %g lambda %g epochs %u shuffle_seed %llu\n",
      absl::GetFlag(FLAGS_sizes).c_str(),
      std::string(ActivationName(spec->hidden_activation)).c_str(),
      std::string(ActivationName(spec->output_activation)).c_str(),
      std::string(CostName(spec->cost)).c_str(),
      std::string(InitializerName(spec->initializer)).c_str(),
      std::string(DTypeName(spec->dtype)).c_str(),
      static_cast<unsigned long long>(spec->seed),
      static_cast<unsigned long long>(train->size()), options.mini_batch_size,
      options.eta, options.mu, options.lambda, options.epochs,
      static_cast<unsigned long long>(options.shuffle_seed));
  absl::Status s = std::visit(
      [&](auto& n) { return Run(std::move(n), *train, *test, options); }, *net);
  if (!s.ok()) {
    std::cerr << "accuracy: training stopped: " << s << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace backprop

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Trains on Fashion-MNIST and prints test accuracy per epoch.");
  absl::ParseCommandLine(argc, argv);
  return backprop::Main();
}
