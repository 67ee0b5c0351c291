// backprop-service-bench: what the service costs on top of the engine.
//   1. Config A ([784, 30, 10], mini-batch 10, eta 3, Fashion-MNIST) trained
//      through the service over a loopback TCP channel vs by core::Train
//      directly, in alternating rounds (engine call, service call, engine
//      call, ...) so both see the same machine: wall seconds per epoch of
//      each whole call (setup, saving every epoch, streaming included), the
//      median over the rounds, and the ratio of the medians.
//   2. Single-example Predict (784 float64 inputs) vs
//      grpc.health.v1.Health/Check on the same channel, alternating call by
//      call: p50 / p99 latency.
// A measurement tool, not a test: prints numbers, asserts nothing.
// Usage: backprop-service-bench [epochs per call, 2] [calls, 5000] [rounds, 5]
// (BLAS runs with one thread, as the server's --blas_threads default.)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "backprop/v1/backprop.grpc.pb.h"
#include "core/blas.h"
#include "core/network.h"
#include "core/readers.h"
#include "core/trainer.h"
#include "server/server.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  const int epochs = argc > 1 ? std::atoi(argv[1]) : 2;
  const int calls = argc > 2 ? std::atoi(argv[2]) : 5000;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
  if (epochs < 1 || calls < 1 || rounds < 1) {
    std::fprintf(stderr, "usage: %s [epochs>=1] [calls>=1] [rounds>=1]\n",
                 argv[0]);
    return 2;
  }
  backprop::SetBlasThreads(1);
  backprop::ModelSpec spec;
  spec.layer_sizes = {784, 30, 10};
  spec.seed = 1;
  backprop::TrainOptions opts;
  opts.epochs = epochs;
  opts.mini_batch_size = 10;
  opts.eta = 3.0;
  opts.shuffle_seed = 7;

  absl::StatusOr<backprop::Dataset> train =
      backprop::ReadFashionMnist(backprop::kFashionMnistDir, true);
  if (!train.ok()) {
    std::fprintf(stderr, "%s\n", train.status().ToString().c_str());
    return 1;
  }

  char dir_template[] = "/tmp/service_bench.XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  backprop::server::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.service.model_dir = dir + "/models";
  o.service.data_dir = dir + "/datasets";
  o.preload_fashion_mnist_dir = backprop::kFashionMnistDir;
  auto server = backprop::server::BackpropServer::Start(
      o, [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); });
  if (!server.ok()) return 1;
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                          grpc::InsecureChannelCredentials());
  auto stub = backprop::v1::Backprop::NewStub(channel);
  backprop::v1::CreateModelRequest create;
  create.set_model_id("a");
  for (uint32_t n : spec.layer_sizes) create.mutable_spec()->add_layer_sizes(n);
  create.mutable_spec()->set_seed(1);
  backprop::v1::Model model;
  {
    grpc::ClientContext ctx;
    if (!stub->CreateModel(&ctx, create, &model).ok()) return 1;
  }
  backprop::v1::TrainRequest req;
  req.set_model_id("a");
  req.set_dataset_id("fashion-mnist-train");
  req.set_epochs(epochs);
  req.set_mini_batch_size(10);
  req.set_learning_rate(3.0);
  req.set_shuffle_seed(7);

  // Alternating rounds: the engine on its own copy of the same network,
  // then the service on its stored model, each one whole Train call.
  absl::StatusOr<backprop::Network<double>> net =
      backprop::Network<double>::Create(spec);
  std::vector<double> engine_epoch, service_epoch;
  for (int round = 0; round < rounds; ++round) {
    Clock::time_point t0 = Clock::now();
    absl::Status s = backprop::Train<double>(*net, *train, nullptr, opts, {},
                                             nullptr);
    engine_epoch.push_back(Seconds(t0, Clock::now()) / epochs);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    grpc::ClientContext ctx;
    t0 = Clock::now();
    auto r = stub->Train(&ctx, req);
    backprop::v1::TrainEvent ev;
    int seen = 0;
    while (r->Read(&ev)) seen += ev.has_epoch();
    const grpc::Status st = r->Finish();
    service_epoch.push_back(Seconds(t0, Clock::now()) / epochs);
    if (!st.ok() || seen != epochs) {
      std::fprintf(stderr, "Train: %s (%d epochs)\n",
                   st.error_message().c_str(), seen);
      return 1;
    }
  }

  // Latency: Predict (one example) vs health Check, same channel.
  backprop::v1::PredictRequest p;
  p.set_model_id("a");
  p.mutable_inputs()->set_rows(1);
  p.mutable_inputs()->set_cols(784);
  // The model's own element type, float64: 784 doubles (6.3 KB), the
  // payload issue 3's echo figure was quoted with.
  for (int i = 0; i < 784; ++i) {
    p.mutable_inputs()->add_double_values((i % 255) / 255.0);
  }
  std::vector<double> predict_us, health_us;
  grpc::GenericStub generic(channel);
  const std::string name = "backprop.v1.Backprop";
  const std::string check =
      std::string("\x0a", 1) + static_cast<char>(name.size()) + name;
  // Both calls go through the same generic callback path, so the only
  // difference is the method's own work.
  auto timed_call = [&](const std::string& method, const std::string& body) {
    grpc::Slice slice(body);
    grpc::ByteBuffer in(&slice, 1), out;
    grpc::ClientContext ctx;
    absl::Notification done;
    bool ok = false;
    const Clock::time_point t0 = Clock::now();
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &in, &out,
                      [&](grpc::Status st) {
                        ok = st.ok();
                        done.Notify();
                      });
    done.WaitForNotification();
    const double us = Seconds(t0, Clock::now()) * 1e6;
    return ok ? us : -1.0;
  };
  const std::string predict_body = p.SerializeAsString();
  for (int i = 0; i < 200; ++i) {  // warm-up: connection, caches, allocator
    timed_call("/backprop.v1.Backprop/Predict", predict_body);
    timed_call("/grpc.health.v1.Health/Check", check);
  }
  for (int i = 0; i < calls; ++i) {
    const double a = timed_call("/backprop.v1.Backprop/Predict", predict_body);
    const double b = timed_call("/grpc.health.v1.Health/Check", check);
    if (a < 0 || b < 0) return 1;
    predict_us.push_back(a);
    health_us.push_back(b);
  }
  (*server)->Shutdown(absl::Seconds(5));

  std::printf(
      "config A, %d rounds of a %d-epoch call: engine %.4f s/epoch, "
      "service %.4f s/epoch (median); service/engine %.3f (%+.1f%%)\n",
      rounds, epochs, Median(engine_epoch), Median(service_epoch),
      Median(service_epoch) / Median(engine_epoch),
      100.0 * (Median(service_epoch) / Median(engine_epoch) - 1.0));
  std::printf("per round engine:");
  for (double x : engine_epoch) std::printf(" %.4f", x);
  std::printf("\nper round service:");
  for (double x : service_epoch) std::printf(" %.4f", x);
  std::printf(
      "\n%d calls: Predict p50 %.1f us p99 %.1f us; Health p50 %.1f us "
      "p99 %.1f us; ratio p50 %.2f\n",
      calls, Percentile(predict_us, 0.5), Percentile(predict_us, 0.99),
      Percentile(health_us, 0.5), Percentile(health_us, 0.99),
      Percentile(predict_us, 0.5) / Percentile(health_us, 0.5));
  std::filesystem::remove_all(dir);
  return 0;
}
