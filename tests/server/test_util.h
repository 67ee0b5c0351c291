// Helpers shared by the server tests: temp folders, wire matrices, a small
// synthetic classification set, stream reading.
#ifndef BACKPROP_TESTS_SERVER_TEST_UTIL_H_
#define BACKPROP_TESTS_SERVER_TEST_UTIL_H_

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "backprop/v1/backprop.grpc.pb.h"

namespace backprop::server::testing {

// A one-shot event. Built on std::mutex rather than absl::Notification
// because Debian's Abseil is not instrumented for ThreadSanitizer, which then
// cannot see the synchronisation (see server/registry.h).
class Notification {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
    cv_.notify_all();
  }
  bool HasBeenNotified() {
    std::lock_guard<std::mutex> lock(mu_);
    return notified_;
  }
  bool WaitFor(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return notified_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool notified_ = false;
};

// A fresh folder under $TEST_TMPDIR or /tmp, removed at destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TEST_TMPDIR");
    std::string pattern =
        std::string(base != nullptr ? base : "/tmp") + "/server_test.XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    path_ = mkdtemp(buf.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Names of the entries of a folder (empty when it does not exist).
inline std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    names.push_back(e.path().filename().string());
  }
  return names;
}

inline v1::Matrix DoubleMatrix(uint64_t rows, uint64_t cols,
                               const std::vector<double>& v) {
  v1::Matrix m;
  m.set_rows(rows);
  m.set_cols(cols);
  m.mutable_double_values()->Add(v.begin(), v.end());
  return m;
}

inline v1::Matrix FloatMatrix(uint64_t rows, uint64_t cols,
                              const std::vector<float>& v) {
  v1::Matrix m;
  m.set_rows(rows);
  m.set_cols(cols);
  m.mutable_float_values()->Add(v.begin(), v.end());
  return m;
}

// n examples of `features` values in [-1, 1]; label 1 when the first value
// exceeds the second, else 0 (two classes, learnable by a small net).
inline v1::Examples SyntheticExamples(uint64_t n, uint32_t features,
                                      uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> x(n * features);
  v1::Examples e;
  for (uint64_t i = 0; i < n; ++i) {
    for (uint32_t j = 0; j < features; ++j) x[i * features + j] = u(rng);
    e.mutable_labels()->add_values(x[i * features] > x[i * features + 1] ? 1
                                                                         : 0);
  }
  *e.mutable_inputs() = DoubleMatrix(n, features, x);
  return e;
}

inline v1::ModelSpec Spec(std::vector<uint32_t> sizes, uint64_t seed = 1) {
  v1::ModelSpec s;
  for (uint32_t n : sizes) s.add_layer_sizes(n);
  s.set_seed(seed);
  return s;
}

struct TrainResult {
  grpc::Status status;
  std::vector<v1::EpochMetrics> epochs;
  std::vector<v1::BatchProgress> progress;
};

inline TrainResult ReadTrain(grpc::ClientReaderInterface<v1::TrainEvent>* r) {
  TrainResult out;
  v1::TrainEvent ev;
  while (r->Read(&ev)) {
    if (ev.has_epoch()) out.epochs.push_back(ev.epoch());
    if (ev.has_progress()) out.progress.push_back(ev.progress());
  }
  out.status = r->Finish();
  return out;
}

inline TrainResult RunTrain(v1::Backprop::StubInterface* stub,
                            const v1::TrainRequest& req) {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderInterface<v1::TrainEvent>> r =
      stub->Train(&ctx, req);
  return ReadTrain(r.get());
}

// All values of a model's parameters, in order (for bitwise comparisons).
inline std::vector<double> AllValues(const v1::Model& m) {
  std::vector<double> v;
  for (const auto& lp : m.parameters()) {
    for (const v1::Matrix* x : {&lp.weights(), &lp.biases()}) {
      v.insert(v.end(), x->double_values().begin(), x->double_values().end());
      v.insert(v.end(), x->float_values().begin(), x->float_values().end());
    }
  }
  return v;
}

}  // namespace backprop::server::testing

#endif  // BACKPROP_TESTS_SERVER_TEST_UTIL_H_
