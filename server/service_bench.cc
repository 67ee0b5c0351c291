// backprop-service-bench: what the service costs on top of the engine.
//   1. Config A ([784, 30, 10], mini-batch 10, eta 3, Fashion-MNIST) trained
//      through the service over a loopback TCP channel vs by core::Train
//      directly: seconds per epoch.
//   2. Single-example Predict vs grpc.health.v1.Health/Check on the same
//      channel: p50 / p99 latency.
// A measurement tool, not a test: prints numbers, asserts nothing.
// Usage: OPENBLAS_NUM_THREADS=1 backprop-service-bench [epochs] [calls]
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
#include "core/network.h"
#include "core/readers.h"
#include "core/trainer.h"
#include "server/server.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  const int epochs = argc > 1 ? std::atoi(argv[1]) : 3;
  const int calls = argc > 2 ? std::atoi(argv[2]) : 5000;
  backprop::ModelSpec spec;
  spec.layer_sizes = {784, 30, 10};
  spec.seed = 1;
  backprop::TrainOptions opts;
  opts.epochs = epochs;
  opts.mini_batch_size = 10;
  opts.eta = 3.0;
  opts.shuffle_seed = 7;

  // Engine alone.
  absl::StatusOr<backprop::Dataset> train =
      backprop::ReadFashionMnist(backprop::kFashionMnistDir, true);
  if (!train.ok()) {
    std::fprintf(stderr, "%s\n", train.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<backprop::Network<double>> net =
      backprop::Network<double>::Create(spec);
  std::vector<double> engine_epoch;
  Clock::time_point last = Clock::now();
  backprop::TrainCallbacks<double> cb;
  cb.on_epoch = [&](const backprop::EpochMetrics&,
                    const backprop::Network<double>&) {
    const Clock::time_point now = Clock::now();
    engine_epoch.push_back(Seconds(last, now));
    last = now;
    return absl::OkStatus();
  };
  absl::Status s =
      backprop::Train<double>(*net, *train, nullptr, opts, cb, nullptr);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }

  // Through the service, over TCP.
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
  std::vector<double> service_epoch;
  {
    grpc::ClientContext ctx;
    auto r = stub->Train(&ctx, req);
    backprop::v1::TrainEvent ev;
    last = Clock::now();
    while (r->Read(&ev)) {
      const Clock::time_point now = Clock::now();
      service_epoch.push_back(Seconds(last, now));
      last = now;
    }
    if (!r->Finish().ok()) return 1;
  }

  // Latency: Predict (one example) vs health Check, same channel.
  backprop::v1::PredictRequest p;
  p.set_model_id("a");
  p.mutable_inputs()->set_rows(1);
  p.mutable_inputs()->set_cols(784);
  for (int i = 0; i < 784; ++i) {
    p.mutable_inputs()->add_float_values((i % 255) / 255.0f);
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
  for (int i = 0; i < calls; ++i) {
    const double a = timed_call("/backprop.v1.Backprop/Predict", predict_body);
    const double b = timed_call("/grpc.health.v1.Health/Check", check);
    if (a < 0 || b < 0) return 1;
    predict_us.push_back(a);
    health_us.push_back(b);
  }
  (*server)->Shutdown(absl::Seconds(5));

  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / v.size();
  };
  std::printf(
      "config A, %d epochs: engine %.3f s/epoch, service %.3f s/epoch "
      "(%+.1f%%)\n",
      epochs, mean(engine_epoch), mean(service_epoch),
      100.0 * (mean(service_epoch) / mean(engine_epoch) - 1.0));
  std::printf("per epoch engine:");
  for (double x : engine_epoch) std::printf(" %.3f", x);
  std::printf("\nper epoch service:");
  for (double x : service_epoch) std::printf(" %.3f", x);
  std::printf(
      "\n%d calls: Predict p50 %.1f us p99 %.1f us; Health p50 %.1f us "
      "p99 %.1f us; ratio p50 %.2f\n",
      calls, Percentile(predict_us, 0.5), Percentile(predict_us, 0.99),
      Percentile(health_us, 0.5), Percentile(health_us, 0.99),
      Percentile(predict_us, 0.5) / Percentile(health_us, 0.5));
  std::filesystem::remove_all(dir);
  return 0;
}
