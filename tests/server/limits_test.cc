// The limits of RELIABILITY.md §3 (../shared), one test each that goes one
// past the limit: the status code, a message that names the limit (its
// flag), and, where a number in the request could size an allocation, that
// the refusal comes before it (a claim that could never be allocated, or
// one whose allocation would show in the peak RSS). Servers listen on
// 127.0.0.1:0 so that the transport settings (metadata, compression,
// streams per connection, handshake timeout, keepalive) are the real ones.
// Limits whose default would make a test slow are lowered through
// ServerOptions; DefaultsAreTheShippedValues pins every default.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "server/convert.h"
#include "server/server.h"
#include "server/service.h"
#include "tests/server/test_util.h"
#include <netinet/in.h>
#include <poll.h>

namespace backprop::server {
namespace {

using ::backprop::server::testing::DoubleMatrix;
using ::backprop::server::testing::ListDir;
using ::backprop::server::testing::Notification;
using ::backprop::server::testing::ReadTrain;
using ::backprop::server::testing::Spec;
using ::backprop::server::testing::SyntheticExamples;
using ::backprop::server::testing::TempDir;
using ::backprop::server::testing::TrainResult;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = uint64_t{1} << 20;

// Peak resident set of this process (the server runs in it), in bytes.
uint64_t PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return std::stoull(line.substr(6)) * 1024;  // "VmHWM:  1234 kB"
    }
  }
  return 0;
}

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Polls `done` every 5 ms for up to `timeout`.
bool WaitUntil(const std::function<bool()>& done,
               std::chrono::milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

// ---- Defaults: the values RELIABILITY.md §3 ships ----

TEST(LimitsDefaultsTest, DefaultsAreTheShippedValues) {
  const ServiceOptions s;
  EXPECT_EQ(s.max_rows_per_call, 10'000u);
  EXPECT_EQ(s.max_parameters, 1'000'000u);
  EXPECT_EQ(s.max_layers, 64u);
  EXPECT_EQ(s.max_layer_width, 65'536u);
  EXPECT_EQ(s.max_models, 1'000u);
  EXPECT_EQ(s.max_datasets, 1'000u);
  EXPECT_EQ(s.max_dataset_bytes, 256 * kMiB);
  EXPECT_EQ(s.max_upload_chunk_bytes, 1 * kMiB);
  EXPECT_EQ(s.max_upload_chunks, 100'000u);
  EXPECT_EQ(s.max_concurrent_uploads, 4);
  EXPECT_EQ(s.max_concurrent_trainings,
            static_cast<int>(std::min(
                4u, std::max(1u, std::thread::hardware_concurrency()))));
  EXPECT_EQ(s.predict_budget, absl::Seconds(5));
  EXPECT_EQ(s.gradients_budget, absl::Seconds(60));
  EXPECT_EQ(s.max_train_time, absl::Hours(24));

  const ServerOptions o;
  EXPECT_EQ(o.max_receive_message_bytes, 4 << 20);
  EXPECT_EQ(o.max_send_message_bytes, 16 << 20);
  EXPECT_EQ(o.resource_quota_bytes, int64_t{512} << 20);
  const std::vector<std::pair<std::string, int>> list = TransportChannelArgs(o);
  const std::map<std::string, int> args(list.begin(), list.end());
  const std::map<std::string, int> expected = {
      {GRPC_ARG_MAX_CONCURRENT_STREAMS, 100},
      {GRPC_ARG_MAX_METADATA_SIZE, 16 << 10},
      {GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, 10'000},
      {GRPC_ARG_KEEPALIVE_TIME_MS, 60'000},
      {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000},
      {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1},
      {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 30'000},
      {GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2},
      {GRPC_ARG_MAX_CONNECTION_IDLE_MS, 1'800'000},
  };
  EXPECT_EQ(args, expected);
}

// `backprop-server --help` names every limit flag with its default.
TEST(LimitsDefaultsTest, ServerHelpListsEveryLimitWithItsDefault) {
  FILE* p = popen(BACKPROP_SERVER_BINARY " --help 2>&1", "r");
  ASSERT_NE(p, nullptr);
  std::string help;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) help.append(buf, n);
  pclose(p);
  // Abseil wraps the text: make every run of white space one space.
  std::string flat;
  for (char c : help) {
    const bool space = c == ' ' || c == '\n' || c == '\t';
    if (!space || (!flat.empty() && flat.back() != ' ')) flat += space ? ' ' : c;
  }
  help = flat;
  const std::string trainings = std::to_string(
      std::min(4u, std::max(1u, std::thread::hardware_concurrency())));
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"max_receive_message_mb", "4"},
      {"max_send_message_mb", "16"},
      {"max_parameters", "1000000"},
      {"max_layers", "64"},
      {"max_layer_width", "65536"},
      {"max_models", "1000"},
      {"max_datasets", "1000"},
      {"max_rows_per_call", "10000"},
      {"max_dataset_mb", "256"},
      {"max_upload_chunk_kb", "1024"},
      {"max_upload_chunks", "100000"},
      {"max_concurrent_uploads", "4"},
      {"max_concurrent_trainings", trainings},
      {"predict_budget", "5s"},
      {"gradients_budget", "1m"},
      {"max_train_time", "24h"},
      {"max_concurrent_streams", "100"},
      {"max_metadata_kb", "16"},
      {"handshake_timeout", "10s"},
      {"keepalive_time", "1m"},
      {"keepalive_timeout", "20s"},
      {"min_ping_interval", "30s"},
      {"max_ping_strikes", "2"},
      {"max_connection_idle", "30m"},
      {"resource_quota_mb", "512"},
  };
  for (const auto& [flag, value] : flags) {
    // Abseil prints "--flag (help text); default: value;".
    const size_t at = help.find("--" + flag + " (");
    ASSERT_NE(at, std::string::npos) << flag << " missing from --help:\n"
                                     << help;
    const size_t def = help.find("); default: ", at);
    ASSERT_NE(def, std::string::npos) << flag;
    const size_t begin = def + 12;
    EXPECT_EQ(help.substr(begin, help.find(';', begin) - begin), value)
        << "--" << flag;
  }
}

// ---- A server on a real TCP port ----

class LimitsTest : public ::testing::Test {
 protected:
  void Start(const std::function<void(ServerOptions&)>& tweak = nullptr,
             bool persist = true) {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    if (persist) {
      o.service.model_dir = dir_.Sub("models");
      o.service.data_dir = dir_.Sub("datasets");
    }
    o.service.after_epoch_for_test =
        [this](uint32_t epoch,
               const std::function<bool(absl::Duration)>& wait_for_cancel) {
          if (epoch == 1 && pause_after_first_epoch_) {
            wait_for_cancel(absl::Seconds(30));
          }
        };
    if (tweak) tweak(o);
    absl::StatusOr<std::unique_ptr<BackpropServer>> s =
        BackpropServer::Start(o, [](const std::string&) {});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    channel_ = NewChannel();
    stub_ = v1::Backprop::NewStub(channel_);
  }

  void TearDown() override { server_.reset(); }

  std::string Target() const {
    return "127.0.0.1:" + std::to_string(server_->port());
  }

  // A channel with its own connection (no shared subchannel).
  std::shared_ptr<grpc::Channel> NewChannel(
      grpc::ChannelArguments args = grpc::ChannelArguments()) {
    args.SetMaxReceiveMessageSize(-1);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(Target(),
                                     grpc::InsecureChannelCredentials(), args);
  }

  grpc::Status Create(const std::string& id, const v1::ModelSpec& spec) {
    v1::CreateModelRequest req;
    req.set_model_id(id);
    *req.mutable_spec() = spec;
    v1::Model m;
    grpc::ClientContext ctx;
    return stub_->CreateModel(&ctx, req, &m);
  }

  grpc::Status Predict(const v1::PredictRequest& req,
                       v1::PredictResponse* resp = nullptr) {
    v1::PredictResponse r;
    grpc::ClientContext ctx;
    return stub_->Predict(&ctx, req, resp != nullptr ? resp : &r);
  }

  grpc::Status Upload(const std::vector<v1::UploadDatasetRequest>& msgs,
                      v1::Dataset* out = nullptr) {
    grpc::ClientContext ctx;
    v1::Dataset ds;
    auto w = stub_->UploadDataset(&ctx, out != nullptr ? out : &ds);
    for (const auto& m : msgs) {
      if (!w->Write(m)) break;  // the server already ended the call
    }
    w->WritesDone();
    return w->Finish();
  }

  static v1::UploadDatasetRequest Header(const std::string& id,
                                         uint32_t features,
                                         uint32_t classes) {
    v1::UploadDatasetRequest h;
    h.mutable_header()->set_dataset_id(id);
    h.mutable_header()->set_feature_count(features);
    h.mutable_header()->set_class_count(classes);
    return h;
  }

  static v1::UploadDatasetRequest Chunk(uint64_t rows, uint32_t features,
                                        uint64_t seed = 1) {
    v1::UploadDatasetRequest c;
    *c.mutable_chunk() = SyntheticExamples(rows, features, seed);
    return c;
  }

  TempDir dir_;
  bool pause_after_first_epoch_ = false;
  std::unique_ptr<BackpropServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Backprop::Stub> stub_;
};

// ---- Models ----

TEST_F(LimitsTest, LayerCountWidthAndParametersOnePastTheDefaults) {
  Start();
  EXPECT_TRUE(Create("l64", Spec(std::vector<uint32_t>(64, 2))).ok());
  grpc::Status s = Create("l65", Spec(std::vector<uint32_t>(65, 2)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("65 entries"));
  EXPECT_THAT(s.error_message(), HasSubstr("--max_layers"));

  EXPECT_TRUE(Create("w65536", Spec({65'536, 1})).ok());  // 65,537 params
  s = Create("w65537", Spec({2, 65'537, 1}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("layer_sizes[1] = 65537"));
  EXPECT_THAT(s.error_message(), HasSubstr("--max_layer_width"));

  EXPECT_TRUE(Create("p1m", Spec({999, 1000})).ok());  // 999*1000 + 1000
  s = Create("p1m1", Spec({9'900, 101}));              // 9900*101 + 101
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("1000001 parameters"));
  EXPECT_THAT(s.error_message(), HasSubstr("--max_parameters"));
  EXPECT_THAT(ListDir(dir_.Sub("models")),
              ::testing::UnorderedElementsAre("l64.model", "w65536.model",
                                              "p1m.model", "LOCK"));
}

// Specs whose weights could never be allocated (63 layers of 65,536^2, about
// 2 TB) or whose allocation would show in the peak RSS (7,000^2 = 49 M
// doubles, 392 MB) are refused by the count, quickly, with the limit's own
// message (an allocation that failed would say "ran out of memory").
TEST_F(LimitsTest, OversizedSpecsAreRefusedBeforeAllocation) {
  Start();
  const uint64_t peak_before = PeakRssBytes();
  const auto t0 = Clock::now();
  grpc::Status s = Create("tb", Spec(std::vector<uint32_t>(64, 65'536)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_parameters"));
  s = Create("big", Spec({7'000, 7'000}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_parameters"));
  EXPECT_LT(SecondsSince(t0), 1.0);
  EXPECT_LT(PeakRssBytes() - peak_before, 16 * kMiB);
}

TEST_F(LimitsTest, ModelOverMaxModelsIsResourceExhausted) {
  Start([](ServerOptions& o) { o.service.max_models = 3; });
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(Create(id, Spec({2, 2})).ok()) << id;
  }
  grpc::Status s = Create("d", Spec({2, 2}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_models"));
  EXPECT_EQ(ListDir(dir_.Sub("models")).size(), 4u);  // a, b, c and LOCK
  v1::DeleteModelRequest del;
  del.set_model_id("a");
  v1::DeleteModelResponse dr;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->DeleteModel(&ctx, del, &dr).ok());
  EXPECT_TRUE(Create("d", Spec({2, 2})).ok());
}

// The default itself, in memory (no model files): model 1,001 is refused.
TEST_F(LimitsTest, ModelOneThousandAndOneIsRefusedByDefault) {
  Start(nullptr, /*persist=*/false);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(Create("m" + std::to_string(i), Spec({1, 1})).ok()) << i;
  }
  grpc::Status s = Create("m1000", Spec({1, 1}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("1000 models"));
}

// ---- Predict / GetGradients ----

TEST_F(LimitsTest, RowsPerCallOnePastTheDefault) {
  Start();
  ASSERT_TRUE(Create("r", Spec({1, 2})).ok());
  v1::PredictRequest req;
  req.set_model_id("r");
  *req.mutable_inputs() = DoubleMatrix(10'000, 1, std::vector<double>(10'000));
  v1::PredictResponse resp;
  ASSERT_TRUE(Predict(req, &resp).ok());
  EXPECT_EQ(resp.outputs().rows(), 10'000u);
  *req.mutable_inputs() = DoubleMatrix(10'001, 1, std::vector<double>(10'001));
  grpc::Status s = Predict(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("10001 rows"));
  EXPECT_THAT(s.error_message(), HasSubstr("--max_rows_per_call"));

  v1::GetGradientsRequest g;
  g.set_model_id("r");
  *g.mutable_examples()->mutable_inputs() = req.inputs();
  g.mutable_examples()->mutable_labels()->mutable_values()->Resize(10'001, 0);
  v1::GetGradientsResponse gr;
  grpc::ClientContext ctx;
  s = stub_->GetGradients(&ctx, g, &gr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_rows_per_call"));
}

// rows x cols claims 8 TB with one value sent: refused from the count (an
// allocation of the claim would fail with "ran out of memory", or show).
TEST_F(LimitsTest, ClaimedShapeIsCheckedBeforeAllocation) {
  Start();
  ASSERT_TRUE(Create("c", Spec({1, 1})).ok());
  v1::PredictRequest req;
  req.set_model_id("c");
  *req.mutable_inputs() = DoubleMatrix(uint64_t{1} << 40, 1, {0.5});
  const uint64_t peak_before = PeakRssBytes();
  const auto t0 = Clock::now();
  grpc::Status s = Predict(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("has 1 values"));
  EXPECT_LT(SecondsSince(t0), 1.0);
  EXPECT_LT(PeakRssBytes() - peak_before, 4 * kMiB);
}

// A batch bigger than one part is answered part by part, the same numbers
// as row by row; with a budget it cannot meet it ends DEADLINE_EXCEEDED.
TEST_F(LimitsTest, PredictBudgetEndsALongPredict) {
  Start([](ServerOptions& o) {
    o.service.predict_budget = absl::Milliseconds(1);
  });
  ASSERT_TRUE(Create("slow", Spec({1, 300, 300, 1})).ok());
  std::vector<double> x(10'000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.01 * i);
  v1::PredictRequest req;
  req.set_model_id("slow");
  *req.mutable_inputs() = DoubleMatrix(x.size(), 1, x);
  grpc::Status s = Predict(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(s.error_message(), HasSubstr("--predict_budget"));
}

// A gradient check over many parameters stops at the budget; the same call
// without a check still answers.
TEST_F(LimitsTest, GradientsBudgetEndsALongCheck) {
  Start([](ServerOptions& o) {
    o.service.gradients_budget = absl::Milliseconds(50);
  });
  ASSERT_TRUE(Create("check", Spec({20, 200, 10})).ok());  // 6,210 parameters
  v1::GetGradientsRequest req;
  req.set_model_id("check");
  std::vector<double> x(2'000 * 20);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1 * i);
  *req.mutable_examples()->mutable_inputs() = DoubleMatrix(2'000, 20, x);
  for (int i = 0; i < 2'000; ++i) {
    req.mutable_examples()->mutable_labels()->add_values(i % 10);
  }
  req.set_check_epsilon(1e-6);
  req.set_check_samples(6'210);  // every parameter: far more than 50 ms
  v1::GetGradientsResponse resp;
  const absl::Time t0 = absl::Now();
  grpc::ClientContext ctx;
  grpc::Status s = stub_->GetGradients(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(s.error_message(), HasSubstr("--gradients_budget"));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(20));
  // The budget bounds the check only: the same examples without a check
  // answer, however long the gradients themselves take (under TSan, more
  // than 50 ms).
  req.set_check_epsilon(0);
  grpc::ClientContext ctx2;
  s = stub_->GetGradients(&ctx2, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(resp.has_check());
  EXPECT_GT(resp.gradients_size(), 0);
}

TEST_F(LimitsTest, PredictInPartsEqualsRowByRow) {
  Start();
  ASSERT_TRUE(Create("parts", Spec({2, 8, 3})).ok());
  const uint64_t n = 2'500;  // three parts
  std::vector<double> x(2 * n);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.37 * i);
  v1::PredictRequest req;
  req.set_model_id("parts");
  *req.mutable_inputs() = DoubleMatrix(n, 2, x);
  v1::PredictResponse all;
  ASSERT_TRUE(Predict(req, &all).ok());
  ASSERT_EQ(all.outputs().double_values_size(), static_cast<int>(3 * n));
  for (uint64_t row : {uint64_t{0}, uint64_t{833}, uint64_t{834},
                       uint64_t{1666}, uint64_t{1667}, n - 1}) {
    *req.mutable_inputs() = DoubleMatrix(1, 2, {x[2 * row], x[2 * row + 1]});
    v1::PredictResponse one;
    ASSERT_TRUE(Predict(req, &one).ok());
    for (int j = 0; j < 3; ++j) {
      EXPECT_NEAR(all.outputs().double_values(3 * row + j),
                  one.outputs().double_values(j), 1e-12)
          << "row " << row;
    }
  }
}

// ---- Messages ----

// A PredictRequest of exactly `bytes` serialized bytes (model id "m" plus
// padding, so that only the size differs).
v1::PredictRequest RequestOfSize(size_t bytes) {
  v1::PredictRequest req;
  for (uint64_t n = bytes / 8; n > 0; --n) {
    *req.mutable_inputs() = DoubleMatrix(n, 1, std::vector<double>(n, 0.5));
    for (int pad = 0; pad < 63; ++pad) {
      req.set_model_id("m" + std::string(pad, 'x'));
      if (req.ByteSizeLong() == bytes) return req;
    }
  }
  return req;
}

TEST_F(LimitsTest, ReceiveLimitIsFourMiB) {
  Start();
  v1::PredictRequest at = RequestOfSize(4 * kMiB);
  ASSERT_EQ(at.ByteSizeLong(), 4 * kMiB);
  // Accepted by the transport: the service answers (no such model).
  EXPECT_EQ(Predict(at).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::PredictRequest past = RequestOfSize(4 * kMiB + 1);
  ASSERT_EQ(past.ByteSizeLong(), 4 * kMiB + 1);
  grpc::Status s = Predict(past);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("4194305 vs. 4194304"));
}

TEST_F(LimitsTest, SendLimitIsSixteenMiB) {
  Start();
  ASSERT_TRUE(Create("wide", Spec({1, 1000})).ok());
  v1::PredictRequest req;
  req.set_model_id("wide");
  // 2,090 x 1,000 doubles: about 16.7 MB, under 16 MiB (16.78 MB).
  *req.mutable_inputs() = DoubleMatrix(2'090, 1, std::vector<double>(2'090));
  EXPECT_TRUE(Predict(req).ok());
  // 2,100 x 1,000 doubles: 16.8 MB, over.
  *req.mutable_inputs() = DoubleMatrix(2'100, 1, std::vector<double>(2'100));
  EXPECT_EQ(Predict(req).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// gzip is not accepted at all: the call is refused from its headers, so a
// compressed bomb is never inflated. Identity still works.
TEST_F(LimitsTest, GzipCompressedRequestIsRefused) {
  Start();
  ASSERT_TRUE(Create("z", Spec({1, 1})).ok());
  v1::PredictRequest req;
  req.set_model_id("z");
  *req.mutable_inputs() = DoubleMatrix(10'000, 1, std::vector<double>(10'000));
  {
    grpc::ClientContext ctx;
    ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
    v1::PredictResponse resp;
    grpc::Status s = stub_->Predict(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_THAT(s.error_message(), HasSubstr("gzip"));
  }
  EXPECT_TRUE(Predict(req).ok());
}

// Metadata: 12 KiB passes (gRPC's own default, 8 KiB, would refuse it), a
// single entry of 16 KiB + 1 (HPACK size: name + value + 32) does not. The
// other headers of the call add to it, so the exact boundary of the total
// is not pinned here; the value is, in DefaultsAreTheShippedValues.
TEST_F(LimitsTest, MetadataLimitIsSixteenKiB) {
  Start();
  auto call = [&](size_t value_bytes) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-pad", std::string(value_bytes, 'p'));
    v1::ListModelsRequest req;
    v1::ListModelsResponse resp;
    return stub_->ListModels(&ctx, req, &resp);
  };
  EXPECT_TRUE(call(12 << 10).ok());
  const size_t entry = (16 << 10) + 1;
  grpc::Status s = call(entry - 32 - std::string("x-pad").size());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  // gRPC 1.51 closes that connection (an HPACK error is connection-wide);
  // the server keeps serving others.
  stub_ = v1::Backprop::NewStub(NewChannel());
  grpc::Status after = call(0);
  EXPECT_TRUE(after.ok()) << after.error_code() << " " << after.error_message();
}

// ---- Uploads ----

// An Examples chunk of exactly `bytes` serialized bytes: one feature per
// row, labels < 256; a label >= 128 costs one byte more than one below.
v1::UploadDatasetRequest ChunkOfSize(uint64_t bytes) {
  v1::UploadDatasetRequest r;
  v1::Examples* e = r.mutable_chunk();
  uint64_t n = bytes / 9;
  for (;; --n) {
    *e->mutable_inputs() = DoubleMatrix(n, 1, std::vector<double>(n, 0.25));
    e->mutable_labels()->mutable_values()->Clear();
    e->mutable_labels()->mutable_values()->Resize(static_cast<int>(n), 1);
    if (e->ByteSizeLong() <= bytes) break;
  }
  for (int i = 0; e->ByteSizeLong() < bytes && i < static_cast<int>(n); ++i) {
    e->mutable_labels()->set_values(i, 200);
  }
  return r;
}

TEST_F(LimitsTest, UploadChunkOfOneMiBPlusOneIsRefused) {
  Start();
  v1::UploadDatasetRequest at = ChunkOfSize(kMiB);
  ASSERT_EQ(at.chunk().ByteSizeLong(), kMiB);
  v1::UploadDatasetRequest past = ChunkOfSize(kMiB + 1);
  ASSERT_EQ(past.chunk().ByteSizeLong(), kMiB + 1);
  grpc::Status s = Upload({Header("past", 1, 256), past});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("1048577 bytes"));
  EXPECT_THAT(s.error_message(), HasSubstr("--max_upload_chunk_kb"));
  EXPECT_TRUE(ListDir(dir_.Sub("datasets")).empty());
  EXPECT_TRUE(Upload({Header("at", 1, 256), at}).ok());
}

TEST_F(LimitsTest, UploadChunkCountOnePastTheLimit) {
  Start([](ServerOptions& o) { o.service.max_upload_chunks = 3; });
  grpc::Status s = Upload({Header("four", 2, 2), Chunk(2, 2, 1), Chunk(2, 2, 2),
                           Chunk(2, 2, 3), Chunk(2, 2, 4)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("chunk 4"));
  EXPECT_THAT(s.error_message(), HasSubstr("--max_upload_chunks"));
  EXPECT_TRUE(ListDir(dir_.Sub("datasets")).empty());
  EXPECT_TRUE(Upload({Header("three", 2, 2), Chunk(2, 2, 1), Chunk(2, 2, 2),
                      Chunk(2, 2, 3)})
                  .ok());
}

// The default, without gRPC: chunk 100,001 is refused.
TEST(DatasetBuilderLimitsTest, ChunkOneHundredThousandAndOneIsRefused) {
  v1::DatasetHeader h;
  h.set_feature_count(1);
  h.set_class_count(2);
  UploadLimits limits;
  limits.max_bytes = ServiceOptions().max_dataset_bytes;
  limits.max_chunk_bytes = ServiceOptions().max_upload_chunk_bytes;
  limits.max_chunks = ServiceOptions().max_upload_chunks;
  absl::StatusOr<DatasetBuilder> b = DatasetBuilder::Create(h, limits);
  ASSERT_TRUE(b.ok()) << b.status();
  v1::Examples one;
  *one.mutable_inputs() = DoubleMatrix(1, 1, {0.5});
  one.mutable_labels()->add_values(1);
  for (int i = 0; i < 100'000; ++i) {
    ASSERT_TRUE(b->Append(one).ok()) << i;
  }
  absl::Status s = b->Append(one);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("chunk 100001"));
  EXPECT_EQ(b->example_count(), 100'000u);
}

TEST_F(LimitsTest, DatasetBytesOnePastTheLimit) {
  // 2 features + a label: 20 bytes per example; 50 fit in 1,000 bytes.
  Start([](ServerOptions& o) { o.service.max_dataset_bytes = 1'000; });
  grpc::Status s = Upload({Header("over", 2, 2), Chunk(30, 2), Chunk(21, 2)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("1000 bytes (--max_dataset_mb)"));
  EXPECT_TRUE(ListDir(dir_.Sub("datasets")).empty());
  EXPECT_TRUE(Upload({Header("full", 2, 2), Chunk(30, 2), Chunk(20, 2)}).ok());
}

// At the default 256 MiB: a header whose single example would not fit is
// refused before any chunk, one feature less is accepted. A header claiming
// 32 GB per example allocates nothing.
TEST_F(LimitsTest, DatasetHeaderClaimsAreCheckedAgainstTheDefault) {
  Start();
  // 33,554,431 * 8 + 4 = 268,435,452 <= 256 MiB = 268,435,456.
  grpc::Status s = Upload({Header("fits", 33'554'431, 2)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // no chunk
  EXPECT_THAT(s.error_message(), HasSubstr("without any chunk"));
  s = Upload({Header("over", 33'554'432, 2)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("268435456 bytes"));

  const uint64_t peak_before = PeakRssBytes();
  const auto t0 = Clock::now();
  v1::UploadDatasetRequest huge = Header("huge", 4'000'000'000u, 0);
  huge.mutable_header()->set_target_size(4'000'000'000u);
  s = Upload({huge, Chunk(1, 2)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_dataset_mb"));
  EXPECT_LT(SecondsSince(t0), 1.0);
  EXPECT_LT(PeakRssBytes() - peak_before, 4 * kMiB);
  EXPECT_TRUE(ListDir(dir_.Sub("datasets")).empty());
}

TEST_F(LimitsTest, FifthConcurrentUploadIsRefused) {
  Start();
  ASSERT_EQ(server_->service().options().max_concurrent_uploads, 4);
  struct Open {
    grpc::ClientContext ctx;
    v1::Dataset ds;
    std::unique_ptr<grpc::ClientWriter<v1::UploadDatasetRequest>> w;
  };
  std::vector<std::unique_ptr<Open>> open;
  for (int i = 0; i < 4; ++i) {
    open.push_back(std::make_unique<Open>());
    open.back()->w = stub_->UploadDataset(&open.back()->ctx, &open.back()->ds);
    ASSERT_TRUE(open.back()->w->Write(
        Header("u" + std::to_string(i), 2, 2)));
  }
  ASSERT_TRUE(WaitUntil([&] { return server_->service().active_uploads() == 4; },
                        std::chrono::seconds(5)));
  grpc::Status s = Upload({Header("fifth", 2, 2), Chunk(2, 2)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_concurrent_uploads"));

  // One ends: the next upload is accepted; the others then complete too.
  ASSERT_TRUE(open[0]->w->Write(Chunk(2, 2)));
  open[0]->w->WritesDone();
  EXPECT_TRUE(open[0]->w->Finish().ok());
  ASSERT_TRUE(WaitUntil([&] { return server_->service().active_uploads() == 3; },
                        std::chrono::seconds(5)));
  EXPECT_TRUE(Upload({Header("fifth", 2, 2), Chunk(2, 2)}).ok());
  for (size_t i = 1; i < open.size(); ++i) {
    ASSERT_TRUE(open[i]->w->Write(Chunk(2, 2)));
    open[i]->w->WritesDone();
    EXPECT_TRUE(open[i]->w->Finish().ok());
  }
  EXPECT_EQ(ListDir(dir_.Sub("datasets")).size(), 5u);
}

// A finished upload gives its slot back before the client sees its status:
// back-to-back uploads never meet the limit.
TEST_F(LimitsTest, SequentialUploadsNeverHitTheConcurrencyLimit) {
  Start([](ServerOptions& o) { o.service.max_concurrent_uploads = 1; });
  for (int i = 0; i < 30; ++i) {
    grpc::Status s = Upload({Header("s" + std::to_string(i), 2, 2),
                             Chunk(2, 2)});
    ASSERT_TRUE(s.ok()) << i << ": " << s.error_message();
  }
}

// ---- Training time ----

TEST_F(LimitsTest, TrainEndsAtTheMaxTrainTime) {
  pause_after_first_epoch_ = true;  // epoch 1 then waits for a cancel
  Start([](ServerOptions& o) {
    o.service.max_train_time = absl::Milliseconds(300);
  });
  ASSERT_TRUE(Create("t", Spec({2, 2})).ok());
  v1::TrainRequest req;
  req.set_model_id("t");
  *req.mutable_examples() = SyntheticExamples(16, 2, 1);
  req.set_epochs(5);
  req.set_mini_batch_size(4);
  req.set_learning_rate(1.0);
  grpc::ClientContext ctx;
  const auto t0 = Clock::now();
  TrainResult r = ReadTrain(stub_->Train(&ctx, req).get());
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(r.status.error_message(), HasSubstr("--max_train_time"));
  EXPECT_LT(SecondsSince(t0), 10.0);
  EXPECT_EQ(r.epochs.size(), 1u);
  ASSERT_TRUE(server_->service().WaitForTrainingsToEnd(absl::Seconds(10)));
  v1::GetModelRequest g;
  g.set_model_id("t");
  v1::Model m;
  grpc::ClientContext gctx;
  ASSERT_TRUE(stub_->GetModel(&gctx, g, &m).ok());
  EXPECT_EQ(m.epochs_trained(), 1u);
}

// ---- Connections ----

// An UploadDataset call held open by the client: the server counts it in
// active_uploads() from the moment the call reaches it.
class HeldUpload : public grpc::ClientWriteReactor<v1::UploadDatasetRequest> {
 public:
  explicit HeldUpload(v1::Backprop::Stub* stub) {
    stub->async()->UploadDataset(&ctx_, &ds_, this);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }
  void OnDone(const grpc::Status&) override { done_.Notify(); }
  bool WaitDone() { return done_.WaitFor(std::chrono::seconds(10)); }

 private:
  grpc::ClientContext ctx_;
  v1::Dataset ds_;
  Notification done_;
};

// 120 calls on one connection: the server never has more than 100 of them;
// 20 more on a second connection do reach it (the cap is per connection).
TEST_F(LimitsTest, AtMostOneHundredConcurrentStreamsPerConnection) {
  Start([](ServerOptions& o) { o.service.max_concurrent_uploads = 1'000; });
  std::vector<std::unique_ptr<HeldUpload>> calls;
  for (int i = 0; i < 120; ++i) {
    calls.push_back(std::make_unique<HeldUpload>(stub_.get()));
  }
  BackpropService& service = server_->service();
  ASSERT_TRUE(WaitUntil([&] { return service.active_uploads() >= 100; },
                        std::chrono::seconds(10)));
  int peak = 0;
  const auto until = Clock::now() + std::chrono::milliseconds(300);
  while (Clock::now() < until) {
    peak = std::max(peak, service.active_uploads());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(peak, 100);

  std::shared_ptr<grpc::Channel> second = NewChannel();
  std::unique_ptr<v1::Backprop::Stub> stub2 = v1::Backprop::NewStub(second);
  for (int i = 0; i < 20; ++i) {
    calls.push_back(std::make_unique<HeldUpload>(stub2.get()));
  }
  EXPECT_TRUE(WaitUntil([&] { return service.active_uploads() == 120; },
                        std::chrono::seconds(10)))
      << service.active_uploads();
  for (auto& c : calls) c->Cancel();
  for (auto& c : calls) EXPECT_TRUE(c->WaitDone());
  EXPECT_TRUE(WaitUntil([&] { return service.active_uploads() == 0; },
                        std::chrono::seconds(10)));
}

// A TCP connection that never sends the HTTP/2 preface is closed at the
// handshake timeout (lowered to 1 s here; the default, 10 s, is pinned in
// DefaultsAreTheShippedValues).
TEST_F(LimitsTest, SilentConnectionIsClosedAtTheHandshakeTimeout) {
  Start([](ServerOptions& o) { o.handshake_timeout = absl::Seconds(1); });
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const auto t0 = Clock::now();
  bool closed = false;
  while (!closed && SecondsSince(t0) < 8) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);  // the server's SETTINGS
    closed = n <= 0;
  }
  const double seconds = SecondsSince(t0);
  close(fd);
  EXPECT_TRUE(closed);
  EXPECT_GT(seconds, 0.8);
  EXPECT_LT(seconds, 4.0);
}

// Keepalive: a client pinging every 250 ms without calls is cut off (GOAWAY
// too_many_pings after more than 2 strikes) by the default 30 s minimum
// interval; the same client stays connected to a server that allows pings
// every 200 ms for 2 s longer than the first one lasted, so it is the
// interval that decides.
bool StaysReady(const std::shared_ptr<grpc::Channel>& channel,
                std::chrono::milliseconds for_how_long) {
  const auto end = Clock::now() + for_how_long;
  while (Clock::now() < end) {
    if (channel->GetState(false) != GRPC_CHANNEL_READY) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

grpc::ChannelArguments PingEvery(int ms) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, ms);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, ms);
  return args;
}

TEST_F(LimitsTest, AbusivePingerIsCutOffAndAPoliteOneIsNot) {
  Start();
  std::shared_ptr<grpc::Channel> rude = NewChannel(PingEvery(250));
  ASSERT_TRUE(rude->WaitForConnected(std::chrono::system_clock::now() +
                                     std::chrono::seconds(5)));
  const auto t0 = Clock::now();
  EXPECT_FALSE(StaysReady(rude, std::chrono::seconds(6)));
  const double cut_after = SecondsSince(t0);
  EXPECT_LT(cut_after, 6.0);
  std::cout << "rude pinger cut off after " << cut_after << " s\n";

  server_.reset();
  Start([](ServerOptions& o) {
    o.min_ping_interval = absl::Milliseconds(200);
  });
  std::shared_ptr<grpc::Channel> polite = NewChannel(PingEvery(250));
  ASSERT_TRUE(polite->WaitForConnected(std::chrono::system_clock::now() +
                                       std::chrono::seconds(5)));
  // Well past the moment the same pings got the first client cut off.
  EXPECT_TRUE(StaysReady(
      polite, std::chrono::milliseconds(static_cast<int>(
                  1000 * cut_after + 2000))));
}

}  // namespace
}  // namespace backprop::server
