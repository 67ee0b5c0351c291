// backprop bench: a closed-loop load generator for Predict, measured next to
// the health Check on the same channel (the empty-call floor). N callers
// each keep one call in flight (callback API: the next call starts from the
// previous one's completion), for a warm-up and then a measured duration.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>

#include "client/commands.h"
#include "client/health.h"
#include "client/output.h"
#include "client/wire.h"

namespace backprop::client {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchFlags {
  std::string model;
  uint32_t concurrency = 1;
  double duration = 5;
  double warmup = 1;
  uint64_t batch = 1;
  std::string dtype;  // empty: the model's
  uint64_t seed = 1;
  uint32_t connections = 1;
};

struct PhaseResult {
  std::string name;
  uint64_t calls = 0;  // completed OK inside the measured window
  uint64_t errors = 0;
  grpc::Status first_error;
  double seconds = 0;
  double p50_us = 0, p95_us = 0, p99_us = 0, mean_us = 0;
  double qps() const { return seconds > 0 ? calls / seconds : 0; }
};

// One closed-loop phase. `start_call(i, on_done)` starts caller i's call;
// on_done must be invoked exactly once with the call's status.
class Phase {
 public:
  using StartCall = std::function<void(size_t, grpc::ClientContext*,
                                       std::function<void(grpc::Status)>)>;

  Phase(size_t callers, double warmup_s, double duration_s, StartCall start)
      : start_(std::move(start)), callers_(callers) {
    const auto now = Clock::now();
    measure_from_ = now + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(warmup_s));
    end_ = measure_from_ + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(duration_s));
  }

  PhaseResult Run(const std::string& name) {
    active_ = callers_.size();
    for (size_t i = 0; i < callers_.size(); ++i) Issue(i);
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return active_ == 0; });
    }
    PhaseResult r;
    r.name = name;
    r.seconds = std::chrono::duration<double>(end_ - measure_from_).count();
    std::vector<int64_t> all;
    for (Caller& c : callers_) {
      all.insert(all.end(), c.latencies_ns.begin(), c.latencies_ns.end());
      r.errors += c.errors;
      if (!c.first_error.ok() && r.first_error.ok()) {
        r.first_error = c.first_error;
      }
    }
    r.calls = all.size();
    if (!all.empty()) {
      std::sort(all.begin(), all.end());
      auto pct = [&](double p) {
        const size_t i = std::min(
            all.size() - 1, static_cast<size_t>(p * (all.size() - 1) + 0.5));
        return all[i] / 1000.0;
      };
      r.p50_us = pct(0.50);
      r.p95_us = pct(0.95);
      r.p99_us = pct(0.99);
      double sum = 0;
      for (int64_t v : all) sum += v;
      r.mean_us = sum / all.size() / 1000.0;
    }
    return r;
  }

 private:
  struct Caller {
    std::unique_ptr<grpc::ClientContext> context;
    Clock::time_point started;
    std::vector<int64_t> latencies_ns;
    uint64_t errors = 0;
    grpc::Status first_error;
  };

  // Caller i's calls are strictly sequential (each starts from the previous
  // one's callback), so its Caller needs no lock.
  void Issue(size_t i) {
    Caller& c = callers_[i];
    const auto now = Clock::now();
    if (now >= end_ || c.errors > 100) {
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) cv_.notify_all();
      return;
    }
    c.context = std::make_unique<grpc::ClientContext>();
    c.started = now;
    start_(i, c.context.get(), [this, i](grpc::Status s) {
      Caller& c = callers_[i];
      const auto done = Clock::now();
      if (!s.ok()) {
        if (c.errors++ == 0) c.first_error = s;
      } else if (c.started >= measure_from_ && done <= end_) {
        c.latencies_ns.push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(done -
                                                                 c.started)
                .count());
      }
      Issue(i);
    });
  }

  StartCall start_;
  std::vector<Caller> callers_;
  Clock::time_point measure_from_, end_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t active_ = 0;
};

nlohmann::json PhaseJson(const PhaseResult& r, uint64_t batch) {
  return {{"calls", r.calls},
          {"errors", r.errors},
          {"seconds", r.seconds},
          {"qps", r.qps()},
          {"examples_per_second", r.qps() * batch},
          {"p50_us", r.p50_us},
          {"p95_us", r.p95_us},
          {"p99_us", r.p99_us},
          {"mean_us", r.mean_us}};
}

int RunBench(const GlobalOptions& global, const BenchFlags& flags) {
  Connection connection(global);
  v1::Model model;
  if (const grpc::Status s = FetchModel(connection, flags.model, &model);
      !s.ok()) {
    return ReportRpcError(s);
  }
  if (model.spec().layer_sizes_size() == 0) {
    return ReportError("model " + flags.model + " has no layer sizes");
  }
  const uint64_t width = model.spec().layer_sizes(0);
  const v1::DType dtype = !flags.dtype.empty() ? DTypes().at(flags.dtype)
                          : model.spec().dtype() == v1::FLOAT32 ? v1::FLOAT32
                                                                : v1::FLOAT64;
  const uint64_t bytes = flags.batch * width * (dtype == v1::FLOAT32 ? 4 : 8);
  if (bytes > kRequestByteBudget) {
    return ReportError("--batch " + std::to_string(flags.batch) +
                           " rows of width " + std::to_string(width) +
                           " exceed one request's 3 MiB budget",
                       kExitUsage);
  }

  // Random inputs in [0, 1), one request per caller, built before timing.
  std::mt19937_64 rng(flags.seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<v1::PredictRequest> requests(flags.concurrency);
  std::vector<v1::PredictResponse> responses(flags.concurrency);
  std::vector<double> values(flags.batch * width);
  for (v1::PredictRequest& r : requests) {
    for (double& v : values) v = uniform(rng);
    r.set_model_id(flags.model);
    FillMatrix(flags.batch, width, values.data(), dtype, r.mutable_inputs());
  }
  const grpc::ByteBuffer health_request = EncodeHealthCheckRequest("");
  std::vector<grpc::ByteBuffer> health_responses(flags.concurrency);
  // Caller i uses connection i % N; with N = 1 everything shares the
  // channel the CLI always uses.
  std::vector<std::unique_ptr<Connection>> pool;
  std::vector<std::unique_ptr<grpc::GenericStub>> generics;
  for (uint32_t k = 0; k < flags.connections; ++k) {
    pool.push_back(flags.connections == 1
                       ? std::make_unique<Connection>(global)
                       : std::make_unique<Connection>(global, k));
    generics.push_back(
        std::make_unique<grpc::GenericStub>(pool.back()->channel()));
    pool.back()->stub();  // created here, not racing on callback threads
    // Connect before the first phase, so neither phase pays for it.
    pool.back()->channel()->WaitForConnected(std::chrono::system_clock::now() +
                                             std::chrono::seconds(10));
  }

  Phase health(flags.concurrency, flags.warmup, flags.duration,
               [&](size_t i, grpc::ClientContext* ctx,
                   std::function<void(grpc::Status)> done) {
                 generics[i % generics.size()]->UnaryCall(
                     ctx, kHealthCheckMethod, grpc::StubOptions(),
                     &health_request, &health_responses[i], std::move(done));
               });
  const PhaseResult h = health.Run("health");
  Phase predict(flags.concurrency, flags.warmup, flags.duration,
                [&](size_t i, grpc::ClientContext* ctx,
                    std::function<void(grpc::Status)> done) {
                  pool[i % pool.size()]->stub().async()->Predict(
                      ctx, &requests[i], &responses[i], std::move(done));
                });
  const PhaseResult p = predict.Run("predict");

  const double p50_ratio = h.p50_us > 0 ? p.p50_us / h.p50_us : 0;
  const double qps_ratio = h.qps() > 0 ? p.qps() / h.qps() : 0;
  if (global.json) {
    PrintJson({{"model_id", flags.model},
               {"layer_sizes", LayerSizesText(model.spec())},
               {"concurrency", flags.concurrency},
               {"batch", flags.batch},
               {"input_dtype", DTypeName(dtype)},
               {"duration_seconds", flags.duration},
               {"health", PhaseJson(h, 1)},
               {"predict", PhaseJson(p, flags.batch)},
               {"predict_over_health_p50", p50_ratio},
               {"predict_over_health_qps", qps_ratio}});
  } else {
    std::cout << "model " << flags.model << " (" << LayerSizesText(model.spec())
              << ", " << DTypeName(model.spec().dtype()) << "), "
              << flags.concurrency << " concurrent callers, batch "
              << flags.batch << " (" << DTypeName(dtype) << " inputs), "
              << Fixed(flags.duration, 1) << " s per call type after "
              << Fixed(flags.warmup, 1) << " s warm-up\n";
    Table table({"CALL", "CALLS", "ERRORS", "QPS", "EXAMPLES/S", "P50_US",
                 "P95_US", "P99_US"});
    for (const auto* r : {&h, &p}) {
      table.AddRow(
          {r->name, std::to_string(r->calls), std::to_string(r->errors),
           Rate(r->qps()), Rate(r->qps() * (r == &p ? flags.batch : 1)),
           Fixed(r->p50_us, 1), Fixed(r->p95_us, 1), Fixed(r->p99_us, 1)});
    }
    table.Print(std::cout);
    std::cout << "predict/health: p50 " << Fixed(p50_ratio, 2) << "x, QPS "
              << Percent(qps_ratio) << "\n";
  }
  for (const auto* r : {&h, &p}) {
    if (r->errors > 0) {
      std::cerr << r->name << ": " << r->errors << " calls failed; first: ";
      return ReportRpcError(r->first_error);
    }
  }
  return kExitOk;
}

}  // namespace

void AddBenchCommand(CLI::App& app, CommandEnv env) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Load-test Predict on a model with random inputs, next to the health "
      "Check on the same channel; prints QPS, examples/s and p50/p95/p99 "
      "latency of each, and their ratio.");
  cmd->add_option("MODEL", flags->model, "model id")->required();
  cmd->add_option("--concurrency", flags->concurrency,
                  "calls in flight at once")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  cmd->add_option("--duration", flags->duration,
                  "measured seconds per call type")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--warmup", flags->warmup,
                  "unmeasured seconds before each measurement")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--batch", flags->batch, "rows per Predict call")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--dtype", flags->dtype,
                  "element type of the inputs (default: the model's)")
      ->check(CLI::IsMember(Words(DTypes())));
  cmd->add_option("--connections", flags->connections,
                  "spread the callers over this many TCP connections")
      ->check(CLI::Range(1u, 64u))
      ->capture_default_str();
  cmd->add_option("--seed", flags->seed, "seed of the random inputs")
      ->capture_default_str();
  cmd->callback(
      [env, flags] { *env.exit_code = RunBench(*env.global, *flags); });
}

}  // namespace backprop::client
