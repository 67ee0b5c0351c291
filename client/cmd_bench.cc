// backprop bench: a closed-loop load generator for Predict, measured next to
// the health Check on the same channel (the empty-call floor). N callers
// each keep one call in flight (callback API: the next call starts from the
// previous one's completion). Both call types run under the same conditions:
// by default every caller alternates Check and Predict call by call; with
// --schedule rounds all callers make only Checks, then only Predicts, in
// short alternating rounds (the fair way to compare throughput when the
// callers saturate the server; see --help).
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
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

Clock::duration SecondsToDuration(double s) {
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(s));
}

struct BenchFlags {
  std::string model;
  uint32_t concurrency = 1;
  double duration = 5;
  double warmup = 1;
  uint64_t batch = 1;
  std::string dtype;  // empty: the model's
  uint64_t seed = 1;
  uint32_t connections = 1;
  std::string schedule = "alternate";
  double round = 0.5;
};

enum Kind { kHealth = 0, kPredict = 1 };
constexpr std::array<Kind, 2> kKinds = {kHealth, kPredict};
constexpr const char* kKindNames[] = {"health", "predict"};

// What the callers call during one ClosedLoop::Run.
enum class Mix { kAlternate, kHealthOnly, kPredictOnly };

struct KindResult {
  std::string name;
  uint64_t calls = 0;  // completed OK inside a measured window
  uint64_t errors = 0;
  grpc::Status first_error;
  // The time spent in these calls, per caller: the summed latency of the
  // counted calls / callers (alternate), or the wall seconds of this call
  // type's rounds (rounds). qps = calls / seconds.
  double seconds = 0;
  double p50_us = 0, p95_us = 0, p99_us = 0, mean_us = 0;
  double qps() const { return seconds > 0 ? calls / seconds : 0; }
};

// N closed-loop callers. A call is counted (latency kept) when it starts at
// or after `from` and completes by `end` of the Run it belongs to; the
// latencies of all Runs add up per call type.
class ClosedLoop {
 public:
  using StartCall = std::function<void(size_t, grpc::ClientContext*,
                                       std::function<void(grpc::Status)>)>;

  ClosedLoop(size_t callers, StartCall health, StartCall predict)
      : start_{std::move(health), std::move(predict)}, callers_(callers) {
    // Under kAlternate, half the callers begin with each call type, so the
    // calls in flight are an even mix from the first one.
    for (size_t i = 0; i < callers_.size(); ++i) {
      callers_[i].next = i % 2 == 0 ? kHealth : kPredict;
    }
  }

  // Returns once every caller's last call (started before `end`) is done.
  void Run(Mix mix, Clock::time_point from, Clock::time_point end) {
    mix_ = mix;
    from_ = from;
    end_ = end;
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_ = callers_.size();
    }
    for (size_t i = 0; i < callers_.size(); ++i) Issue(i);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return active_ == 0; });
  }

  // Counts, errors and latency percentiles of one call type over all Runs;
  // `seconds` as defined in KindResult.
  KindResult Result(Kind kind, double seconds) const {
    KindResult r;
    r.name = kKindNames[kind];
    r.seconds = seconds;
    std::vector<int64_t> all;
    for (const Caller& c : callers_) {
      all.insert(all.end(), c.latencies_ns[kind].begin(),
                 c.latencies_ns[kind].end());
      r.errors += c.errors[kind];
      if (!c.first_error[kind].ok() && r.first_error.ok()) {
        r.first_error = c.first_error[kind];
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

  // Summed latency of the counted calls of one type, in seconds.
  double BusySeconds(Kind kind) const {
    double ns = 0;
    for (const Caller& c : callers_) {
      for (int64_t v : c.latencies_ns[kind]) ns += v;
    }
    return ns * 1e-9;
  }

 private:
  struct Caller {
    std::unique_ptr<grpc::ClientContext> context;
    Clock::time_point started;
    Kind kind = kHealth;  // of the call in flight
    Kind next = kHealth;  // under kAlternate
    std::array<std::vector<int64_t>, 2> latencies_ns;
    std::array<uint64_t, 2> errors = {0, 0};
    std::array<grpc::Status, 2> first_error;
  };

  // Caller i's calls are strictly sequential (each starts from the previous
  // one's callback, and Runs do not overlap), so its Caller needs no lock.
  void Issue(size_t i) {
    Caller& c = callers_[i];
    const auto now = Clock::now();
    if (now >= end_ || c.errors[kHealth] + c.errors[kPredict] > 100) {
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) cv_.notify_all();
      return;
    }
    switch (mix_) {
      case Mix::kAlternate:
        c.kind = c.next;
        c.next = c.kind == kHealth ? kPredict : kHealth;
        break;
      case Mix::kHealthOnly:
        c.kind = kHealth;
        break;
      case Mix::kPredictOnly:
        c.kind = kPredict;
        break;
    }
    c.context = std::make_unique<grpc::ClientContext>();
    c.started = now;
    start_[c.kind](i, c.context.get(), [this, i](grpc::Status s) {
      Caller& c = callers_[i];
      const auto done = Clock::now();
      if (!s.ok()) {
        if (c.errors[c.kind]++ == 0) c.first_error[c.kind] = s;
      } else if (c.started >= from_ && done <= end_) {
        c.latencies_ns[c.kind].push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(done -
                                                                 c.started)
                .count());
      }
      Issue(i);
    });
  }

  const std::array<StartCall, 2> start_;
  std::vector<Caller> callers_;
  Mix mix_ = Mix::kAlternate;
  Clock::time_point from_, end_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t active_ = 0;
};

nlohmann::json KindJson(const KindResult& r, uint64_t batch,
                        double window_seconds) {
  return {{"calls", r.calls},
          {"errors", r.errors},
          {"seconds", r.seconds},
          {"qps", r.qps()},
          {"examples_per_second", r.qps() * batch},
          {"calls_per_window_second",
           window_seconds > 0 ? r.calls / window_seconds : 0},
          {"p50_us", r.p50_us},
          {"p95_us", r.p95_us},
          {"p99_us", r.p99_us},
          {"mean_us", r.mean_us}};
}

int RunBench(const GlobalOptions& global, const BenchFlags& flags) {
  const bool rounds = flags.schedule == "rounds";
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
    // Connect before the first call, so no measured call pays for it.
    pool.back()->channel()->WaitForConnected(std::chrono::system_clock::now() +
                                             std::chrono::seconds(10));
  }

  ClosedLoop loop(
      flags.concurrency,
      [&](size_t i, grpc::ClientContext* ctx,
          std::function<void(grpc::Status)> done) {
        generics[i % generics.size()]->UnaryCall(
            ctx, kHealthCheckMethod, grpc::StubOptions(), &health_request,
            &health_responses[i], std::move(done));
      },
      [&](size_t i, grpc::ClientContext* ctx,
          std::function<void(grpc::Status)> done) {
        pool[i % pool.size()]->stub().async()->Predict(
            ctx, &requests[i], &responses[i], std::move(done));
      });
  std::array<double, 2> seconds = {0, 0};
  double round_seconds = 0;
  if (!rounds) {
    // One window; each call type's time is what the callers spent in it.
    const Clock::time_point from =
        Clock::now() + SecondsToDuration(flags.warmup);
    loop.Run(Mix::kAlternate, from, from + SecondsToDuration(flags.duration));
    for (Kind k : kKinds) {
      seconds[k] = loop.BusySeconds(k) / flags.concurrency;
    }
  } else {
    // Warm-up alternating call by call (nothing counted: a call starting at
    // or after its end is never made), then pairs of equal rounds, Check
    // first; every caller's last call of a round completes before the next
    // round starts, and that drain is in neither round.
    if (flags.warmup > 0) {
      const Clock::time_point end =
          Clock::now() + SecondsToDuration(flags.warmup);
      loop.Run(Mix::kAlternate, end, end);
    }
    const double pairs =
        std::max(1.0, std::round(flags.duration / (2 * flags.round)));
    round_seconds = flags.duration / (2 * pairs);
    for (int n = 0; n < pairs; ++n) {
      for (Kind k : kKinds) {
        const Clock::time_point from = Clock::now();
        loop.Run(k == kHealth ? Mix::kHealthOnly : Mix::kPredictOnly, from,
                 from + SecondsToDuration(round_seconds));
        seconds[k] += round_seconds;
      }
    }
  }
  const KindResult h = loop.Result(kHealth, seconds[kHealth]);
  const KindResult p = loop.Result(kPredict, seconds[kPredict]);

  const double p50_ratio = h.p50_us > 0 ? p.p50_us / h.p50_us : 0;
  const double qps_ratio = h.qps() > 0 ? p.qps() / h.qps() : 0;
  if (global.json) {
    nlohmann::json out = {{"model_id", flags.model},
                          {"layer_sizes", LayerSizesText(model.spec())},
                          {"concurrency", flags.concurrency},
                          {"batch", flags.batch},
                          {"input_dtype", DTypeName(dtype)},
                          {"schedule", flags.schedule},
                          {"duration_seconds", flags.duration},
                          {"health", KindJson(h, 1, flags.duration)},
                          {"predict", KindJson(p, flags.batch, flags.duration)},
                          {"predict_over_health_p50", p50_ratio},
                          {"predict_over_health_qps", qps_ratio}};
    if (rounds) out["round_seconds"] = round_seconds;
    PrintJson(out);
  } else {
    std::cout << "model " << flags.model << " (" << LayerSizesText(model.spec())
              << ", " << DTypeName(model.spec().dtype()) << "), "
              << flags.concurrency << " concurrent callers, batch "
              << flags.batch << " (" << DTypeName(dtype) << " inputs), ";
    if (rounds) {
      std::cout << "Check and Predict in alternating rounds of "
                << Fixed(round_seconds, 3) << " s, "
                << Fixed(flags.duration / 2, 1) << " s each";
    } else {
      std::cout << "Check and Predict alternating call by call for "
                << Fixed(flags.duration, 1) << " s";
    }
    std::cout << " after " << Fixed(flags.warmup, 1) << " s warm-up\n";
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
              << Percent(qps_ratio)
              << (rounds ? " (QPS: calls / seconds of that call type's rounds)"
                         : " (QPS: calls / time spent in them per caller)")
              << "\n";
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
  cmd->footer(
      "Each caller keeps one call in flight. A call is counted when it "
      "starts and completes inside a measured window; latency is from "
      "starting the call to its completion callback.\n"
      "--schedule alternate (default): every caller alternates Check and "
      "Predict call by call for --duration seconds, so both call types see "
      "the same conditions. A type's QPS = its calls / the time the callers "
      "spent in its calls (summed latency of its counted calls / "
      "--concurrency), i.e. --concurrency / its mean latency: the rate the "
      "callers would reach making only that call at that latency. "
      "calls_per_window_second (--json) is what was delivered: calls / "
      "--duration.\n"
      "--schedule rounds: all callers make only Checks for one round, then "
      "only Predicts for one round, alternating, --duration / 2 seconds of "
      "each in all; a type's QPS = its calls / the seconds of its rounds. "
      "Use it to compare throughput when the callers saturate the server "
      "(e.g. 8 callers on 2 cores): there, under alternate, each call waits "
      "behind the others of both types, so the latencies, and the QPS "
      "ratio, tend to converge whatever a Predict costs. A --round of "
      "--duration / 2 or more is one Check phase, then one Predict phase.");
  cmd->add_option("MODEL", flags->model, "model id")->required();
  cmd->add_option("--concurrency", flags->concurrency,
                  "calls in flight at once")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  cmd->add_option("--duration", flags->duration,
                  "measured seconds, both call types together")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--warmup", flags->warmup,
                  "unmeasured seconds (alternating call by call) first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--schedule", flags->schedule,
                  "alternate: each caller alternates Check and Predict; "
                  "rounds: all callers switch call type every --round s")
      ->check(CLI::IsMember({"alternate", "rounds"}))
      ->capture_default_str();
  cmd->add_option("--round", flags->round,
                  "seconds per round with --schedule rounds (adjusted so "
                  "that --duration holds whole pairs of rounds)")
      ->check(CLI::PositiveNumber)
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
