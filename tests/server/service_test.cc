// The backprop.v1 service in-process: ServerBuilder + InProcessChannel, real
// gRPC calls, no ports, no sleeps. Numbers over the wire are compared with
// the engine (core) called directly on the same weights.
#include "server/service.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/network.h"
#include "server/convert.h"
#include "server/ids.h"
#include "server/server.h"
#include "tests/server/test_util.h"

namespace backprop::server {
namespace {

using ::backprop::server::testing::AllValues;
using ::backprop::server::testing::DoubleMatrix;
using ::backprop::server::testing::ListDir;
using ::backprop::server::testing::ReadTrain;
using ::backprop::server::testing::RunTrain;
using ::backprop::server::testing::Spec;
using ::backprop::server::testing::SyntheticExamples;
using ::backprop::server::testing::TempDir;
using ::backprop::server::testing::TrainResult;
using ::testing::HasSubstr;

std::string Bytes(const std::vector<double>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()),
                     v.size() * sizeof(double));
}

class ServiceTest : public ::testing::Test {
 protected:
  void Start(const std::function<void(ServerOptions&)>& tweak = nullptr) {
    ServerOptions o;
    o.listen = "";
    o.service.model_dir = dir_.Sub("models");
    o.service.data_dir = dir_.Sub("datasets");
    o.service.max_concurrent_trainings = 4;
    o.service.after_epoch_for_test =
        [this](uint32_t epoch,
               const std::function<bool(absl::Duration)>& wait_for_cancel) {
          // Only the first training that reaches the epoch pauses.
          if (pause_at_epoch_ != epoch || paused_once_.exchange(true)) return;
          paused_.Notify();
          if (pause_until_cancel_) {
            wait_for_cancel(absl::Seconds(60));
          } else {
            release_.WaitFor(std::chrono::seconds(60));
          }
        };
    if (tweak) tweak(o);
    absl::StatusOr<std::unique_ptr<BackpropServer>> s = BackpropServer::Start(
        o, [this](const std::string& line) { reports_.push_back(line); });
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = v1::Backprop::NewStub(server_->InProcessChannel());
  }

  void TearDown() override {
    if (!release_.HasBeenNotified()) release_.Notify();
    server_.reset();
  }

  grpc::Status Create(const std::string& id, const v1::ModelSpec& spec,
                      v1::Model* out = nullptr) {
    v1::CreateModelRequest req;
    req.set_model_id(id);
    *req.mutable_spec() = spec;
    v1::Model m;
    grpc::ClientContext ctx;
    return stub_->CreateModel(&ctx, req, out != nullptr ? out : &m);
  }

  v1::Model Get(const std::string& id, bool params = true) {
    v1::GetModelRequest req;
    req.set_model_id(id);
    req.set_include_parameters(params);
    v1::Model m;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->GetModel(&ctx, req, &m);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return m;
  }

  template <typename Request, typename Response>
  using Rpc = grpc::Status (v1::Backprop::Stub::*)(grpc::ClientContext*,
                                                   const Request&, Response*);

  // The status code of one unary call.
  template <typename Request, typename Response>
  grpc::StatusCode CallCode(Rpc<Request, Response> rpc, const Request& req) {
    Response resp;
    grpc::ClientContext ctx;
    return (stub_.get()->*rpc)(&ctx, req, &resp).error_code();
  }

  grpc::StatusCode GetModelCode(const std::string& id) {
    v1::GetModelRequest req;
    req.set_model_id(id);
    return CallCode(&v1::Backprop::Stub::GetModel, req);
  }

  grpc::StatusCode DeleteModelCode(const std::string& id) {
    v1::DeleteModelRequest req;
    req.set_model_id(id);
    return CallCode(&v1::Backprop::Stub::DeleteModel, req);
  }

  grpc::StatusCode PredictCode(const v1::PredictRequest& req) {
    return CallCode(&v1::Backprop::Stub::Predict, req);
  }

  v1::TrainRequest TrainReq(const std::string& id, uint32_t epochs,
                            uint64_t n = 64) {
    v1::TrainRequest req;
    req.set_model_id(id);
    *req.mutable_examples() = SyntheticExamples(n, 2, 11);
    req.set_epochs(epochs);
    req.set_mini_batch_size(8);
    req.set_learning_rate(3.0);
    return req;
  }

  // The engine network with exactly the weights the server holds for id.
  Network<double> EngineNetwork(const std::string& id) {
    v1::Model m = Get(id);
    absl::StatusOr<ModelSpec> spec = SpecFromProto(m.spec());
    EXPECT_TRUE(spec.ok());
    absl::StatusOr<AnyNetwork> net = NetworkFromProto(*spec, m.parameters());
    EXPECT_TRUE(net.ok()) << net.status();
    return std::get<Network<double>>(*std::move(net));
  }

  TempDir dir_;
  std::unique_ptr<BackpropServer> server_;
  std::unique_ptr<v1::Backprop::Stub> stub_;
  std::vector<std::string> reports_;
  // Test hook state: pause the training thread after epoch pause_at_epoch_.
  uint32_t pause_at_epoch_ = 0;
  bool pause_until_cancel_ = false;
  testing::Notification paused_;
  testing::Notification release_;
  std::atomic<bool> paused_once_{false};
};

TEST_F(ServiceTest, CreateGetListDeleteModels) {
  Start();
  v1::Model created;
  ASSERT_TRUE(Create("m1", Spec({2, 3, 2}), &created).ok());
  EXPECT_EQ(created.model_id(), "m1");
  // 2*3 + 3 + 3*2 + 2 weights and biases.
  EXPECT_EQ(created.parameter_count(), 17u);
  EXPECT_EQ(created.epochs_trained(), 0u);
  EXPECT_FALSE(created.training());
  EXPECT_EQ(created.spec().cost(), v1::QUADRATIC);  // UNSPECIFIED defaulted
  EXPECT_EQ(created.parameters_size(), 0);
  EXPECT_GT(created.create_time().seconds(), 0);

  v1::Model generated;
  ASSERT_TRUE(Create("", Spec({2, 2}), &generated).ok());
  EXPECT_TRUE(IsValidId(generated.model_id())) << generated.model_id();
  ASSERT_TRUE(Create("a0", Spec({2, 2})).ok());

  v1::Model got = Get("m1");
  EXPECT_EQ(got.parameters_size(), 2);
  EXPECT_EQ(got.parameters(0).weights().rows(), 3u);
  EXPECT_EQ(got.parameters(0).weights().cols(), 2u);
  EXPECT_EQ(got.parameters(1).biases().rows(), 2u);
  EXPECT_EQ(got.parameters(1).biases().cols(), 1u);

  // Sorted by id, two per page.
  std::vector<std::string> ids;
  std::string token;
  int pages = 0;
  do {
    v1::ListModelsRequest req;
    req.set_page_size(2);
    req.set_page_token(token);
    v1::ListModelsResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListModels(&ctx, req, &resp).ok());
    for (const auto& m : resp.models()) {
      ids.push_back(m.model_id());
      EXPECT_EQ(m.parameters_size(), 0);
    }
    token = resp.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(ids, (std::vector<std::string>{"a0", "m1", generated.model_id()}));

  EXPECT_THAT(ListDir(dir_.Sub("models")), ::testing::Contains("m1.model"));
  ASSERT_EQ(DeleteModelCode("m1"), grpc::StatusCode::OK);
  EXPECT_THAT(ListDir(dir_.Sub("models")),
              ::testing::Not(::testing::Contains("m1.model")));
  EXPECT_EQ(GetModelCode("m1"), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, CreateWithGivenParametersThenGetReturnsThemBitwise) {
  Start();
  for (v1::DType dtype : {v1::FLOAT64, v1::FLOAT32}) {
    const std::string id = dtype == v1::FLOAT64 ? "d64" : "f32";
    v1::CreateModelRequest req;
    req.set_model_id(id);
    *req.mutable_spec() = Spec({3, 2, 1});
    req.mutable_spec()->set_dtype(dtype);
    // Values that are exact in float32, with varied bits.
    std::vector<double> w1 = {0.1875, -2.5, 3.25, 1e-3, -7.0, 0.5};
    std::vector<double> b1 = {-0.75, 1.0};
    std::vector<double> w2 = {2.0, -0.0625};
    std::vector<double> b2 = {0.3125};
    auto* l1 = req.add_parameters();
    auto* l2 = req.add_parameters();
    if (dtype == v1::FLOAT32) {
      auto f = [](const std::vector<double>& v) {
        return std::vector<float>(v.begin(), v.end());
      };
      *l1->mutable_weights() = testing::FloatMatrix(2, 3, f(w1));
      *l1->mutable_biases() = testing::FloatMatrix(2, 1, f(b1));
      *l2->mutable_weights() = testing::FloatMatrix(1, 2, f(w2));
      *l2->mutable_biases() = testing::FloatMatrix(1, 1, f(b2));
    } else {
      *l1->mutable_weights() = DoubleMatrix(2, 3, w1);
      *l1->mutable_biases() = DoubleMatrix(2, 1, b1);
      *l2->mutable_weights() = DoubleMatrix(1, 2, w2);
      *l2->mutable_biases() = DoubleMatrix(1, 1, b2);
    }
    v1::Model created;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->CreateModel(&ctx, req, &created).ok()) << id;
    v1::Model got = Get(id);
    ASSERT_EQ(got.parameters_size(), 2);
    for (int i = 0; i < 2; ++i) {
      const auto& sent = req.parameters(i);
      const auto& back = got.parameters(i);
      EXPECT_EQ(back.weights().rows(), sent.weights().rows());
      EXPECT_EQ(back.weights().cols(), sent.weights().cols());
      EXPECT_EQ(back.weights().SerializeAsString(),
                sent.weights().SerializeAsString())
          << id << " layer " << i;
      EXPECT_EQ(back.biases().SerializeAsString(),
                sent.biases().SerializeAsString());
    }
  }
}

TEST_F(ServiceTest, PredictEqualsEngineFeedforward) {
  Start();
  ASSERT_TRUE(Create("p", Spec({3, 5, 2}, 7)).ok());
  Network<double> net = EngineNetwork("p");
  const std::vector<double> x = {0.1, -0.2, 0.3,  1.0, 2.0, -1.0,
                                 0.0, 0.5,  -0.5, 3.0, 0.2, 0.1};
  v1::PredictRequest req;
  req.set_model_id("p");
  *req.mutable_inputs() = DoubleMatrix(4, 3, x);
  v1::PredictResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Predict(&ctx, req, &resp).ok());

  arma::mat xe(x.data(), 3, 4);  // one example per column
  absl::StatusOr<arma::mat> a = net.Feedforward(xe);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(resp.outputs().rows(), 4u);
  ASSERT_EQ(resp.outputs().cols(), 2u);
  ASSERT_EQ(resp.outputs().double_values_size(), 8);
  ASSERT_EQ(resp.labels_size(), 4);
  const std::vector<uint32_t> labels = ArgmaxColumns<double>(*a);
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 2; ++j) {
      // Same code on the same weights and inputs: equal up to rounding
      // (1e-12 is far below any real difference, far above none).
      EXPECT_NEAR(resp.outputs().double_values(i * 2 + j), (*a)(j, i), 1e-12);
    }
    EXPECT_EQ(resp.labels(i), labels[i]);
  }
  EXPECT_EQ(resp.epochs_trained(), 0u);
}

TEST_F(ServiceTest, PredictOnFloat32ModelAnswersInFloat32) {
  Start();
  v1::ModelSpec spec = Spec({2, 3});
  spec.set_dtype(v1::FLOAT32);
  ASSERT_TRUE(Create("f", spec).ok());
  v1::PredictRequest req;
  req.set_model_id("f");
  *req.mutable_inputs() = DoubleMatrix(2, 2, {0.5, 0.25, -1, 1});
  v1::PredictResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Predict(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.outputs().float_values_size(), 6);
  EXPECT_EQ(resp.outputs().double_values_size(), 0);
}

TEST_F(ServiceTest, GetGradientsEqualEngineBackprop) {
  Start();
  ASSERT_TRUE(Create("g", Spec({2, 4, 3}, 5)).ok());
  Network<double> net = EngineNetwork("g");
  const std::vector<double> x = {0.5, -1.0, 0.25, 0.75, -0.3, 0.9};
  v1::GetGradientsRequest req;
  req.set_model_id("g");
  *req.mutable_examples()->mutable_inputs() = DoubleMatrix(3, 2, x);
  for (uint32_t label : {2u, 0u, 1u}) {
    req.mutable_examples()->mutable_labels()->add_values(label);
  }
  req.set_check_epsilon(1e-6);
  req.set_check_samples(20);
  v1::GetGradientsResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->GetGradients(&ctx, req, &resp).ok());

  arma::mat xe(x.data(), 2, 3);
  arma::mat y(3, 3, arma::fill::zeros);
  y(2, 0) = 1;
  y(0, 1) = 1;
  y(1, 2) = 1;
  absl::StatusOr<Gradients<double>> g = net.Backprop(xe, y);
  ASSERT_TRUE(g.ok());
  // Same computation on the same data: equal up to rounding.
  EXPECT_NEAR(resp.cost(), g->cost, 1e-12);
  ASSERT_EQ(resp.gradients_size(), 2);
  for (size_t l = 1; l <= 2; ++l) {
    const v1::LayerParameters& lp = resp.gradients(l - 1);
    const arma::mat& nw = g->nabla_w[l];
    ASSERT_EQ(lp.weights().rows(), nw.n_rows);
    ASSERT_EQ(lp.weights().cols(), nw.n_cols);
    for (arma::uword j = 0; j < nw.n_rows; ++j) {
      for (arma::uword k = 0; k < nw.n_cols; ++k) {
        EXPECT_NEAR(lp.weights().double_values(j * nw.n_cols + k), nw(j, k),
                    1e-12);
      }
    }
    for (arma::uword j = 0; j < g->nabla_b[l].n_elem; ++j) {
      EXPECT_NEAR(lp.biases().double_values(j), g->nabla_b[l](j), 1e-12);
    }
  }
  // Central differences with eps = 1e-6 agree with backprop to about 1e-8
  // relative on a net this small; 1e-4 leaves room for rounding.
  EXPECT_EQ(resp.check().parameters_checked(), 20u);
  EXPECT_LT(resp.check().max_rel_error(), 1e-4);
  // Nothing changed.
  EXPECT_EQ(Get("g").epochs_trained(), 0u);
}

TEST_F(ServiceTest, TrainStreamsOneEpochEventPerEpochWithValidation) {
  Start();
  ASSERT_TRUE(Create("t", Spec({2, 4, 2})).ok());
  v1::TrainRequest req = TrainReq("t", 3);
  *req.mutable_validation_examples() = SyntheticExamples(32, 2, 99);
  req.set_monitor_training(true);
  TrainResult r = RunTrain(stub_.get(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.epochs.size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.epochs[i].epoch(), i + 1);
    EXPECT_EQ(r.epochs[i].epochs_trained(), i + 1);
    EXPECT_GT(r.epochs[i].validation_cost(), 0.0);
    EXPECT_GE(r.epochs[i].validation_accuracy(), 0.0);
    EXPECT_LE(r.epochs[i].validation_accuracy(), 1.0);
    EXPECT_GT(r.epochs[i].training_cost(), 0.0);
    EXPECT_EQ(r.epochs[i].layers_size(), 2);
  }
  EXPECT_TRUE(r.progress.empty());  // not asked for

  // A second call continues the lifetime count.
  TrainResult r2 = RunTrain(stub_.get(), TrainReq("t", 2));
  ASSERT_TRUE(r2.status.ok()) << r2.status.error_message();
  ASSERT_EQ(r2.epochs.size(), 2u);
  EXPECT_EQ(r2.epochs[0].epoch(), 1u);
  EXPECT_EQ(r2.epochs[1].epochs_trained(), 5u);
  v1::Model m = Get("t", false);
  EXPECT_EQ(m.epochs_trained(), 5u);
  EXPECT_EQ(m.last_metrics().epochs_trained(), 5u);
  EXPECT_FALSE(m.training());
}

TEST_F(ServiceTest, TrainSendsBatchProgressWhenAsked) {
  Start([](ServerOptions& o) { o.service.max_rows_per_call = 20'000; });
  ASSERT_TRUE(Create("bp", Spec({2, 128, 2})).ok());
  // 20,000 single-example updates through 128 hidden units: several
  // milliseconds per epoch even for a fast engine, so a 1 ms interval fires.
  v1::TrainRequest req = TrainReq("bp", 2, 20000);
  req.set_mini_batch_size(1);
  req.set_progress_interval_ms(1);
  TrainResult r = RunTrain(stub_.get(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.epochs.size(), 2u);
  ASSERT_FALSE(r.progress.empty());
  for (const v1::BatchProgress& p : r.progress) {
    EXPECT_EQ(p.examples_total(), 20000u);
    EXPECT_LE(p.examples_done(), 20000u);
    EXPECT_GE(p.epoch(), 1u);
    EXPECT_LE(p.epoch(), 2u);
  }
}

TEST_F(ServiceTest, UploadedDatasetTrainsListsAndDeletes) {
  Start();
  grpc::ClientContext ctx;
  v1::Dataset ds;
  std::unique_ptr<grpc::ClientWriter<v1::UploadDatasetRequest>> w =
      stub_->UploadDataset(&ctx, &ds);
  v1::UploadDatasetRequest msg;
  msg.mutable_header()->set_dataset_id("xor-ish");
  msg.mutable_header()->set_feature_count(2);
  msg.mutable_header()->set_class_count(2);
  msg.mutable_header()->set_description("synthetic");
  ASSERT_TRUE(w->Write(msg));
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    *msg.mutable_chunk() = SyntheticExamples(20, 2, seed);
    ASSERT_TRUE(w->Write(msg));
  }
  ASSERT_TRUE(w->WritesDone());
  grpc::Status s = w->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ds.dataset_id(), "xor-ish");
  EXPECT_EQ(ds.example_count(), 60u);
  EXPECT_EQ(ds.feature_count(), 2u);
  EXPECT_EQ(ds.class_count(), 2u);
  EXPECT_EQ(ds.description(), "synthetic");
  EXPECT_THAT(ListDir(dir_.Sub("datasets")),
              ::testing::ElementsAre("xor-ish.dataset"));

  ASSERT_TRUE(Create("u", Spec({2, 3, 2})).ok());
  v1::TrainRequest req = TrainReq("u", 2);
  req.set_dataset_id("xor-ish");
  req.set_validation_dataset_id("xor-ish");
  TrainResult r = RunTrain(stub_.get(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.epochs.size(), 2u);
  EXPECT_GT(r.epochs[1].validation_cost(), 0.0);

  v1::ListDatasetsRequest list;
  v1::ListDatasetsResponse listed;
  grpc::ClientContext c2;
  ASSERT_TRUE(stub_->ListDatasets(&c2, list, &listed).ok());
  ASSERT_EQ(listed.datasets_size(), 1);
  EXPECT_EQ(listed.datasets(0).example_count(), 60u);
  EXPECT_TRUE(listed.next_page_token().empty());

  v1::GetDatasetRequest get;
  get.set_dataset_id("xor-ish");
  v1::Dataset got;
  grpc::ClientContext c3;
  ASSERT_TRUE(stub_->GetDataset(&c3, get, &got).ok());
  EXPECT_EQ(got.class_count(), 2u);

  v1::DeleteDatasetRequest del;
  del.set_dataset_id("xor-ish");
  v1::DeleteDatasetResponse del_resp;
  grpc::ClientContext c4;
  ASSERT_TRUE(stub_->DeleteDataset(&c4, del, &del_resp).ok());
  EXPECT_TRUE(ListDir(dir_.Sub("datasets")).empty());
  grpc::ClientContext c5;
  EXPECT_EQ(stub_->GetDataset(&c5, get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, CancelAfterSecondEpochKeepsEpochTwo) {
  pause_at_epoch_ = 2;
  pause_until_cancel_ = true;  // the job waits after epoch 2 for the cancel
  Start();
  ASSERT_TRUE(Create("c", Spec({2, 4, 2})).ok());
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::TrainEvent>> r =
      stub_->Train(&ctx, TrainReq("c", 50));
  v1::TrainEvent ev;
  int epochs_seen = 0;
  while (epochs_seen < 2 && r->Read(&ev)) {
    if (ev.has_epoch()) ++epochs_seen;
  }
  ASSERT_EQ(epochs_seen, 2);
  ctx.TryCancel();
  while (r->Read(&ev)) {
  }
  EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(server_->service().WaitForTrainingsToEnd(absl::Seconds(30)));

  v1::Model m = Get("c", false);
  EXPECT_EQ(m.epochs_trained(), 2u);
  EXPECT_FALSE(m.training());
  v1::PredictRequest p;
  p.set_model_id("c");
  *p.mutable_inputs() = DoubleMatrix(1, 2, {0.5, -0.5});
  v1::PredictResponse pr;
  grpc::ClientContext pc;
  ASSERT_TRUE(stub_->Predict(&pc, p, &pr).ok());
  EXPECT_EQ(pr.epochs_trained(), 2u);
  TrainResult again = RunTrain(stub_.get(), TrainReq("c", 1));
  EXPECT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(Get("c", false).epochs_trained(), 3u);
}

TEST_F(ServiceTest, AFailedSaveEndsTrainingAtTheLastSavedEpoch) {
  // Epochs are saved on a writer thread while the next one trains. When a
  // save fails (here: the model folder disappears after epoch 2 was saved)
  // the stream ends with that error, the client has heard of exactly the
  // saved epochs, and readers still see epoch 2.
  pause_at_epoch_ = 2;  // hold the job after epoch 2 until release_
  Start();
  ASSERT_TRUE(Create("disk", Spec({2, 4, 2})).ok());
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::TrainEvent>> r =
      stub_->Train(&ctx, TrainReq("disk", 50));
  v1::TrainEvent ev;
  std::vector<uint64_t> heard;
  while (heard.size() < 2 && r->Read(&ev)) {
    if (ev.has_epoch()) heard.push_back(ev.epoch().epochs_trained());
  }
  ASSERT_TRUE(paused_.WaitFor(std::chrono::seconds(30)));
  std::filesystem::remove_all(dir_.Sub("models"));
  release_.Notify();
  TrainResult rest = ReadTrain(r.get());
  for (const v1::EpochMetrics& e : rest.epochs) {
    heard.push_back(e.epochs_trained());
  }
  EXPECT_FALSE(rest.status.ok());
  EXPECT_NE(rest.status.error_code(), grpc::StatusCode::CANCELLED)
      << "the save's error, not the cancel it caused: "
      << rest.status.error_message();
  EXPECT_THAT(heard, ::testing::ElementsAre(1u, 2u))
      << rest.status.error_message();
  ASSERT_TRUE(server_->service().WaitForTrainingsToEnd(absl::Seconds(30)));
  const v1::Model m = Get("disk", false);
  EXPECT_EQ(m.epochs_trained(), 2u);
  EXPECT_FALSE(m.training());
}

TEST_F(ServiceTest, PredictDuringTrainingNeverWaitsOrGoesBack) {
  pause_at_epoch_ = 1;  // hold the job after epoch 1 until release_
  Start();
  ASSERT_TRUE(Create("busy", Spec({2, 16, 2})).ok());
  grpc::ClientContext ctx;
  v1::TrainRequest req = TrainReq("busy", 8, 2000);
  std::unique_ptr<grpc::ClientReader<v1::TrainEvent>> r =
      stub_->Train(&ctx, req);
  v1::TrainEvent ev;
  ASSERT_TRUE(r->Read(&ev));
  ASSERT_TRUE(ev.has_epoch());
  ASSERT_TRUE(paused_.WaitFor(std::chrono::seconds(30)));

  // While it trains: a second Train and a Delete are refused.
  TrainResult second = RunTrain(stub_.get(), TrainReq("busy", 1));
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(DeleteModelCode("busy"), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Get("busy", false).training());

  std::atomic<bool> stop{false};
  std::atomic<int> calls{0};
  int failures = 0;
  int went_back = 0;
  std::thread predictor([&] {
    uint64_t last = 0;
    v1::PredictRequest p;
    p.set_model_id("busy");
    *p.mutable_inputs() = DoubleMatrix(1, 2, {0.1, 0.2});
    while (!stop.load()) {
      v1::PredictResponse pr;
      grpc::ClientContext pc;
      if (!stub_->Predict(&pc, p, &pr).ok()) ++failures;
      if (pr.epochs_trained() < last) ++went_back;
      last = pr.epochs_trained();
      ++calls;
    }
  });
  // Under load the predictor may not run at all before the remaining
  // epochs are done: let it make one call while the job is held.
  while (calls.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  release_.Notify();
  int epochs = 1;
  while (r->Read(&ev)) {
    if (ev.has_epoch()) ++epochs;
  }
  grpc::Status s = r->Finish();
  stop.store(true);
  predictor.join();
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(epochs, 8);
  EXPECT_GT(calls.load(), 0);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(went_back, 0);
}

TEST_F(ServiceTest, DivergenceEndsAbortedAndKeepsFiniteWeights) {
  Start();
  v1::ModelSpec spec = Spec({2, 4, 1});
  spec.set_output_activation(v1::IDENTITY);  // unbounded: eta = 1e6 explodes
  ASSERT_TRUE(Create("d", spec).ok());
  v1::TrainRequest req;
  req.set_model_id("d");
  std::vector<double> x, y;
  for (int i = 0; i < 32; ++i) {
    x.push_back(i / 32.0);
    x.push_back(1.0 - i / 16.0);
    y.push_back(3.0 * i);
  }
  *req.mutable_examples()->mutable_inputs() = DoubleMatrix(32, 2, x);
  *req.mutable_examples()->mutable_target_values() = DoubleMatrix(32, 1, y);
  req.set_epochs(200);
  req.set_mini_batch_size(4);
  req.set_learning_rate(1e6);
  TrainResult r = RunTrain(stub_.get(), req);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(r.status.error_message(), HasSubstr("epoch"));
  EXPECT_LT(r.epochs.size(), 200u);
  v1::Model m = Get("d");
  EXPECT_EQ(m.epochs_trained(), r.epochs.size());
  for (double v : AllValues(m)) ASSERT_TRUE(std::isfinite(v));
}

TEST_F(ServiceTest, ModelsSurviveARestartBitwise) {
  Start();
  ASSERT_TRUE(Create("keep", Spec({2, 3, 2})).ok());
  ASSERT_TRUE(RunTrain(stub_.get(), TrainReq("keep", 3)).status.ok());
  const v1::Model before = Get("keep");
  server_.reset();
  Start();
  const v1::Model after = Get("keep");
  EXPECT_EQ(after.epochs_trained(), 3u);
  EXPECT_EQ(Bytes(AllValues(after)), Bytes(AllValues(before)));
  EXPECT_EQ(after.last_metrics().epochs_trained(), 3u);
  EXPECT_EQ(after.create_time().seconds(), before.create_time().seconds());
  EXPECT_TRUE(reports_.empty());
}

TEST_F(ServiceTest, CorruptFilesAreReportedAndLeftInPlace) {
  std::filesystem::create_directories(dir_.Sub("models"));
  std::filesystem::create_directories(dir_.Sub("datasets"));
  std::ofstream(dir_.Sub("models/bad.model")) << "not a model";
  std::ofstream(dir_.Sub("datasets/bad.dataset")) << "not a dataset";
  // What a crash in the middle of WriteFileAtomically leaves behind.
  std::ofstream(dir_.Sub("models/.m1.model.tmp.Ab12xZ")) << "partial";
  Start();
  EXPECT_EQ(reports_.size(), 3u);
  EXPECT_THAT(ListDir(dir_.Sub("models")), ::testing::Contains("bad.model"));
  EXPECT_THAT(ListDir(dir_.Sub("models")),
              ::testing::Not(::testing::Contains(".m1.model.tmp.Ab12xZ")));
  EXPECT_EQ(GetModelCode("bad"), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Create("ok", Spec({2, 2})).ok());  // still serving
}

TEST_F(ServiceTest, SecondServerOnTheSameFoldersIsRefused) {
  Start();
  ServerOptions o;
  o.listen = "";
  o.service.model_dir = dir_.Sub("models");
  o.service.data_dir = dir_.Sub("datasets");
  absl::StatusOr<std::unique_ptr<BackpropServer>> second =
      BackpropServer::Start(o, [](const std::string&) {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Create("still", Spec({2, 2})).ok());  // the first is unaffected
}

TEST_F(ServiceTest, GetGradientsRefusesTooManyCheckSamples) {
  Start();
  ASSERT_TRUE(Create("g", Spec({2, 2})).ok());
  v1::GetGradientsRequest req;
  req.set_model_id("g");
  *req.mutable_examples() = SyntheticExamples(2, 2, 1);
  req.set_check_epsilon(1e-6);
  req.set_check_samples(1'000'000);
  v1::GetGradientsResponse resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->GetGradients(&ctx, req, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// ---- One test per error row of API.md ----

TEST_F(ServiceTest, CreateModelRejectsBadSpecsAndIds) {
  Start([](ServerOptions& o) {
    o.service.max_parameters = 1000;
    // Off, so that the overflow check below is reached (limits_test.cc tests
    // the width limit).
    o.service.max_layer_width = UINT32_MAX;
  });
  EXPECT_EQ(Create("a", Spec({5})).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // < 2 layers
  EXPECT_EQ(Create("a", Spec({5, 0, 2})).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // zero width
  v1::ModelSpec unknown = Spec({2, 2});
  unknown.set_output_activation(static_cast<v1::Activation>(9));
  EXPECT_EQ(Create("a", unknown).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // unknown enum
  v1::ModelSpec hidden_softmax = Spec({2, 3, 2});
  hidden_softmax.set_hidden_activation(v1::SOFTMAX);
  EXPECT_EQ(Create("a", hidden_softmax).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::ModelSpec bad_pair = Spec({2, 2});
  bad_pair.set_output_activation(v1::SOFTMAX);
  bad_pair.set_cost(v1::QUADRATIC);
  EXPECT_EQ(Create("a", bad_pair).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Create("a", Spec({100, 100})).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);  // 10,100 > 1000
  // 1e10 parameters: representable, over the limit.
  EXPECT_EQ(Create("a", Spec({100000, 100000})).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // A count that overflows 64 bits is not a spec at all (core/spec.h):
  // refused without allocating anything.
  EXPECT_EQ(
      Create("a", Spec({4000000000u, 4000000000u, 4000000000u})).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  for (const char* id : {"../x", "A", "a/b", ".hidden"}) {
    EXPECT_EQ(Create(id, Spec({2, 2})).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << id;
  }
  ASSERT_TRUE(Create("a", Spec({2, 2})).ok());
  EXPECT_EQ(Create("a", Spec({2, 2})).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  v1::CreateModelRequest wrong_shape;
  wrong_shape.set_model_id("b");
  *wrong_shape.mutable_spec() = Spec({2, 2});
  *wrong_shape.add_parameters()->mutable_weights() =
      DoubleMatrix(2, 3, {1, 2, 3, 4, 5, 6});
  *wrong_shape.mutable_parameters(0)->mutable_biases() =
      DoubleMatrix(2, 1, {0, 0});
  v1::Model m;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->CreateModel(&ctx, wrong_shape, &m).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(ListDir(dir_.Sub("models")),
              ::testing::UnorderedElementsAre("a.model", "LOCK"));
}

TEST_F(ServiceTest, PredictRejectsBadInputs) {
  Start([](ServerOptions& o) { o.service.max_rows_per_call = 10; });
  ASSERT_TRUE(Create("m16", Spec({16, 2})).ok());
  v1::PredictRequest req;
  req.set_model_id("m16");
  *req.mutable_inputs() = DoubleMatrix(2, 8, std::vector<double>(16, 0.5));
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::INVALID_ARGUMENT);  // width
  *req.mutable_inputs() = DoubleMatrix(2, 16, std::vector<double>(31, 0.5));
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::INVALID_ARGUMENT);  // count
  *req.mutable_inputs() = DoubleMatrix(0, 16, {});
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::INVALID_ARGUMENT);  // rows 0
  std::vector<double> nan(16, 0.5);
  nan[7] = NAN;
  *req.mutable_inputs() = DoubleMatrix(1, 16, nan);
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::INVALID_ARGUMENT);
  *req.mutable_inputs() = DoubleMatrix(
      uint64_t{1} << 32, (uint64_t{1} << 32) + 1, std::vector<double>(8, 0.5));
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::INVALID_ARGUMENT);  // overflow
  *req.mutable_inputs() = DoubleMatrix(11, 16, std::vector<double>(176, 0.5));
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::RESOURCE_EXHAUSTED);
  *req.mutable_inputs() = DoubleMatrix(1, 16, std::vector<double>(16, 0.5));
  req.set_model_id("nope");
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::NOT_FOUND);
  req.set_model_id("../etc/passwd");
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::INVALID_ARGUMENT);
  req.set_model_id("");
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::INVALID_ARGUMENT);
  req.set_model_id("m16");
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::OK);  // still serving
}

TEST_F(ServiceTest, TrainRejectsBadRequestsUpFront) {
  Start();
  ASSERT_TRUE(Create("t", Spec({2, 3, 2})).ok());
  auto code = [&](const std::function<void(v1::TrainRequest&)>& edit) {
    v1::TrainRequest req = TrainReq("t", 1);
    edit(req);
    return RunTrain(stub_.get(), req).status.error_code();
  };
  using grpc::StatusCode;
  EXPECT_EQ(code([](auto& r) { r.set_epochs(0); }),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code([](auto& r) { r.set_mini_batch_size(0); }),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code([](auto& r) { r.set_learning_rate(0); }),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code([](auto& r) { r.set_learning_rate(NAN); }),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code([](auto& r) { r.set_l2_lambda(-1); }),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code([](auto& r) { r.set_momentum(1.0); }),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code([](auto& r) { r.clear_examples(); }),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code([](auto& r) {
              r.mutable_examples()->mutable_labels()->set_values(0, 2);
            }),
            StatusCode::INVALID_ARGUMENT);  // label >= output size
  EXPECT_EQ(
      code([](auto& r) { *r.mutable_examples() = SyntheticExamples(4, 3, 1); }),
      StatusCode::INVALID_ARGUMENT);  // 3 features, model wants 2
  EXPECT_EQ(code([](auto& r) {
              *r.mutable_validation_examples() = SyntheticExamples(4, 3, 1);
            }),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code([](auto& r) { r.set_dataset_id("missing"); }),
            StatusCode::NOT_FOUND);
  EXPECT_EQ(code([](auto& r) { r.set_dataset_id("Bad/Id"); }),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code([](auto& r) { r.set_model_id("missing"); }),
            StatusCode::NOT_FOUND);
  EXPECT_EQ(Get("t", false).epochs_trained(), 0u);  // nothing ran
}

TEST_F(ServiceTest, GetGradientsRejectsBadExamples) {
  Start();
  ASSERT_TRUE(Create("g", Spec({2, 3})).ok());
  auto code = [&](const v1::Examples& e, double eps = 0) {
    v1::GetGradientsRequest req;
    req.set_model_id("g");
    *req.mutable_examples() = e;
    req.set_check_epsilon(eps);
    v1::GetGradientsResponse resp;
    grpc::ClientContext ctx;
    return stub_->GetGradients(&ctx, req, &resp).error_code();
  };
  v1::Examples e;
  *e.mutable_inputs() = DoubleMatrix(1, 2, {1, 2});
  EXPECT_EQ(code(e), grpc::StatusCode::INVALID_ARGUMENT);  // no targets
  e.mutable_labels()->add_values(3);
  EXPECT_EQ(code(e), grpc::StatusCode::INVALID_ARGUMENT);  // label >= 3
  e.mutable_labels()->set_values(0, 2);
  EXPECT_EQ(code(e), grpc::StatusCode::OK);
  EXPECT_EQ(code(e, -1), grpc::StatusCode::INVALID_ARGUMENT);
  *e.mutable_target_values() = DoubleMatrix(1, 2, {0, 1});
  EXPECT_EQ(code(e), grpc::StatusCode::INVALID_ARGUMENT);  // 2 wide, not 3
  *e.mutable_target_values() = DoubleMatrix(1, 3, {0, 1, 0});
  EXPECT_EQ(code(e), grpc::StatusCode::OK);
}

TEST_F(ServiceTest, UploadViolationsLeaveNothingBehind) {
  Start([](ServerOptions& o) { o.service.max_dataset_bytes = 1000; });
  v1::UploadDatasetRequest header;
  header.mutable_header()->set_dataset_id("up");
  header.mutable_header()->set_feature_count(2);
  header.mutable_header()->set_class_count(2);
  v1::UploadDatasetRequest chunk;
  *chunk.mutable_chunk() = SyntheticExamples(5, 2, 3);
  v1::UploadDatasetRequest big;
  // 100 rows * (2 * 8 + 4) bytes = 2000 > 1000.
  *big.mutable_chunk() = SyntheticExamples(100, 2, 3);
  v1::UploadDatasetRequest wide;
  *wide.mutable_chunk() = SyntheticExamples(5, 3, 3);
  v1::UploadDatasetRequest bad_id = header;
  bad_id.mutable_header()->set_dataset_id("../up");
  v1::UploadDatasetRequest no_kind = header;
  no_kind.mutable_header()->set_class_count(0);

  auto upload = [&](const std::vector<v1::UploadDatasetRequest>& msgs) {
    grpc::ClientContext ctx;
    v1::Dataset ds;
    auto w = stub_->UploadDataset(&ctx, &ds);
    for (const auto& m : msgs) {
      if (!w->Write(m)) break;  // the server already ended the call
    }
    w->WritesDone();
    return w->Finish().error_code();
  };
  using grpc::StatusCode;
  EXPECT_EQ(upload({chunk}), StatusCode::INVALID_ARGUMENT);  // no header
  EXPECT_EQ(upload({header, chunk, header}), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(upload({header, wide}), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(upload({bad_id, chunk}), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(upload({no_kind, chunk}), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(upload({header}), StatusCode::INVALID_ARGUMENT);  // no examples
  EXPECT_EQ(upload({header, chunk, big}), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(upload({v1::UploadDatasetRequest()}), StatusCode::INVALID_ARGUMENT);

  {  // Cancelled mid-stream.
    grpc::ClientContext ctx;
    v1::Dataset ds;
    auto w = stub_->UploadDataset(&ctx, &ds);
    ASSERT_TRUE(w->Write(header));
    ASSERT_TRUE(w->Write(chunk));
    ctx.TryCancel();
    EXPECT_EQ(w->Finish().error_code(), StatusCode::CANCELLED);
  }
  v1::ListDatasetsRequest list;
  v1::ListDatasetsResponse listed;
  grpc::ClientContext c;
  ASSERT_TRUE(stub_->ListDatasets(&c, list, &listed).ok());
  EXPECT_EQ(listed.datasets_size(), 0);
  EXPECT_TRUE(ListDir(dir_.Sub("datasets")).empty());

  EXPECT_EQ(upload({header, chunk}), StatusCode::OK);
  EXPECT_EQ(upload({header, chunk}), StatusCode::ALREADY_EXISTS);
}

TEST_F(ServiceTest, ListsRejectForeignPageTokens) {
  Start();
  v1::ListModelsRequest req;
  req.set_page_token("garbage");
  v1::ListModelsResponse resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->ListModels(&ctx, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::ListDatasetsRequest dreq;
  dreq.set_page_token(EncodePageToken("m", "x"));  // a models token
  v1::ListDatasetsResponse dresp;
  grpc::ClientContext ctx2;
  EXPECT_EQ(stub_->ListDatasets(&ctx2, dreq, &dresp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServiceTest, TrainBeyondTheConcurrencyLimitIsRefusedAtOnce) {
  pause_at_epoch_ = 1;
  pause_until_cancel_ = true;
  Start([](ServerOptions& o) { o.service.max_concurrent_trainings = 1; });
  ASSERT_TRUE(Create("one", Spec({2, 2})).ok());
  ASSERT_TRUE(Create("two", Spec({2, 2})).ok());
  grpc::ClientContext ctx;
  auto r = stub_->Train(&ctx, TrainReq("one", 5));
  v1::TrainEvent ev;
  ASSERT_TRUE(r->Read(&ev));  // epoch 1: the job now holds the only slot
  EXPECT_EQ(RunTrain(stub_.get(), TrainReq("two", 1)).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  ctx.TryCancel();
  while (r->Read(&ev)) {
  }
  EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(server_->service().WaitForTrainingsToEnd(absl::Seconds(30)));
  EXPECT_TRUE(RunTrain(stub_.get(), TrainReq("two", 1)).status.ok());
}

TEST_F(ServiceTest, TrainDeadlineEndsTheStreamAndKeepsTheLastEpoch) {
  pause_at_epoch_ = 1;
  pause_until_cancel_ = true;  // the deadline is what cancels it
  Start();
  ASSERT_TRUE(Create("dl", Spec({2, 2})).ok());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(500));
  TrainResult r =
      testing::ReadTrain(stub_->Train(&ctx, TrainReq("dl", 5)).get());
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(server_->service().WaitForTrainingsToEnd(absl::Seconds(30)));
  EXPECT_EQ(Get("dl", false).epochs_trained(), 1u);
}

TEST_F(ServiceTest, OversizedMessageIsResourceExhausted) {
  Start([](ServerOptions& o) { o.max_receive_message_bytes = 64 << 10; });
  ASSERT_TRUE(Create("big", Spec({10000, 1})).ok());
  v1::PredictRequest req;
  req.set_model_id("big");
  *req.mutable_inputs() = DoubleMatrix(1, 10000, std::vector<double>(10000));
  EXPECT_EQ(PredictCode(req), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST(DatasetStoreTest, PreloadedDatasetsCannotBeDeleted) {
  DatasetStore store("", 10, 1 << 20);
  auto d = std::make_shared<StoredDataset>();
  d->id = "fashion-mnist-test";
  d->data.inputs = arma::mat(2, 1, arma::fill::zeros);
  d->data.class_count = 2;
  d->data.labels = {1};
  d->read_only = true;
  ASSERT_TRUE(store.Add(d).ok());
  EXPECT_EQ(store.Delete("fashion-mnist-test").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store.Contains("fashion-mnist-test"));
}

}  // namespace
}  // namespace backprop::server
